"""Reader for ADer's generic ``meta.json`` (any data set), and the Uni-Medical and COCO-AD layouts built on it.

Schema: ``{"train": {cls: [entry...]}, "test": {...}, "validation": {...}?}`` with entries
``img_path, mask_path, cls_name, specie_name, anomaly``; paths are relative to the root and may contain
``//`` (normalized here). The label comes from ``anomaly``; the mask is used only when ``anomaly == 1``.
``validation`` (MVTec-3D, MVTec-LOCO) is folded into train, as ADer does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mambaad.data.folder import check_root, read_mvtec
from mambaad.data.sample import NORMAL, Sample, Split
from mambaad.errors import DataError

META_KEYS = ("img_path", "mask_path", "cls_name", "specie_name", "anomaly")


def _load_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: meta file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable JSON ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("train", {}), dict) or "test" not in data:
        raise DataError(
            f"{path}: not an ADer meta file (expected top-level keys train and test, each class -> list)"
        )
    return data


def _resolve(root: Path, rel: str) -> Path:
    return root / os.path.normpath(rel.replace("\\", "/"))


def read_meta(root: Path | str, meta: str = "meta.json") -> list[Sample]:
    """Samples listed in ``<root>/<meta>`` (ADer's format); missing files raise DataError."""
    root = check_root(root)
    path = root / meta
    data = _load_meta(path)
    samples: list[Sample] = []
    phases: tuple[tuple[str, Split], ...] = (("train", "train"), ("validation", "train"), ("test", "test"))
    for phase, split in phases:
        classes = data.get(phase) or {}
        if not isinstance(classes, dict):
            raise DataError(f"{path}: '{phase}' must map class names to lists of entries")
        for cls, entries in classes.items():
            if not isinstance(entries, list):
                raise DataError(f"{path}: '{phase}.{cls}' must be a list of entries")
            for i, e in enumerate(entries):
                where = f"{path} ({phase}.{cls}[{i}])"
                if not isinstance(e, dict) or "img_path" not in e or "anomaly" not in e:
                    raise DataError(f"{where}: entry must have keys {', '.join(META_KEYS)}")
                image = _resolve(root, str(e["img_path"]))
                if not image.is_file():
                    raise DataError(f"{image}: image listed in {where} not found")
                label = int(bool(e["anomaly"]))
                mask = None
                if label == 1 and e.get("mask_path"):
                    mask = _resolve(root, str(e["mask_path"]))
                    if not mask.is_file():
                        raise DataError(f"{mask}: mask listed in {where} not found")
                specie = str(e.get("specie_name") or "")
                defect = NORMAL if label == 0 else (specie if specie and specie != NORMAL else "anomaly")
                samples.append(Sample(image, mask, label, str(cls), defect, split))
    if not samples:
        raise DataError(f"{path}: meta file lists no images")
    return samples


def read_medical(root: Path | str) -> list[Sample]:
    """Uni-Medical (brain, liver, retinal): ``meta.json`` when present, else its MVTec-style tree."""
    root = check_root(root)
    if (root / "meta.json").is_file():
        return read_meta(root)
    return read_mvtec(root)


def read_coco(root: Path | str, split: int = 0) -> list[Sample]:
    """COCO-AD split ``k`` (``meta_20_<k>.json``: 20 of the 80 categories are the anomalies)."""
    root = check_root(root)
    name = f"meta_20_{split}.json"
    if not (root / name).is_file():
        present = sorted(p.name for p in root.glob("meta_20_*.json"))
        raise DataError(
            f"{root / name}: COCO-AD meta file not found (present: {', '.join(present) or 'none'})"
        )
    return read_meta(root, name)
