"""The sample table every reader produces, and small helpers over it.

A reader turns a data root into a flat ``list[Sample]``; everything after that (training sets of many
classes or many data sets, per-class evaluation, the ``mambaad data`` summary) works on that list only,
so a new layout needs nothing but a new reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mambaad.errors import DataError

Split = Literal["train", "test"]

#: File name endings we treat as images (compared lower-case).
IMAGE_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: Defect name used for every normal image, whatever the source layout calls it.
NORMAL = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a data set.

    Attributes:
        image_path: Absolute path of the image.
        mask_path: Path of its ground-truth mask, or None (normal image, or a label-only class).
        label: 0 normal, 1 anomalous.
        cls: Class (object) name.
        defect: Defect type; ``"good"`` for normal images.
        split: ``"train"`` or ``"test"``.
    """

    image_path: Path
    mask_path: Path | None
    label: int
    cls: str
    defect: str
    split: Split


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image extension (hidden files such as ``.DS_Store`` are skipped)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTS


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (deterministic order on every OS)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def class_names(samples: Iterable[Sample]) -> list[str]:
    """Class names in first-seen order."""
    return list(dict.fromkeys(s.cls for s in samples))


def by_class(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """Group samples per class (first-seen class order, sample order kept): the unit of evaluation."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.cls, []).append(s)
    return groups


def select(
    samples: Iterable[Sample], split: Split | None = None, classes: Sequence[str] | None = None
) -> list[Sample]:
    """Samples of one split and/or a subset of classes; unknown class names raise DataError."""
    samples = list(samples)
    if classes is not None:
        known = set(class_names(samples))
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise DataError(f"unknown class(es) {', '.join(unknown)}; available: {', '.join(sorted(known))}")
        wanted = set(classes)
        samples = [s for s in samples if s.cls in wanted]
    if split is not None:
        samples = [s for s in samples if s.split == split]
    return samples


def class_has_masks(samples: Iterable[Sample]) -> dict[str, bool]:
    """Per class: does any anomalous image carry a mask? False means pixel metrics are not available."""
    result: dict[str, bool] = {}
    for s in samples:
        result[s.cls] = result.get(s.cls, False) or (s.label == 1 and s.mask_path is not None)
    return result


def combine(datasets: Sequence[tuple[str, Sequence[Sample]]]) -> list[Sample]:
    """Join the samples of several data sets into one training/evaluation set.

    Class names that occur in more than one data set would silently merge two different products, so every
    colliding class is renamed ``<dataset name>/<class>``; unique names are kept as they are.

    Args:
        datasets: ``(name, samples)`` pairs, e.g. the root folder names and their reader output.
    """
    owners: dict[str, set[str]] = {}
    for name, samples in datasets:
        for c in class_names(samples):
            owners.setdefault(c, set()).add(name)
    out: list[Sample] = []
    for name, samples in datasets:
        for s in samples:
            out.append(replace(s, cls=f"{name}/{s.cls}") if len(owners[s.cls]) > 1 else s)
    return out
