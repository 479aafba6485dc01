"""Reader for the MVTec 3D-AD tree (RGB images and their ``gt`` masks; the depth ``xyz`` files are ignored).

Per class: ``train/good/rgb``, ``validation/good/rgb`` (normal only, folded into train as ADer does),
``test/<type>/rgb/<name>.png`` with ``test/<type>/gt/<name>.png``. gt pixel values are defect ids, not
0/255; they are binarized ``> 0`` when loaded.
"""

from __future__ import annotations

from pathlib import Path

from mambaad.data.folder import check_root, class_dirs, find_mask
from mambaad.data.sample import NORMAL, Sample, list_images
from mambaad.errors import DataError

MVTEC3D_HINT = (
    "expected <class>/train/good/rgb/, <class>/validation/good/rgb/ and <class>/test/<type>/{rgb,gt}/"
)


def read_mvtec3d_class(cls_dir: Path, cls: str) -> list[Sample]:
    """Samples of one MVTec-3D class folder."""
    samples: list[Sample] = []
    for phase in ("train", "validation"):
        for img in list_images(cls_dir / phase / NORMAL / "rgb"):
            samples.append(Sample(img, None, 0, cls, NORMAL, "train"))
    test_dir = cls_dir / "test"
    if test_dir.is_dir():
        for type_dir in sorted((p for p in test_dir.iterdir() if p.is_dir()), key=lambda p: p.name):
            label = 0 if type_dir.name == NORMAL else 1
            for img in list_images(type_dir / "rgb"):
                mask = None
                if label == 1:
                    mask = find_mask(type_dir / "gt", img.stem)
                    if mask is None:
                        raise DataError(
                            f"{img}: defect image has no mask (expected {type_dir / 'gt' / img.name})"
                        )
                samples.append(Sample(img, mask, label, cls, type_dir.name, "test"))
    if not samples:
        raise DataError(f"{cls_dir}: empty class folder ({MVTEC3D_HINT})")
    return samples


def read_mvtec3d(root: Path | str) -> list[Sample]:
    """MVTec 3D-AD (RGB + gt); train = train + validation good images."""
    root = check_root(root)
    dirs = class_dirs(root)
    if not dirs:
        raise DataError(f"{root}: no class folders ({MVTEC3D_HINT})")
    samples: list[Sample] = []
    for d in dirs:
        samples.extend(read_mvtec3d_class(d, d.name))
    return samples
