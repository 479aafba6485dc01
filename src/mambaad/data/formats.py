"""The registry of layouts, layout detection, and reading one or several data roots.

Detection order (first match wins), so a root that carries both a raw tree and ADer's ``meta.json``
follows the meta file, which is what defines the split for ADer users:

1. ``split_csv/1cls.csv``                       -> ``visa``
2. ``meta_20_<k>.json``                         -> ``coco``
3. ``meta.json``                                -> ``meta`` (ADer generic; also Uni-Medical)
4. Real-IAD class JSONs (any accepted placement) -> ``realiad``
5. class folders with ``rgb/`` sub-folders        -> ``mvtec3d``
6. class folders with ``train/`` / ``test/``      -> ``mvtec`` if every class that has defect images also
   has ``ground_truth/`` (masks are then required for every defect image), else ``folder``
   (classes without ``ground_truth/`` are label-only: image metrics only).

``medical`` is never detected (its tree is MVTec-style and its meta file is ADer's); name it with
``--format medical`` if you like, the result is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mambaad.data.folder import check_root, class_dirs, is_class_dir, read_folder, read_mvtec
from mambaad.data.meta import read_coco, read_medical, read_meta
from mambaad.data.mvtec3d import read_mvtec3d
from mambaad.data.realiad import find_realiad_jsons, read_realiad
from mambaad.data.sample import NORMAL, Sample, combine
from mambaad.data.visa import read_visa
from mambaad.errors import ConfigError, DataError

Reader = Callable[[Path], list[Sample]]

#: Layout name -> reader. Explicit dict: the CLI's ``--format`` choices and error messages come from it.
READERS: dict[str, Reader] = {
    "mvtec": read_mvtec,
    "visa": read_visa,
    "realiad": read_realiad,
    "mvtec3d": read_mvtec3d,
    "medical": read_medical,
    "coco": read_coco,
    "meta": read_meta,
    "folder": read_folder,
}

EXPECTED_LAYOUTS = (
    "mvtec/folder (<class>/train/good, <class>/test/<type>, optional <class>/ground_truth/<type>), "
    "visa (split_csv/1cls.csv), realiad (realiad_jsons/<class>.json + <class>/ images), "
    "mvtec3d (<class>/train/good/rgb), medical/meta (meta.json), coco (meta_20_<k>.json)"
)


def list_formats() -> list[str]:
    """Names accepted by ``--format``."""
    return list(READERS)


def _has_defect_images(cls_dir: Path) -> bool:
    test = cls_dir / "test"
    return test.is_dir() and any(p.is_dir() and p.name != NORMAL for p in test.iterdir())


def detect_format(root: Path | str) -> str:
    """Guess the layout of ``root`` (see the module docstring for the rules).

    Raises:
        DataError: The root is missing, or matches none of the known layouts.
    """
    root = check_root(root)
    if (root / "split_csv" / "1cls.csv").is_file():
        return "visa"
    if any(root.glob("meta_20_*.json")):
        return "coco"
    if (root / "meta.json").is_file():
        return "meta"
    if find_realiad_jsons(root):
        return "realiad"
    dirs = [d for d in class_dirs(root) if is_class_dir(d)]
    if not dirs:
        raise DataError(f"{root}: unknown data layout; expected one of: {EXPECTED_LAYOUTS}")
    if any((d / "train" / NORMAL / "rgb").is_dir() or any((d / "test").glob("*/rgb")) for d in dirs):
        return "mvtec3d"
    with_defects = [d for d in dirs if _has_defect_images(d)]
    if with_defects and all((d / "ground_truth").is_dir() for d in with_defects):
        return "mvtec"
    return "folder"


def read_dataset(root: Path | str, fmt: str | None = None) -> list[Sample]:
    """Read a data root with the named layout, or the detected one when ``fmt`` is None."""
    if fmt is None:
        fmt = detect_format(root)
    if fmt not in READERS:
        raise ConfigError(f"--format: unknown layout {fmt!r}; choose one of {', '.join(READERS)}")
    return READERS[fmt](Path(root))


def read_datasets(roots: Sequence[Path | str], fmts: Sequence[str | None] | None = None) -> list[Sample]:
    """Read several data roots into one multi-class set.

    A class name present in more than one root becomes ``<root folder name>/<class>`` (see
    :func:`mambaad.data.sample.combine`).
    """
    fmts = list(fmts) if fmts is not None else [None] * len(roots)
    if len(fmts) != len(roots):
        raise ConfigError(f"--format: got {len(fmts)} formats for {len(roots)} data roots")
    parts = [(Path(r).expanduser().absolute().name, read_dataset(r, f)) for r, f in zip(roots, fmts)]
    names = [n for n, _ in parts]
    if len(set(names)) != len(names):
        parts = [(f"{n}{i}" if names.count(n) > 1 else n, s) for i, (n, s) in enumerate(parts)]
    return combine(parts)
