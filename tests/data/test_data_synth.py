"""The synthetic defect data set: layout, determinism, exact masks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mambaad import cli
from mambaad.data import make_synthetic_dataset, read_dataset
from mambaad.data.synth import DEFECTS, KINDS, render
from mambaad.errors import DataError


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


def test_layout_and_counts(synth_root: Path, capsys) -> None:
    assert cli.main(["data", str(synth_root), "--json", "--check"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "mvtec"
    assert set(out["classes"]) == {"woven", "disc"}
    for c in out["classes"].values():
        assert (c["train_good"], c["test_good"], c["test_anomalous"], c["masks"]) == (4, 2, 2, 2)
        assert c["problems"] == []


def test_masks_nonempty_exactly_for_defects(synth_root: Path) -> None:
    samples = read_dataset(synth_root)
    for s in samples:
        if s.label == 1:
            mask = np.asarray(Image.open(s.mask_path))
            assert set(np.unique(mask).tolist()) == {0, 255}
            assert mask.shape == (64, 64)
        else:
            assert s.mask_path is None
    # no masks for normal images are written at all
    assert not list(synth_root.glob("*/ground_truth/good"))


@pytest.mark.parametrize("kind", KINDS)
def test_mask_marks_exactly_the_changed_pixels(kind: str) -> None:
    for i, defect in enumerate(DEFECTS[kind]):
        clean, none = render(kind, 3, 0, "test_bad", i, 96)
        img, mask = render(kind, 3, 0, "test_bad", i, 96, defect=defect)
        assert not none.any()
        changed = np.abs(img.astype(int) - clean.astype(int))
        changed = changed.max(-1) if changed.ndim == 3 else changed
        assert mask.mean() >= 0.0008 and mask.mean() < 0.5, (kind, defect)
        assert not (changed[~mask]).any(), (kind, defect)  # nothing changes outside the mask
        assert (changed[mask] >= 10).mean() > 0.6, (kind, defect)  # and the defect is visible inside it


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    a = make_synthetic_dataset(tmp_path / "a", classes=2, seed=1, size=64, train=2, test=2)
    b = make_synthetic_dataset(tmp_path / "b", classes=2, seed=1, size=64, train=2, test=2)
    c = make_synthetic_dataset(tmp_path / "c", classes=2, seed=2, size=64, train=2, test=2)
    da, db, dc = digest(a), digest(b), digest(c)
    assert da == db
    assert da.keys() == dc.keys()
    assert all(da[k] != dc[k] for k in da if "train" in k)


def test_normals_vary(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "v", classes=2, seed=0, size=64, train=3, test=2)
    for cls in ("woven", "disc"):
        imgs = [
            np.asarray(Image.open(p), np.float32) for p in sorted((root / cls / "train" / "good").iterdir())
        ]
        assert np.abs(imgs[0] - imgs[1]).mean() > 2.0


def test_regenerates_own_folder_refuses_foreign(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    assert cli.main(["synth", str(out), "--classes", "3", "--size", "64", "--train", "2", "--test", "2"]) == 0
    before = digest(out)
    assert cli.main(["synth", str(out), "--classes", "1", "--size", "64", "--train", "2", "--test", "2"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["woven"]
    assert {k: v for k, v in before.items() if k.startswith("woven")} == digest(out)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    try:
        make_synthetic_dataset(foreign, classes=1, size=64, train=1, test=2)
        raise AssertionError("expected DataError")
    except DataError as exc:
        assert str(foreign) in str(exc)
    assert (foreign / "keep.txt").exists()
