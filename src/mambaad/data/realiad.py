"""Reader for Real-IAD: one JSON per class plus the image folders.

JSON placements accepted (first found wins): ``<root>/<set>/<set>/<cls>.json`` (anomalib's default),
``<root>/<set>/<cls>.json`` (official README), or ADer's flat ``<root>/<cls>.json``; ``<set>`` is
``realiad_jsons`` by default (``realiad_jsons_sv`` etc. can be chosen). Images live under ``<root>/<cls>/``
or ``<root>/realiad_<res>/<cls>/`` (1024 preferred). Entry paths are relative to the class folder and
are used verbatim (file names are irregular). The label comes from ``anomaly_class`` (``"OK"`` = normal),
never from the ``OK/``/``NG/`` folder: many ``NG/`` views are labelled OK.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mambaad.data.folder import check_root
from mambaad.data.sample import NORMAL, Sample, Split
from mambaad.errors import DataError

REALIAD_KEYS = ("category", "anomaly_class", "image_path", "mask_path")
REALIAD_HINT = (
    "expected <root>/realiad_jsons/<cls>.json (or realiad_jsons/realiad_jsons/, or ADer's flat <root>/<cls>.json) "
    "and images under <root>/<cls>/ or <root>/realiad_1024/<cls>/"
)


def _is_realiad_json(path: Path) -> bool:
    """Cheap content check: a Real-IAD class JSON is an object with ``train`` and ``test`` lists."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(data, dict) and isinstance(data.get("train"), list) and isinstance(data.get("test"), list)
    )


def find_realiad_jsons(root: Path, json_set: str = "realiad_jsons") -> list[Path]:
    """The per-class JSON files, in the first placement that has any."""
    for folder in (root / json_set / json_set, root / json_set):
        if folder.is_dir():
            found = sorted(folder.glob("*.json"))
            if found:
                return found
    flat = [p for p in sorted(root.glob("*.json")) if not p.name.startswith("meta")]
    return [p for p in flat if (root / p.stem).is_dir() and _is_realiad_json(p)]


def find_class_images(root: Path, cls: str) -> Path | None:
    """The image folder of a class: ``<root>/<cls>``, else ``realiad_1024/<cls>``, else another resolution."""
    candidates = [root / cls, root / "realiad_1024" / cls]
    candidates += [
        d / cls
        for d in sorted(root.glob("realiad_*"))
        if d.is_dir() and not d.name.startswith("realiad_jsons")
    ]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable JSON ({' '.join(str(exc).split())})") from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("train"), list)
        or not isinstance(data.get("test"), list)
    ):
        raise DataError(f"{path}: not a Real-IAD class JSON (expected top-level keys meta, train, test)")
    return data


def read_realiad_class(json_path: Path, image_dir: Path, cls: str) -> list[Sample]:
    """Samples of one Real-IAD class JSON; images and masks are resolved against ``image_dir``."""
    data = _load_json(json_path)
    normal = str((data.get("meta") or {}).get("normal_class", "OK"))
    samples: list[Sample] = []
    splits: tuple[Split, ...] = ("train", "test")
    for split in splits:
        for i, entry in enumerate(data[split]):
            where = f"{json_path} ({split}[{i}])"
            if not isinstance(entry, dict) or any(k not in entry for k in REALIAD_KEYS):
                raise DataError(f"{where}: entry must have keys {', '.join(REALIAD_KEYS)}")
            image = image_dir / str(entry["image_path"])
            if not image.is_file():
                raise DataError(f"{image}: image listed in {where} not found")
            label = int(str(entry["anomaly_class"]) != normal)
            mask = None
            if label == 1 and entry["mask_path"]:
                mask = image_dir / str(entry["mask_path"])
                if not mask.is_file():
                    raise DataError(f"{mask}: mask listed in {where} not found")
            defect = str(entry["anomaly_class"]) if label else NORMAL
            samples.append(Sample(image, mask, label, cls, defect, split))
    if not samples:
        raise DataError(f"{json_path}: class JSON lists no images")
    return samples


def read_realiad(root: Path | str, json_set: str = "realiad_jsons") -> list[Sample]:
    """Real-IAD, every view scored as its own image (ADer's ``use_sample=False``)."""
    root = check_root(root)
    jsons = find_realiad_jsons(root, json_set)
    if not jsons:
        raise DataError(f"{root}: no Real-IAD class JSON files ({REALIAD_HINT})")
    samples: list[Sample] = []
    for jp in jsons:
        image_dir = find_class_images(root, jp.stem)
        if image_dir is None:
            raise DataError(f"{root}: no image folder for class {jp.stem} ({REALIAD_HINT})")
        samples.extend(read_realiad_class(jp, image_dir, jp.stem))
    return samples
