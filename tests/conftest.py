"""Shared fixtures: tiny on-disk data trees of every supported layout, built once per session.

Each layout fixture returns a :class:`Tree`: the root, the layout name detection should find, and the
per-class counts the tree was built with (so tests compare against the construction, not against the
reader's own output).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a test module (use: ``pytestmark = pytest.mark.usefixtures(...)``).

    Tiny models only lose time to thread contention on a shared 2-core CPU (OpenMP threads spin when the
    cores are oversubscribed), and one thread keeps runs bit-reproducible between this process and a
    ``python -m mambaad`` subprocess.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SIZE = (32, 24)  # (W, H): non-square on purpose


@dataclass
class Tree:
    """A built data tree and what it contains."""

    root: Path
    fmt: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # cls -> train_good/test_good/...

    def add(self, cls: str, key: str, n: int = 1) -> None:
        c = self.counts.setdefault(cls, {"train_good": 0, "test_good": 0, "test_anomalous": 0, "masks": 0})
        c[key] += n


def write_image(path: Path, seed: int = 0, mode: str = "RGB", size: tuple[int, int] = SIZE) -> Path:
    """A small random image in ``mode`` (format from the suffix)."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_mask(path: Path, value: int = 255, size: tuple[int, int] = SIZE, rgb: bool = False) -> Path:
    """A mask with a filled rectangle of ``value`` (0 -> empty mask)."""
    w, h = size
    arr = np.zeros((h, w), np.uint8)
    arr[h // 4 : h // 2, w // 4 : w // 2] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([arr] * 3, -1) if rgb else arr).save(path)
    return path


def build_mvtec(root: Path) -> Tree:
    """Two classes: RGB ``bottle`` (two defect types) and grey ``grid``; a licence file in the root."""
    t = Tree(root, "mvtec")
    root.mkdir(parents=True)
    (root / "license.txt").write_text("not a class\n")
    for cls, mode, defects in (("bottle", "RGB", {"broken": 2, "scratch": 1}), ("grid", "L", {"bent": 2})):
        for i in range(3):
            write_image(root / cls / "train" / "good" / f"{i:03d}.png", i, mode)
            t.add(cls, "train_good")
        for i in range(2):
            write_image(root / cls / "test" / "good" / f"{i:03d}.png", 10 + i, mode)
            t.add(cls, "test_good")
        for d, n in defects.items():
            for i in range(n):
                write_image(root / cls / "test" / d / f"{i:03d}.png", 20 + i, mode)
                write_mask(root / cls / "ground_truth" / d / f"{i:03d}_mask.png")
                t.add(cls, "test_anomalous")
                t.add(cls, "masks")
    return t


def build_folder(root: Path) -> Tree:
    """Class ``a`` with masks named ``<stem>.png``; class ``b`` label-only with JPG images."""
    t = Tree(root, "folder")
    for i in range(2):
        write_image(root / "a" / "train" / "good" / f"img{i}.png", i)
        write_image(root / "b" / "train" / "good" / f"img{i}.jpg", i)
        t.add("a", "train_good")
        t.add("b", "train_good")
    write_image(root / "a" / "test" / "good" / "ok.png", 5)
    write_image(root / "b" / "test" / "good" / "ok.jpg", 5)
    t.add("a", "test_good")
    t.add("b", "test_good")
    for i in range(2):
        write_image(root / "a" / "test" / "dent" / f"d{i}.png", 6 + i)
        write_mask(root / "a" / "ground_truth" / "dent" / f"d{i}.png")
        write_image(root / "b" / "test" / "stain" / f"s{i}.jpg", 6 + i)
        t.add("a", "test_anomalous")
        t.add("a", "masks")
        t.add("b", "test_anomalous")
    return t


def build_visa(root: Path) -> Tree:
    """Raw VisA tree (JPG images, masks with value 1, not 255) plus split_csv/1cls.csv."""
    t = Tree(root, "visa")
    rows = ["object,split,label,image,mask"]
    for cls in ("candle", "pcb1"):
        for i in range(4):
            rel = f"{cls}/Data/Images/Normal/{i:04d}.JPG"
            write_image(root / rel, i)
            split = "train" if i < 3 else "test"
            rows.append(f"{cls},{split},normal,{rel},")
            t.add(cls, "train_good" if split == "train" else "test_good")
        for i in range(2):
            rel = f"{cls}/Data/Images/Anomaly/{i:03d}.JPG"
            mrel = f"{cls}/Data/Masks/Anomaly/{i:03d}.png"
            write_image(root / rel, 10 + i)
            write_mask(root / mrel, value=1)
            rows.append(f"{cls},test,anomaly,{rel},{mrel}")
            t.add(cls, "test_anomalous")
            t.add(cls, "masks")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return t


def _realiad_entries(cls: str, image_dir: Path) -> dict:
    """Write one class's images under ``image_dir`` and return its JSON: 2 train OK, test: 1 OK, 1 OK view
    stored under NG/ (no mask), 2 NG with masks."""

    def entry(rel: str, anomaly: str, mask: str | None, seed: int) -> dict:
        write_image(image_dir / rel, seed)
        if mask:
            write_mask(image_dir / mask)
        return {"category": cls, "anomaly_class": anomaly, "image_path": rel, "mask_path": mask}

    train = [entry(f"OK/S0001/{cls}_0001_OK_C{v}_1.jpg", "OK", None, v) for v in (1, 2)]
    test = [
        entry(f"OK/S0002/{cls}_0002_OK_C1_1.jpg", "OK", None, 3),
        entry(f"NG/BX/S0003/{cls}__0003_NG_BX_C2_1.jpg", "OK", None, 4),
        entry(f"NG/BX/S0003/{cls}__0003_NG_BX_C1_1.jpg", "BX", f"NG/BX/S0003/{cls}__0003_NG_BX_C1_1.png", 5),
        entry(f"NG/AK/S0004/{cls}__0004_NG_AK_C1_1.jpg", "AK", f"NG/AK/S0004/{cls}__0004_NG_AK_C1_1.png", 6),
    ]
    return {"meta": {"prefix": f"{cls}/", "normal_class": "OK"}, "train": train, "test": test}


def build_realiad(root: Path, placement: str) -> Tree:
    """Real-IAD class ``audiojack`` with the JSON ``flat`` (ADer), ``official`` or ``nested`` (anomalib)."""
    t = Tree(root, "realiad")
    cls = "audiojack"
    image_dir = root / cls if placement == "flat" else root / "realiad_1024" / cls
    data = _realiad_entries(cls, image_dir)
    json_dir = {
        "flat": root,
        "official": root / "realiad_jsons",
        "nested": root / "realiad_jsons" / "realiad_jsons",
    }
    json_dir[placement].mkdir(parents=True, exist_ok=True)
    (json_dir[placement] / f"{cls}.json").write_text(json.dumps(data))
    t.counts[cls] = {"train_good": 2, "test_good": 2, "test_anomalous": 2, "masks": 2}
    return t


def build_mvtec3d(root: Path) -> Tree:
    """MVTec-3D class ``bagel``: train 2 + validation 1 good, test good 1, test crack 2 (gt values 253/254)."""
    t = Tree(root, "mvtec3d")
    c = root / "bagel"
    for i in range(2):
        write_image(c / "train" / "good" / "rgb" / f"{i:03d}.png", i)
        (c / "train" / "good" / "xyz").mkdir(parents=True, exist_ok=True)
        (c / "train" / "good" / "xyz" / f"{i:03d}.tiff").write_bytes(b"depth ignored")
    write_image(c / "validation" / "good" / "rgb" / "000.png", 3)
    t.add("bagel", "train_good", 3)
    write_image(c / "test" / "good" / "rgb" / "000.png", 4)
    write_mask(c / "test" / "good" / "gt" / "000.png", value=0)
    t.add("bagel", "test_good")
    for i in range(2):
        write_image(c / "test" / "crack" / "rgb" / f"{i:03d}.png", 5 + i)
        write_mask(c / "test" / "crack" / "gt" / f"{i:03d}.png", value=253 + i)
        t.add("bagel", "test_anomalous")
        t.add("bagel", "masks")
    return t


def build_medical(root: Path) -> Tree:
    """Uni-Medical ``brain``: MVTec-style tree plus ADer's meta.json (with a '//' in paths, as ADer writes)."""
    t = Tree(root, "meta")
    meta: dict = {"train": {"brain": []}, "test": {"brain": []}}
    for i in range(2):
        rel = f"brain/train/good/{i:03d}.png"
        write_image(root / rel, i, "L")
        meta["train"]["brain"].append(
            {"img_path": rel, "mask_path": "", "cls_name": "brain", "specie_name": "good", "anomaly": 0}
        )
    write_image(root / "brain/test/good/000.png", 3, "L")
    meta["test"]["brain"].append(
        {
            "img_path": "brain/test/good//000.png",
            "mask_path": "",
            "cls_name": "brain",
            "specie_name": "good",
            "anomaly": 0,
        }
    )
    for i in range(2):
        write_image(root / f"brain/test/ungood/{i:03d}.png", 4 + i, "L")
        write_mask(root / f"brain/ground_truth/ungood/{i:03d}.png")
        meta["test"]["brain"].append(
            {
                "img_path": f"brain/test/ungood//{i:03d}.png",
                "mask_path": f"brain/ground_truth/ungood/{i:03d}.png",
                "cls_name": "brain",
                "specie_name": "ungood",
                "anomaly": 1,
            }
        )
    (root / "meta.json").write_text(json.dumps(meta))
    t.counts["brain"] = {"train_good": 2, "test_good": 1, "test_anomalous": 2, "masks": 2}
    return t


def build_coco(root: Path) -> Tree:
    """COCO-AD split 0: one pseudo-class ``coco``; 3-channel 0/255 masks, as ADer's generator writes."""
    t = Tree(root, "coco")
    meta: dict = {"train": {"coco": []}, "test": {"coco": []}}
    for i in range(3):
        rel = f"train2017/{i:012d}.jpg"
        write_image(root / rel, i)
        meta["train"]["coco"].append(
            {"img_path": rel, "mask_path": "", "cls_name": "coco", "specie_name": "", "anomaly": 0}
        )
    for i in range(3):
        rel = f"val2017/{100 + i:012d}.jpg"
        write_image(root / rel, 10 + i)
        anomaly = int(i > 0)
        mrel = f"val2017_mask_ad_20_0/{100 + i:012d}.png" if anomaly else ""
        if anomaly:
            write_mask(root / mrel, rgb=True)
        meta["test"]["coco"].append(
            {"img_path": rel, "mask_path": mrel, "cls_name": "coco", "specie_name": "", "anomaly": anomaly}
        )
    (root / "meta_20_0.json").write_text(json.dumps(meta))
    t.counts["coco"] = {"train_good": 3, "test_good": 1, "test_anomalous": 2, "masks": 2}
    return t


@pytest.fixture(scope="session")
def data_trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tree]:
    """Every layout, keyed by a short name (realiad once per JSON placement)."""
    base = tmp_path_factory.mktemp("trees")
    return {
        "mvtec": build_mvtec(base / "mvtec"),
        "folder": build_folder(base / "folder"),
        "visa": build_visa(base / "visa"),
        "realiad_flat": build_realiad(base / "realiad_flat", "flat"),
        "realiad_official": build_realiad(base / "realiad_official", "official"),
        "realiad_nested": build_realiad(base / "realiad_nested", "nested"),
        "mvtec3d": build_mvtec3d(base / "mvtec3d"),
        "medical": build_medical(base / "medical"),
        "coco": build_coco(base / "coco"),
    }


@pytest.fixture(scope="session")
def mvtec_tree(data_trees: dict[str, Tree]) -> Tree:
    """The tiny two-class MVTec tree (read-only: copy it before breaking it)."""
    return data_trees["mvtec"]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic defect data set (2 classes, 64 px, 4 train + 4 test each), for any test needing data."""
    from mambaad.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(
        tmp_path_factory.mktemp("synth") / "set", classes=2, seed=0, size=64, train=4, test=4
    )
