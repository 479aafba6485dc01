"""AnomalyDataset items, spec §7 transforms, image-mode conversion and mask binarization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mambaad.data import AnomalyDataset, Sample, load_mask, load_rgb, read_dataset
from mambaad.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, image_to_tensor, mask_to_tensor


def test_items_shapes_and_fields(data_trees) -> None:
    samples = read_dataset(data_trees["folder"].root)
    ds = AnomalyDataset(samples, image_size=40, crop_size=32)
    assert len(ds) == len(samples)
    for i, s in enumerate(samples):
        item = ds[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert item["label"] == s.label and item["cls"] == s.cls and item["defect"] == s.defect
        assert item["path"] == str(s.image_path)
        assert item["has_mask"] == (s.cls == "a")  # class b is label-only
        if s.label == 0 or s.cls == "b":
            assert item["mask"].sum() == 0
        else:
            assert item["mask"].sum() > 0


def test_normalization_matches_imagenet_stats() -> None:
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2] = 0, 128, 255
    t = image_to_tensor(Image.fromarray(arr), 8, 8)
    expected = [(v / 255 - m) / s for v, m, s in zip((0, 128, 255), IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(t[:, 0, 0], torch.tensor(expected), atol=1e-6)
    assert torch.allclose(denormalize(t)[:, 0, 0], torch.tensor([0, 128 / 255, 1.0]), atol=1e-6)


def test_resize_is_square_then_center_crop() -> None:
    # left half black, right half white, non-square: after square resize the edge is at the centre
    arr = np.zeros((30, 60, 3), np.uint8)
    arr[:, 30:] = 255
    t = image_to_tensor(Image.fromarray(arr), 20, 10)
    assert t.shape == (3, 10, 10)
    grey = denormalize(t).mean(0)  # (10, 10)
    assert grey[:, 0].max() < 0.05 and grey[:, -1].min() > 0.95


def test_mask_binarized_after_resize() -> None:
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True  # a 8x8 square -> 4x4 at half size
    mask[0, 15] = True  # one pixel: averages below 0.5 after downscaling, so it vanishes
    t = mask_to_tensor(mask, 8, 8)
    assert t.shape == (1, 8, 8) and set(t.unique().tolist()) == {0.0, 1.0}
    assert t.sum() == 16 and t[0, 0, 7] == 0


@pytest.mark.parametrize("value", [1, 7, 128, 255])
def test_mask_file_nonzero_is_anomalous(tmp_path: Path, value: int) -> None:
    arr = np.zeros((6, 6), np.uint8)
    arr[2:4, 2:4] = value
    Image.fromarray(arr).save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png", (6, 6))
    assert m.dtype == bool and m.sum() == 4


def test_palette_and_rgb_masks(tmp_path: Path) -> None:
    idx = np.zeros((6, 6), np.uint8)
    idx[1:3, 1:3] = 1
    p = Image.fromarray(idx, mode="P")
    p.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)  # index 1 drawn black: still a defect by index
    p.save(tmp_path / "p.png")
    assert load_mask(tmp_path / "p.png").sum() == 4
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[0, 0, 2] = 255
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert load_mask(tmp_path / "c.png").sum() == 1


def _save(tmp_path: Path, img: Image.Image, name: str) -> Path:
    path = tmp_path / name
    img.save(path)
    return path


def test_grey_modes_become_equal_rgb(tmp_path: Path) -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    expected = np.repeat(grey[..., None], 3, axis=-1)
    for mode in ("L", "LA", "P"):
        img = Image.fromarray(grey).convert(mode)
        out = np.asarray(load_rgb(_save(tmp_path, img, f"g_{mode}.png")))
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
        np.testing.assert_allclose(out.astype(int), expected.astype(int), atol=3 if mode == "P" else 0)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    out = np.asarray(load_rgb(_save(tmp_path, Image.fromarray(arr, "RGBA"), "a.png")))
    np.testing.assert_array_equal(out, arr[..., :3])


def test_16_bit_scaled_by_range_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 257, 32896, 65535]], np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = np.asarray(load_rgb(_save(tmp_path, img, "d.png")))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    assert (out[..., 0] == out[..., 2]).all()


def test_32_bit_int_and_float_modes(tmp_path: Path) -> None:
    i32 = Image.fromarray(np.array([[0, 1000, 70000, 140000]], np.int32))
    assert i32.mode == "I"
    out = np.asarray(load_rgb(_save(tmp_path, i32, "i.tiff")))
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255 and out[0, 1, 0] < out[0, 2, 0]
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    out = np.asarray(load_rgb(_save(tmp_path, f, "f.tiff")))
    np.testing.assert_array_equal(out[0, :, 1], [0, 128, 255])


def test_mask_of_label_only_anomaly_in_masked_class_has_no_mask(tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    m = tmp_path / "m.png"
    Image.new("L", (8, 8), 255).save(m)
    samples = [
        Sample(img, m, 1, "c", "d", "test"),
        Sample(img, None, 1, "c", "d", "test"),
        Sample(img, None, 0, "c", "good", "test"),
    ]
    ds = AnomalyDataset(samples, 8, 8)
    assert [ds[i]["has_mask"] for i in range(3)] == [True, False, True]
    assert ds[0]["mask"].sum() == 64 and ds[1]["mask"].sum() == 0


def test_cached_items_equal_the_files(data_trees, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cache=True`` decodes every image once at construction; items are then identical, masks included,
    and no image file is decoded again."""
    from mambaad.data import dataset as dataset_mod

    samples = read_dataset(data_trees["folder"].root)
    plain = AnomalyDataset(samples, image_size=40, crop_size=32)
    expected = [plain[i] for i in range(len(samples))]
    cached = AnomalyDataset(samples, image_size=40, crop_size=32, cache=True)
    monkeypatch.setattr(dataset_mod, "load_rgb", lambda path: pytest.fail(f"{path} decoded again"))
    assert any(s.label == 1 and s.mask_path is not None for s in samples)  # masks read with the cached sizes
    for i, want in enumerate(expected):
        got = cached[i]
        assert torch.equal(got["image"], want["image"]) and torch.equal(got["mask"], want["mask"])
        assert {k: v for k, v in got.items() if k not in ("image", "mask")} == {
            k: v for k, v in want.items() if k not in ("image", "mask")
        }


def test_cache_setting() -> None:
    from mambaad.data.dataset import cache_bytes, should_cache

    assert cache_bytes(10, 256) == 10 * 256 * 256 * 3
    assert should_cache(True, 10**9, 256) and not should_cache(False, 1, 256)
    assert should_cache(None, 100, 256)  # 20 MB: fits
    assert not should_cache(None, 100, 256, copies=10**7)  # one copy per process: 197 TB
    assert not should_cache(None, 10**9, 256)  # 197 TB: does not


def test_cache_reports_a_corrupt_image(tmp_path: Path) -> None:
    """A broken file fails the cache's construction with the file's name (before any training step)."""
    from mambaad.errors import DataError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png"):
        AnomalyDataset([Sample(bad, None, 0, "a", "good", "train")], image_size=8, crop_size=8, cache=True)
