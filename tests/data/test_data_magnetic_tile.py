"""The one real data set at hand: Magnetic Tile Defects in the MVTec layout (grey, non-square JPGs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mambaad import cli
from mambaad.data import AnomalyDataset, read_dataset
from mambaad.data.transforms import denormalize

ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "magnetic_tile"
pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"{ROOT} not present")


def test_counts_and_empty_mask_warning(capsys) -> None:
    assert cli.main(["data", str(ROOT), "--json", "--check"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "mvtec"
    c = out["classes"]["magnetic_tile"]
    assert (c["train_good"], c["test_good"], c["test_anomalous"], c["masks"]) == (762, 190, 392, 392)
    empty = [p for p in c["problems"] if "empty mask" in p]
    assert len(empty) == 1 and empty[0].startswith("4 anomalous images with an empty mask")
    assert "uneven/" in empty[0]


def test_items_from_grey_non_square_jpgs() -> None:
    samples = read_dataset(ROOT)
    test = [s for s in samples if s.split == "test"]
    ds = AnomalyDataset([test[0], next(s for s in test if s.label == 1)])
    for i in range(2):
        item = ds[i]
        assert item["image"].shape == (3, 256, 256) and item["mask"].shape == (1, 256, 256)
        assert item["has_mask"] is True
        # grey source: the three channels agree up to the per-channel normalization
        img = denormalize(item["image"])
        assert (img[0] - img[2]).abs().max() < 1e-5
