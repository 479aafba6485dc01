"""Image-level ROC and PR curves: the arrays (sklearn) and a small inline-SVG plot of them.

The plot is hand-written SVG so the report needs no plotting library and no external resources.
"""

from __future__ import annotations

from html import escape

import numpy as np
from sklearn.metrics import auc, precision_recall_curve, roc_curve

__all__ = ["image_curves", "svg_curve"]


def image_curves(labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """ROC and precision-recall curves of image scores.

    Args:
        labels: (N,) 0 = normal, 1 = anomalous.
        scores: (N,) image anomaly scores, higher = more anomalous.

    Returns:
        dict with ``fpr``, ``tpr``, ``precision``, ``recall`` arrays (empty when the labels hold only one
        class, where the curves are undefined) and the areas ``auroc`` and ``ap`` (NaN then).
    """
    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
    empty = np.zeros(0)
    if y.size == 0 or np.unique(y).size < 2:
        return {
            "fpr": empty,
            "tpr": empty,
            "precision": empty,
            "recall": empty,
            "auroc": np.nan,
            "ap": np.nan,
        }
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    # AP as sklearn's average_precision_score: step-wise sum over recall increments.
    ap = float(-np.sum(np.diff(recall) * precision[:-1]))
    return {
        "fpr": fpr,
        "tpr": tpr,
        "precision": precision,
        "recall": recall,
        "auroc": float(auc(fpr, tpr)),
        "ap": ap,
    }


def _decimate(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points, evenly spaced along the curve, ends kept."""
    if x.size <= max_points:
        return x, y
    idx = np.unique(np.round(np.linspace(0, x.size - 1, max_points)).astype(int))
    return x[idx], y[idx]


def svg_curve(
    x: np.ndarray,
    y: np.ndarray,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
    size: int = 220,
    color: str = "#c0392b",
    max_points: int = 1000,
) -> str:
    """A square inline ``<svg>`` plotting ``y`` against ``x`` on [0, 1] x [0, 1].

    Args:
        x, y: (P,) curve coordinates in [0, 1]; an empty curve draws the axes and "n/a".
        diagonal: draw the chance line y = x (for ROC).
    """
    pad_l, pad_b, pad_t, pad_r = 34, 30, 20, 8
    w = h = size
    pw, ph = w - pad_l - pad_r, h - pad_t - pad_b

    def px(v: float) -> float:
        return pad_l + v * pw

    def py(v: float) -> float:
        return pad_t + (1.0 - v) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="#fff" stroke="#444"/>',
    ]
    for v in (0.0, 0.5, 1.0):
        parts.append(
            f'<line x1="{px(v):.1f}" y1="{pad_t}" x2="{px(v):.1f}" y2="{pad_t + ph}" stroke="#ddd"/>'
        )
        parts.append(
            f'<line x1="{pad_l}" y1="{py(v):.1f}" x2="{pad_l + pw}" y2="{py(v):.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{px(v):.1f}" y="{pad_t + ph + 12}" font-size="9" text-anchor="middle">{v:g}</text>'
        )
        parts.append(
            f'<text x="{pad_l - 4}" y="{py(v) + 3:.1f}" font-size="9" text-anchor="end">{v:g}</text>'
        )
    if diagonal:
        parts.append(
            f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" '
            'stroke="#999" stroke-dasharray="4 3"/>'
        )
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size:
        xs, ys = _decimate(np.clip(xs, 0, 1), np.clip(ys, 0, 1), max_points)
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs, ys))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    else:
        parts.append(
            f'<text x="{px(0.5):.1f}" y="{py(0.5):.1f}" font-size="12" text-anchor="middle" fill="#888">'
            "n/a (one label only)</text>"
        )
    parts.append(
        f'<text x="{w / 2:.1f}" y="13" font-size="11" text-anchor="middle" font-weight="bold">{escape(title)}</text>'
    )
    parts.append(
        f'<text x="{px(0.5):.1f}" y="{h - 4}" font-size="10" text-anchor="middle">{escape(xlabel)}</text>'
    )
    parts.append(
        f'<text x="10" y="{py(0.5):.1f}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 10 {py(0.5):.1f})">{escape(ylabel)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
