"""Readers for the MVTec-AD tree and the plain folder layout (no meta file needed).

Layout, per class (or the root itself when it directly holds ``train/`` and ``test/``, as a single class
named after the folder)::

    <class>/train/good/*.png                      normal training images
    <class>/test/good/*.png                       normal test images
    <class>/test/<type>/*.png                     anomalous test images of defect <type>
    <class>/ground_truth/<type>/<stem>_mask.png   their masks (``<stem>.png`` is accepted too)

``mvtec`` requires a mask for every defect image. ``folder`` requires them only in classes that have a
``ground_truth/`` folder; other classes are label-only (image metrics only). Masks are paired with
images by file stem, not by sorted index as ADer's generator does, so a missing mask cannot shift every
later pair by one.
"""

from __future__ import annotations

from pathlib import Path

from mambaad.data.sample import IMAGE_EXTS, NORMAL, Sample, Split, list_images
from mambaad.errors import DataError

#: Folder names that are never classes (archive debris, other layouts' metadata).
IGNORED_DIRS = frozenset({"__MACOSX", "split_csv"})

FOLDER_HINT = "expected <class>/train/good/ and <class>/test/<type>/ sub-folders"


def check_root(root: Path | str) -> Path:
    """Return the root as an absolute path, or raise DataError if it is missing or not a folder."""
    path = Path(root).expanduser().absolute()
    if not path.exists():
        raise DataError(f"{path}: data root not found")
    if not path.is_dir():
        raise DataError(f"{path}: data root is not a folder")
    return path


def is_class_dir(path: Path) -> bool:
    """A class folder holds ``train/`` or ``test/``."""
    return (path / "train").is_dir() or (path / "test").is_dir()


def class_dirs(root: Path) -> list[Path]:
    """The class folders under ``root``; the root itself when it is a single class folder."""
    if is_class_dir(root):
        return [root]
    return sorted(
        (
            p
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_DIRS
        ),
        key=lambda p: p.name,
    )


def find_mask(gt_dir: Path, stem: str) -> Path | None:
    """The mask of image ``stem`` in ``gt_dir``: ``<stem>_mask.<ext>`` first, then ``<stem>.<ext>``."""
    for name in (f"{stem}_mask", stem):
        for ext in (".png", *IMAGE_EXTS):
            for cand in (gt_dir / f"{name}{ext}", gt_dir / f"{name}{ext.upper()}"):
                if cand.is_file():
                    return cand
    return None


def read_class_folder(cls_dir: Path, cls: str, masks_required: bool) -> list[Sample]:
    """Samples of one class folder.

    Args:
        cls_dir: The class folder.
        cls: Class name to record.
        masks_required: Raise DataError for a defect image without a mask (else: label-only images).
    """
    if not is_class_dir(cls_dir):
        if not any(cls_dir.iterdir()):
            raise DataError(f"{cls_dir}: empty class folder ({FOLDER_HINT})")
        raise DataError(f"{cls_dir}: not a class folder ({FOLDER_HINT})")
    samples: list[Sample] = []
    gt_root = cls_dir / "ground_truth"
    splits: tuple[Split, ...] = ("train", "test")
    for split in splits:
        split_dir = cls_dir / split
        if not split_dir.is_dir():
            continue
        for type_dir in sorted((p for p in split_dir.iterdir() if p.is_dir()), key=lambda p: p.name):
            images = list_images(type_dir)
            if not images and type_dir.name == NORMAL and split == "train":
                raise DataError(f"{type_dir}: empty folder (no training images)")
            label = 0 if type_dir.name == NORMAL else 1
            for img in images:
                mask = None
                if label == 1:
                    mask = find_mask(gt_root / type_dir.name, img.stem)
                    if mask is None and masks_required:
                        raise DataError(
                            f"{img}: defect image has no mask "
                            f"(expected {gt_root / type_dir.name / (img.stem + '_mask.png')})"
                        )
                samples.append(Sample(img, mask, label, cls, type_dir.name, split))
    if not samples:
        raise DataError(f"{cls_dir}: empty class folder ({FOLDER_HINT})")
    return samples


def _read_tree(root: Path | str, mvtec: bool) -> list[Sample]:
    root = check_root(root)
    dirs = class_dirs(root)
    if not dirs:
        raise DataError(f"{root}: no class folders ({FOLDER_HINT})")
    samples: list[Sample] = []
    for d in dirs:
        required = mvtec or (d / "ground_truth").is_dir()
        samples.extend(read_class_folder(d, d.name, masks_required=required))
    return samples


def read_mvtec(root: Path | str) -> list[Sample]:
    """MVTec-AD tree (also MPDD, BTAD-like and the MVTec-style Uni-Medical tree); every defect image needs a mask.

    >>> read_mvtec("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    mambaad.errors.DataError: /nonexistent: data root not found
    """
    return _read_tree(root, mvtec=True)


def read_folder(root: Path | str) -> list[Sample]:
    """Plain folder layout: like MVTec, but a class without ``ground_truth/`` is label-only."""
    return _read_tree(root, mvtec=False)
