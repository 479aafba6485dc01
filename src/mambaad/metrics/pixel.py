"""Pixel-level pieces: splitting maps by ground truth, PRO region weights, AU-PRO and ADer's pixel F1-max.

PRO (per-region overlap) at a threshold is the mean over all ground-truth regions of all images of the
fraction of the region above the threshold. Giving every anomalous pixel the weight
1 / (area of its region * number of regions) turns PRO into a plain weighted count of positives above the
threshold, so the same sorted arrays that serve AUROC/AP also give the whole PRO curve.

Regions are 8-connected components of each image's mask (a diagonal touch joins two blobs), which is
skimage's default for 2-D masks and what ADer uses.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mambaad.metrics._validate import check_finite_sorted
from mambaad.metrics.ranking import PositiveCurve, SplitScores

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
MAX_FPR = 0.3
ADER_PRO_STEPS = 100
ADER_EPS = 1e-8


def region_ids(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Region index (0-based) of each True pixel of one (H, W) mask, in C order, and the region count."""
    labeled, n = ndimage.label(mask, structure=EIGHT_CONNECTED)  # (H, W) int32, 0 = background
    return labeled[mask] - 1, int(n)


def split_pixels(masks: np.ndarray, maps: np.ndarray) -> SplitScores:
    """Sort normal pixels in place (one copy, maps' dtype) and anomalous pixels with their PRO weights.

    Args:
        masks: (N, H, W) bool ground truth.
        maps: (N, H, W) float32/float64 anomaly maps.
    """
    neg = maps[~masks]  # (n_neg,) a fresh copy, sorted in place to keep one full-size buffer
    neg.sort()
    check_finite_sorted(neg, "maps")
    vals, ids, n_regions = [], [], 0
    for i in np.flatnonzero(masks.reshape(masks.shape[0], -1).any(axis=1)):
        rid, n = region_ids(masks[i])
        ids.append(rid + n_regions)
        vals.append(maps[i][masks[i]])
        n_regions += n
    if not vals:
        return SplitScores(neg, np.empty(0, maps.dtype), np.empty(0, np.float64))
    pos = np.concatenate(vals)  # (n_pos,)
    rid = np.concatenate(ids)  # (n_pos,)
    weight = 1.0 / (np.bincount(rid)[rid].astype(np.float64) * n_regions)
    order = np.argsort(pos)  # tie order is irrelevant: ties are grouped
    pos_sorted = pos[order]
    check_finite_sorted(pos_sorted, "maps")
    return SplitScores(neg, pos_sorted, weight[order])


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under (x, y) for x in [x[0], limit], x non-decreasing, interpolating y at limit."""
    k = int(np.searchsorted(x, limit, side="right"))  # points with x <= limit
    area = float(np.sum(np.diff(x[:k]) * (y[1:k] + y[: k - 1]) / 2.0))
    if k < x.size:
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + y_lim) / 2.0
    return area


def aupro_exact(curve: PositiveCurve, max_fpr: float = MAX_FPR) -> float:
    """Normalized area under PRO(FPR) for FPR in [0, max_fpr], every distinct map value a threshold.

    Thresholding is "anomalous iff map >= t". Between two consecutive positive values only FPR moves, so the
    curve is exactly the polyline through, for each positive value t (descending): the point just above t,
    (FPR(> t), previous PRO), and the point at t, (FPR(>= t), PRO(t)); it starts at (0, 0) and ends at
    (1, 1). The area up to ``max_fpr`` (linear interpolation there) is divided by ``max_fpr``.
    NaN when there is no anomalous or no normal pixel.
    """
    if curve.n_pos == 0 or curve.n_neg == 0 or curve.pro is None:
        return float("nan")
    k = curve.thresholds.size
    x = np.empty(2 * k + 2)
    y = np.empty(2 * k + 2)
    x[0], y[0] = 0.0, 0.0
    x[1:-1:2] = curve.fp_gt / curve.n_neg
    x[2:-1:2] = curve.fp_ge / curve.n_neg
    y[1:-1:2] = np.concatenate(([0.0], curve.pro[:-1]))
    y[2:-1:2] = curve.pro
    x[-1], y[-1] = 1.0, curve.pro[-1]
    return float(_area_up_to(x, y, max_fpr) / max_fpr)


def _value_range(split: SplitScores) -> tuple[np.generic, np.generic]:
    """Global min and max of all pixels, as scalars of the maps' dtype (ADer's arithmetic depends on it)."""
    parts = [a for a in (split.neg_sorted, split.pos_sorted) if a.size]
    return min(a[0] for a in parts), max(a[-1] for a in parts)


def count_le(sorted_vals: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of values <= each float64 threshold, compared exactly, without widening the big array.

    np.searchsorted would cast a float32 array to float64 (a full copy); instead each threshold is rounded
    down to the array's dtype, which keeps ``v <= th`` unchanged for every representable v.
    """
    th = np.asarray(thresholds, dtype=np.float64)
    if sorted_vals.dtype != np.float64:
        low = th.astype(sorted_vals.dtype)  # round to nearest...
        up = low.astype(np.float64) > th
        low[up] = np.nextafter(low[up], sorted_vals.dtype.type(-np.inf))  # ...then down where it rounded up
        th = low
    return np.searchsorted(sorted_vals, th, side="right")


