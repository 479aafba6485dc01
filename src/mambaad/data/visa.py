"""Reader for VisA: the raw tree plus the official split file ``split_csv/1cls.csv``.

The raw folders do not define train/test; the CSV does (columns ``object,split,label,image,mask``,
paths relative to the root, ``mask`` empty for normals). VisA masks are not 0/255; they are binarized
``> 0`` when loaded.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import cast

from mambaad.data.folder import check_root
from mambaad.data.sample import NORMAL, Sample, Split
from mambaad.errors import DataError

VISA_COLUMNS = ("object", "split", "label", "image", "mask")


def read_visa(root: Path | str, split_file: str = "1cls.csv") -> list[Sample]:
    """VisA with the split of ``<root>/split_csv/<split_file>``.

    Anomalous images get the defect name ``"anomaly"`` (VisA has no defect types).
    """
    root = check_root(root)
    csv_path = root / "split_csv" / split_file
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: VisA split file not found (expected <root>/split_csv/{split_file})")
    samples: list[Sample] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in VISA_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{csv_path}: missing column(s) {', '.join(missing)} (expected {','.join(VISA_COLUMNS)})"
            )
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            split, label_name = row["split"].strip(), row["label"].strip()
            if split not in ("train", "test"):
                raise DataError(f"{where}: split must be train or test, got {split!r}")
            if label_name not in ("normal", "anomaly"):
                raise DataError(f"{where}: label must be normal or anomaly, got {label_name!r}")
            image = root / row["image"].strip()
            if not image.is_file():
                raise DataError(f"{image}: image listed in {where} not found")
            label = int(label_name == "anomaly")
            mask = None
            if label == 1:
                mask_rel = (row["mask"] or "").strip()
                if not mask_rel:
                    raise DataError(f"{image}: defect image has no mask ({where} has an empty mask column)")
                mask = root / mask_rel
                if not mask.is_file():
                    raise DataError(f"{mask}: mask listed in {where} not found")
            defect = "anomaly" if label else NORMAL
            samples.append(Sample(image, mask, label, row["object"].strip(), defect, cast(Split, split)))
    if not samples:
        raise DataError(f"{csv_path}: split file lists no images")
    return samples
