"""Pure metric functions on validated numpy arrays: image metrics, pixel metrics, and their mean (mAD).

Values are fractions in [0, 1]. A metric that is undefined for the data (one class only) is NaN, never 0,
so that it cannot silently pull an average down; ``mad`` is the mean of the metrics that are defined.
"""

from __future__ import annotations

import math

import numpy as np

from mambaad.metrics import pixel, ranking

IMAGE_KEYS = ("image_auroc", "image_ap", "image_f1max")
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro")
METRIC_KEYS = (*IMAGE_KEYS, *PIXEL_KEYS, "mad")


def image_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Image AUROC, AP and F1-max (exact; identical in both modes, as ADer uses sklearn for them).

    Args:
        labels: (N,) 0/1 ground truth.
        scores: (N,) float anomaly scores (ADer uses the max of each map).
    """
    curve = ranking.positive_curve(ranking.split_scores(scores, labels.astype(bool)))
    return {
        "image_auroc": ranking.auroc(curve),
        "image_ap": ranking.average_precision(curve),
        "image_f1max": ranking.f1_max(curve),
    }


def pixel_metrics(masks: np.ndarray, maps: np.ndarray, mode: str = "exact") -> dict[str, float]:
    """Pixel AUROC, AP, F1-max and AU-PRO over all pixels of all maps, pooled.

    Args:
        masks: (N, H, W) bool ground truth.
        maps: (N, H, W) float32/float64 anomaly maps.
        mode: "exact" (every distinct value a threshold) or "ader" (ADer's F1 grid and 100-step AU-PRO;
            AUROC/AP are exact in both, since ADer computes them with sklearn).
    """
    split = pixel.split_pixels(masks, maps)
    curve = ranking.positive_curve(split)
    out = {"pixel_auroc": ranking.auroc(curve), "pixel_ap": ranking.average_precision(curve)}
    if mode == "exact":
        out["pixel_f1max"] = ranking.f1_max(curve)
        out["pixel_aupro"] = pixel.aupro_exact(curve)
    else:
        out["pixel_f1max"] = pixel.f1max_ader(split)
        out["pixel_aupro"] = pixel.aupro_ader(split)
    return out


def mean_of_defined(values: list[float]) -> float:
    """Mean of the non-NaN values; NaN if none is defined."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def with_mad(metrics: dict[str, float]) -> dict[str, float]:
    """Append ``mad``: the mean over the defined metrics present (7 with pixel data, 3 without)."""
    keys = [k for k in (*IMAGE_KEYS, *PIXEL_KEYS) if k in metrics]
    return {**{k: metrics[k] for k in keys}, "mad": mean_of_defined([metrics[k] for k in keys])}


def all_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray | None,
    maps: np.ndarray | None,
    mode: str = "exact",
) -> dict[str, float]:
    """Image metrics, pixel metrics when masks/maps are given, and mad."""
    out = image_metrics(labels, scores)
    if masks is not None and maps is not None:
        out.update(pixel_metrics(masks, maps, mode))
    return with_mad(out)