def aupro_ader(split: SplitScores, steps: int = ADER_PRO_STEPS, max_fpr: float = MAX_FPR) -> float:
    """ADer's AU-PRO: ``steps`` evenly spaced thresholds, FPR < max_fpr kept, FPR min-max rescaled.

    Thresholds are ``np.arange(min, max, (max - min) / steps)`` in the maps' dtype (th_i = min + i * delta,
    i = 0..steps-1; float rounding can add one more just below max, exactly as in ADer), binarized with
    ``map > th``. The kept FPRs are rescaled to [0, 1] by their own min and max (not by ``max_fpr``) and the
    trapezoid area is taken, as sklearn's ``auc`` does. NaN when undefined (no anomalous or normal pixel,
    constant maps, or fewer than two distinct kept FPR values, where ADer itself fails).
    """
    if split.pos_weight is None or not split.defined:
        return float("nan")
    lo, hi = _value_range(split)
    delta = (hi - lo) / steps
    if not delta > 0:
        return float("nan")
    ths = np.arange(lo, hi, delta)  # (steps,) float64 even for float32 maps, as in ADer
    fp = split.n_neg - count_le(split.neg_sorted, ths)
    suffix = np.append(np.cumsum(split.pos_weight[::-1], dtype=np.float64)[::-1], 0.0)
    pro = suffix[count_le(split.pos_sorted, ths)]
    fpr = fp / split.n_neg
    keep = fpr < max_fpr
    fpr, pro = fpr[keep], pro[keep]
    if fpr.size < 2 or fpr.max() == fpr.min():
        return float("nan")
    fpr = (fpr - fpr.min()) / (fpr.max() - fpr.min())
    return float(-np.sum(np.diff(fpr) * (pro[1:] + pro[:-1]) / 2.0))  # FPR falls as th rises


def _count_above(sorted_vals: np.ndarray, normalize, threshold: float) -> int:
    """How many values have normalize(value) > threshold; normalize is monotone, so bisect the sorted array.

    normalize is applied to 1-element slices so the comparison runs with the same dtypes and rounding as
    normalizing the whole array would.
    """
    lo, hi = 0, sorted_vals.size
    while lo < hi:
        mid = (lo + hi) // 2
        if (normalize(sorted_vals[mid : mid + 1]) > threshold)[0]:
            hi = mid
        else:
            lo = mid + 1
    return sorted_vals.size - lo


def f1max_ader(split: SplitScores, eps: float = ADER_EPS) -> float:
    """ADer's pixel F1-max: maps min-max normalized over the class, 21 thresholds 0, 0.05, ..., 1.

    At each threshold pixels with normalized value > threshold are predicted anomalous; TP/FP/FN are pooled
    over all pixels and F1 = 2PR / (P + R + eps) with P = TP / (pred + eps), R = TP / (gt + eps). A coarse
    grid, so it is at most the exact F1-max. NaN when there is no anomalous or no normal pixel.
    """
    if not split.defined:
        return float("nan")
    lo, hi = _value_range(split)
    scale = hi - lo
    if not scale > 0:
        return 0.0  # ADer's normalization gives NaN everywhere: nothing is predicted anomalous

    def normalize(a: np.ndarray) -> np.ndarray:
        return (a - lo) / scale

    best = 0.0
    for th in np.arange(0.0, 1.0 + 1e-3, 0.05):  # (21,) float64, as ADer builds them
        tp = _count_above(split.pos_sorted, normalize, th)
        pred = tp + _count_above(split.neg_sorted, normalize, th)
        precision = tp / (pred + eps)
        recall = tp / (split.n_pos + eps)
        best = max(best, 2 * precision * recall / (precision + recall + eps))
    return float(best)
