"""Image and pixel AUROC / AP / F1-max against scikit-learn, ties included."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from mambaad.metrics import evaluate
from mambaad.metrics.functional import image_metrics, pixel_metrics


def sklearn_f1max(y: np.ndarray, s: np.ndarray) -> float:
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * p * r / (p + r)
    return float(np.max(f1[np.isfinite(f1)]))


def random_pixels(seed: int, n: int = 6, size: int = 20, decimals: int = 2):
    """Masks of random rectangles (some images empty), maps that lean higher inside them, rounded for ties."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        for _ in range(rng.integers(0, 4)):
            y, x = rng.integers(0, size - 3, 2)
            h, w = rng.integers(1, 7, 2)
            masks[i, y : y + h, x : x + w] = True
    maps = rng.random((n, size, size)) + 0.6 * masks * rng.random((n, size, size))
    return masks, np.round(maps, decimals).astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_image_metrics_match_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = np.round(rng.random(n) + 0.3 * labels, int(rng.integers(1, 3)))  # many ties
    got = image_metrics(labels, scores)
    assert got["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert got["image_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-6)
    assert got["image_f1max"] == pytest.approx(sklearn_f1max(labels, scores), abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_pixel_ranking_metrics_match_sklearn(seed: int, decimals: int) -> None:
    masks, maps = random_pixels(seed, decimals=decimals)
    if not masks.any():
        masks[0, 0, 0] = True
    got = pixel_metrics(masks, maps, "exact")
    y, s = masks.ravel(), maps.ravel()
    assert got["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert got["pixel_ap"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert got["pixel_f1max"] == pytest.approx(sklearn_f1max(y, s), abs=1e-6)


def test_pixel_auroc_ap_identical_in_both_modes() -> None:
    masks, maps = random_pixels(3)
    exact, ader = pixel_metrics(masks, maps, "exact"), pixel_metrics(masks, maps, "ader")
    assert exact["pixel_auroc"] == ader["pixel_auroc"]
    assert exact["pixel_ap"] == ader["pixel_ap"]
    assert ader["pixel_f1max"] <= exact["pixel_f1max"] + 1e-9  # the grid can only miss the best threshold


def test_perfect_and_inverted_rankings() -> None:
    labels = np.array([0, 0, 1, 1])
    assert image_metrics(labels, np.array([0.1, 0.2, 0.8, 0.9])) == {
        "image_auroc": 1.0,
        "image_ap": 1.0,
        "image_f1max": 1.0,
    }
    inv = image_metrics(labels, np.array([0.9, 0.8, 0.2, 0.1]))
    assert inv["image_auroc"] == 0.0
    assert inv["image_ap"] == pytest.approx(average_precision_score(labels, [0.9, 0.8, 0.2, 0.1]))
    all_tied = image_metrics(labels, np.full(4, 0.5))
    assert all_tied["image_auroc"] == 0.5
    assert all_tied["image_ap"] == 0.5


@pytest.mark.parametrize("value", [0, 1])
def test_single_class_labels_give_nan_not_zero(value: int) -> None:
    out = evaluate(np.full(5, value), np.linspace(0, 1, 5))
    assert set(out) == {"image_auroc", "image_ap", "image_f1max", "mad"}
    assert all(np.isnan(out[k]) for k in out)


def test_float32_maps_are_not_widened_and_stay_exact() -> None:
    """Values that differ only in float32 must still be distinct thresholds."""
    base = np.float32(0.5)
    maps = np.full((1, 4, 4), base, dtype=np.float32)
    maps[0, 0, :2] = np.nextafter(base, np.float32(1))  # one ulp above
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, :2] = True
    got = pixel_metrics(masks, maps, "exact")
    assert got["pixel_auroc"] == 1.0
    assert got["pixel_f1max"] == 1.0
