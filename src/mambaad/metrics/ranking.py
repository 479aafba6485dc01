"""Exact binary ranking metrics (AUROC, AP, F1-max) from one sort of the negatives.

Why not sklearn on all pixels: a test set of 1,725 maps of 256x256 has 113M pixels, and sklearn sorts them
in float64 with several full-size temporaries. Here the negatives are sorted once, in place, in their own
dtype (numpy's SIMD sort), and the few positives (a few % of pixels) are sorted separately. Every metric is
then read off at the distinct positive values, which is exact, not an approximation:

* AUROC is the Mann-Whitney statistic: for each positive, the negatives below it plus half the tied ones.
  Equal to sklearn's trapezoidal ROC area, ties included.
* AP (sklearn's step-wise ``sum (R_k - R_{k-1}) P_k``) only gains at thresholds where recall changes, i.e.
  at positive values; precision there needs the negatives >= that value.
* F1 = 2 TP / (TP + FP + n_pos) at a threshold; between two positive values lowering the threshold only adds
  false positives, so the maximum over the exact PR curve sits at a positive value.

All thresholds are "predicted anomalous iff score >= threshold", as in sklearn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SplitScores:
    """Scores split by ground truth, each part sorted ascending.

    ``pos_weight`` (aligned with ``pos_sorted``) carries each positive pixel's share of the PRO curve,
    1 / (area of its region * number of regions); None for image-level data.
    """

    neg_sorted: np.ndarray  # (n_neg,)
    pos_sorted: np.ndarray  # (n_pos,)
    pos_weight: np.ndarray | None = None  # (n_pos,) float64

    @property
    def n_neg(self) -> int:
        return int(self.neg_sorted.size)

    @property
    def n_pos(self) -> int:
        return int(self.pos_sorted.size)

    @property
    def defined(self) -> bool:
        """Ranking metrics need both classes; with one they are undefined (reported as NaN)."""
        return self.n_pos > 0 and self.n_neg > 0


@dataclass(frozen=True)
class PositiveCurve:
    """Counts at every distinct positive value t, in descending t (the exact curve's informative points)."""

    thresholds: np.ndarray  # (K,) distinct positive values, descending
    n_pos_eq: np.ndarray  # (K,) positives == t
    tp: np.ndarray  # (K,) positives >= t
    fp_ge: np.ndarray  # (K,) negatives >= t
    fp_gt: np.ndarray  # (K,) negatives > t
    pro: np.ndarray | None  # (K,) PRO(t) = summed weights of positives >= t
    n_pos: int
    n_neg: int


def split_scores(scores: np.ndarray, is_pos: np.ndarray) -> SplitScores:
    """Split small (image-level) data; pixel data is split by :func:`mambaad.metrics.pixel.split_pixels`."""
    return SplitScores(neg_sorted=np.sort(scores[~is_pos]), pos_sorted=np.sort(scores[is_pos]))


def positive_curve(split: SplitScores) -> PositiveCurve:
    """Group tied positives; one binary search per group into the negatives (a second only on ties)."""
    pos = split.pos_sorted
    starts = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1])))  # (K,) first index of each value
    starts = starts[starts < pos.size]  # no positives: no groups
    uniq = pos[starts]
    n_pos, n_neg = split.n_pos, split.n_neg
    tp = n_pos - starts
    n_pos_eq = np.diff(np.append(starts, n_pos))
    left = np.searchsorted(split.neg_sorted, uniq, side="left")  # negatives < t
    right = left.copy()  # negatives <= t: differs only where a negative ties with t, usually rare
    tied = left < n_neg
    tied[tied] = split.neg_sorted[left[tied]] == uniq[tied]
    right[tied] = np.searchsorted(split.neg_sorted, uniq[tied], side="right")
    fp_ge, fp_gt = n_neg - left, n_neg - right
    pro = None
    if split.pos_weight is not None:
        suffix = np.cumsum(split.pos_weight[::-1], dtype=np.float64)[::-1]  # weight of positives >= pos[i]
        pro = suffix[starts]
    rev = slice(None, None, -1)
    return PositiveCurve(
        thresholds=uniq[rev],
        n_pos_eq=n_pos_eq[rev].astype(np.int64),
        tp=tp[rev].astype(np.int64),
        fp_ge=fp_ge[rev].astype(np.int64),
        fp_gt=fp_gt[rev].astype(np.int64),
        pro=None if pro is None else pro[rev],
        n_pos=n_pos,
        n_neg=n_neg,
    )


def auroc(curve: PositiveCurve) -> float:
    """Area under the ROC curve; NaN when one class is absent."""
    if curve.n_pos == 0 or curve.n_neg == 0:
        return float("nan")
    below = curve.n_neg - curve.fp_ge  # negatives strictly below each positive value
    tied = curve.fp_ge - curve.fp_gt
    twice_u = int(np.sum(curve.n_pos_eq * (2 * below + tied)))  # exact in int64 up to ~1e18
    return twice_u / (2.0 * curve.n_pos * curve.n_neg)


def average_precision(curve: PositiveCurve) -> float:
    """sklearn's average_precision_score (no interpolation); NaN when one class is absent."""
    if curve.n_pos == 0 or curve.n_neg == 0:
        return float("nan")
    precision = curve.tp / (curve.tp + curve.fp_ge)
    return float(np.sum(curve.n_pos_eq * precision) / curve.n_pos)


def f1_max(curve: PositiveCurve) -> float:
    """Max of 2PR/(P+R) over the exact PR curve; NaN when one class is absent."""
    if curve.n_pos == 0 or curve.n_neg == 0:
        return float("nan")
    return float(np.max(2.0 * curve.tp / (curve.tp + curve.fp_ge + curve.n_pos)))
