"""The engine's view of the data: read the roots, pick classes, split, and check files up front.

Checking every file before the first step means a corrupt image surfaces as a one-line error in
seconds, not as a crash hours into training. The check is PIL's ``verify`` (structure and checksums,
no pixel decoding), which costs a fraction of a full decode; anything it misses still fails at first
load with the file name (:class:`~mambaad.data.dataset.AnomalyDataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mambaad.config import DataConfig
from mambaad.data.formats import list_formats, read_dataset, read_datasets
from mambaad.data.imageio import check_mask_size
from mambaad.data.sample import Sample, class_names, select
from mambaad.errors import ConfigError, DataError


def load_samples(cfg: DataConfig) -> list[Sample]:
    """All samples of ``data.root`` (one or several roots) restricted to ``data.classes``."""
    fmts = None if cfg.format is None else [cfg.format] * len(cfg.root)
    samples = read_datasets(cfg.root, fmts)
    return select(samples, classes=cfg.classes) if cfg.classes else samples


def load_val_samples(cfg: DataConfig) -> list[Sample]:
    """The labelled validation images of ``data.val_root`` ([] when unset), for the F1 threshold.

    Every image of the root counts, of every split, with the label its layout gives (normal training
    images are normals too); with ``data.classes`` only those classes are kept. Both labels must occur.
    """
    if cfg.val_root is None:
        return []
    root = Path(cfg.val_root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"data.val_root {root}: folder not found")
    if cfg.val_format is not None and cfg.val_format not in list_formats():
        raise ConfigError(
            f"data.val_format: unknown layout {cfg.val_format!r}; choose one of {', '.join(list_formats())}"
        )
    samples = read_dataset(root, cfg.val_format)
    if cfg.classes:
        samples = [s for s in samples if s.cls in set(cfg.classes)]
    n_bad = sum(s.label for s in samples)
    if n_bad == 0 or n_bad == len(samples):
        raise DataError(
            f"data.val_root {root}: needs normal and anomalous images for the F1 threshold, "
            f"found {len(samples) - n_bad} normal and {n_bad} anomalous"
        )
    return samples


def split_samples(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample], list[str]]:
    """(normal training images, test images, class names); every class needs both."""
    train = [s for s in select(samples, "train") if s.label == 0]
    test = select(samples, "test")
    classes = class_names(samples)
    for cls in classes:
        if not any(s.cls == cls for s in train):
            raise DataError(f"class {cls!r}: no normal training images")
        if not any(s.cls == cls for s in test):
            raise DataError(f"class {cls!r}: no test images")
    return train, test, classes


def verify_image(path: str) -> tuple[int, int]:
    """Cheap integrity check of one image file (raises DataError naming it); returns its (W, H)."""
    try:
        with Image.open(path) as img:
            size = img.size
            img.verify()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: unreadable or truncated image ({msg})") from None
    return size


def verify_files(samples: Sequence[Sample]) -> None:
    """:func:`verify_image` on every image and mask of ``samples``, and every mask the size of its image:
    found before training starts, not at its first evaluation."""
    for s in samples:
        size = verify_image(str(s.image_path))
        if s.mask_path is not None:
            check_mask_size(s.mask_path, verify_image(str(s.mask_path)), size)
