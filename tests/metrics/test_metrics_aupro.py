"""Exact AU-PRO against a naive loop over every threshold, and 8-connected regions."""

import numpy as np
import pytest
from skimage import measure

from mambaad.metrics.functional import pixel_metrics
from mambaad.metrics.pixel import region_ids


def naive_aupro(masks: np.ndarray, maps: np.ndarray, max_fpr: float = 0.3) -> float:
    """Every distinct map value as a threshold (map >= t), PRO and FPR counted directly, trapezoid to 0.3."""
    regions = []  # (image index, boolean region mask)
    for i, m in enumerate(masks):
        lab = measure.label(m, connectivity=2)
        regions += [(i, lab == r) for r in range(1, lab.max() + 1)]
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        pros.append(np.mean([pred[i][r].sum() / r.sum() for i, r in regions]))
        fprs.append((pred & normal).sum() / normal.sum())
    area = 0.0
    for (x0, y0), (x1, y1) in zip(zip(fprs, pros), zip(fprs[1:], pros[1:])):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def random_blobs(seed: int, n: int = 5, size: int = 16, decimals: int = 2):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(1, n):  # image 0 stays normal
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, size - 2, 2)
            h, w = rng.integers(1, 6, 2)
            masks[i, y : y + h, x : x + w] = True
    maps = rng.random((n, size, size)) * 0.7 + 0.5 * masks * rng.random((n, size, size))
    return masks, np.round(maps, decimals).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2, 3])
def test_aupro_exact_matches_naive(seed: int, decimals: int) -> None:
    masks, maps = random_blobs(seed, decimals=decimals)
    got = pixel_metrics(masks, maps, "exact")["pixel_aupro"]
    assert got == pytest.approx(naive_aupro(masks, maps), abs=1e-4)


def test_aupro_regions_of_different_sizes_weigh_equally() -> None:
    """One big region fully found and one small region missed: PRO is 0.5, not the pixel recall."""
    masks = np.zeros((1, 20, 20), bool)
    masks[0, :10, :10] = True  # 100 px, scored high
    masks[0, 15, 15] = True  # 1 px, scored like the background
    maps = np.zeros((1, 20, 20), np.float32)
    maps[0, :10, :10] = 1.0
    got = pixel_metrics(masks, maps, "exact")["pixel_aupro"]
    # Points (0, 0.5) and (1, 1): the trapezoid to FPR 0.3 is 0.3 * (0.5 + 0.65) / 2, normalized 0.575.
    assert got == pytest.approx(0.575)
    assert got == pytest.approx(naive_aupro(masks, maps), abs=1e-9)


def test_diagonally_touching_blobs_are_one_region() -> None:
    mask = np.zeros((8, 8), bool)
    mask[1:3, 1:3] = True
    mask[3:5, 3:5] = True  # touches the first square only at a corner
    mask[6, 7] = True  # separate
    ids, n = region_ids(mask)
    assert n == 2
    assert sorted(np.bincount(ids).tolist()) == [1, 8]


def test_diagonal_regions_change_aupro_as_one_region() -> None:
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 1:3, 1:3] = True
    masks[0, 3, 3] = True  # diagonal neighbour: one 5-px region, not a 4-px and a 1-px one
    maps = np.zeros((1, 8, 8), np.float32)
    maps[0, 1:3, 1:3] = 1.0  # the 1-px part is missed
    got = pixel_metrics(masks, maps, "exact")["pixel_aupro"]
    # PRO 4/5 at FPR 0, then linearly to (1, 1): normalized area 0.8 + 0.3 * 0.2 / 2 = 0.83.
    # As two 4-connected regions PRO would start at 0.5 (area 0.575).
    assert got == pytest.approx(0.83)
    assert got == pytest.approx(naive_aupro(masks, maps), abs=1e-9)


def test_empty_masks_and_no_anomalous_pixel() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8)).astype(np.float32)
    out = pixel_metrics(np.zeros((3, 8, 8), bool), maps, "exact")
    assert all(np.isnan(v) for v in out.values())
    out = pixel_metrics(np.ones((3, 8, 8), bool), maps, "ader")
    assert all(np.isnan(v) for v in out.values())
