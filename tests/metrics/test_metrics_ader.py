"""mode="ader" against a literal re-implementation of the ADer evaluator procedure (MAMBAAD_SPEC.md §8)."""

import numpy as np
import pytest
from skimage import measure
from sklearn.metrics import auc

from mambaad.metrics import evaluate
from mambaad.metrics.functional import pixel_metrics
from mambaad.metrics.pixel import count_le


def naive_ader_f1max(masks: np.ndarray, maps: np.ndarray) -> float:
    """Class-normalized maps, 21 thresholds, map > th, pooled counts, eps 1e-8."""
    norm = (maps - maps.min()) / (maps.max() - maps.min())
    scores = []
    for th in np.arange(0.0, 1.0 + 1e-3, 0.05):
        pred = norm > th
        inter = np.logical_and(masks, pred).sum()
        precision = inter / (pred.sum() + 1e-8)
        recall = inter / (masks.sum() + 1e-8)
        scores.append(2 * precision * recall / (precision + recall + 1e-8))
    return float(np.max(scores))


def naive_ader_aupro(masks: np.ndarray, maps: np.ndarray, steps: int = 100) -> float:
    """Thresholds min + i * (max - min) / steps on raw maps, map > th, regions by skimage's default label."""
    lo, hi = maps.min(), maps.max()
    pros, fprs = [], []
    for th in np.arange(lo, hi, (hi - lo) / steps):
        pred = maps > th
        pro = []
        for p, m in zip(pred, masks):
            for region in measure.regionprops(measure.label(m)):
                rows, cols = region.coords[:, 0], region.coords[:, 1]
                pro.append(p[rows, cols].sum() / region.area)
        pros.append(np.mean(pro))
        fprs.append(np.logical_and(~masks, pred).sum() / (~masks).sum())
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < 0.3
    fprs = fprs[keep]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return float(auc(fprs, pros[keep]))


def random_case(seed: int, decimals: int | None):
    rng = np.random.default_rng(seed)
    n, size = 5, 16
    masks = np.zeros((n, size, size), bool)
    for i in range(1, n):
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, size - 2, 2)
            h, w = rng.integers(1, 6, 2)
            masks[i, y : y + h, x : x + w] = True
    maps = rng.random((n, size, size)) * 0.8 + 0.6 * masks * rng.random((n, size, size))
    if decimals is not None:
        maps = np.round(maps, decimals)  # many values sit exactly on grid thresholds
    return masks, maps.astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_ader_pixel_metrics_match_naive_procedure(seed: int, decimals: int | None) -> None:
    masks, maps = random_case(seed, decimals)
    got = pixel_metrics(masks, maps, "ader")
    assert got["pixel_f1max"] == pytest.approx(naive_ader_f1max(masks, maps), abs=1e-9)
    assert got["pixel_aupro"] == pytest.approx(naive_ader_aupro(masks, maps), abs=1e-9)


def test_ader_float64_maps_match_naive() -> None:
    masks, maps = random_case(7, None)
    maps = maps.astype(np.float64) * 3.0 - 1.0
    got = pixel_metrics(masks, maps, "ader")
    assert got["pixel_f1max"] == pytest.approx(naive_ader_f1max(masks, maps), abs=1e-9)
    assert got["pixel_aupro"] == pytest.approx(naive_ader_aupro(masks, maps), abs=1e-9)


def test_ader_image_metrics_equal_exact() -> None:
    masks, maps = random_case(1, 2)
    labels = masks.reshape(len(masks), -1).any(1).astype(int)
    scores = maps.reshape(len(maps), -1).max(1)
    exact = evaluate(labels, scores, masks, maps, mode="exact")
    ader = evaluate(labels, scores, masks, maps, mode="ader")
    for key in ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap"):
        assert exact[key] == ader[key]
    assert ader["mad"] == pytest.approx(np.mean([ader[k] for k in ader if k != "mad"]))


def test_ader_constant_maps() -> None:
    masks = np.zeros((2, 4, 4), bool)
    masks[1, :2, :2] = True
    out = pixel_metrics(masks, np.full((2, 4, 4), 0.3, np.float32), "ader")
    assert out["pixel_auroc"] == 0.5
    assert out["pixel_f1max"] == 0.0  # ADer's normalization is NaN: nothing predicted anomalous
    assert np.isnan(out["pixel_aupro"])


def test_count_le_float64_thresholds_on_float32_values() -> None:
    rng = np.random.default_rng(0)
    vals = np.sort(np.round(rng.random(500), 2).astype(np.float32))
    exact32 = vals[::37].astype(np.float64)  # thresholds equal to stored values
    between = exact32 + 1e-9  # just above a float32 value, below the next one
    below = exact32 - 1e-9
    ths = np.concatenate([exact32, between, below, [-np.inf, np.inf, 0.1, 0.3]])
    want = [(vals.astype(np.float64) <= t).sum() for t in ths]
    assert count_le(vals, ths).tolist() == want
