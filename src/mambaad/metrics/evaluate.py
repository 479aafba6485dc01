"""Public entry points: validate inputs once, then compute metrics for one set or per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mambaad.errors import DataError
from mambaad.metrics import _validate as v
from mambaad.metrics.functional import IMAGE_KEYS, PIXEL_KEYS, all_metrics, mean_of_defined, with_mad


def evaluate(
    labels: v.ArrayInput,
    scores: v.ArrayInput,
    masks: v.ArrayInput | None = None,
    maps: v.ArrayInput | None = None,
    mode: str = "exact",
) -> dict[str, float]:
    """The seven MambaAD metrics and their mean, as fractions in [0, 1].

    Args:
        labels: (N,) image ground truth, 0 normal / 1 anomalous (bool accepted).
        scores: (N,) float image anomaly scores (ADer/MambaAD use the max of each map).
        masks: (N, H, W) bool or 0/1 ground-truth masks, or None for image-level-only data.
        maps: (N, H, W) float anomaly maps (float32 is kept, not widened), or None together with masks.
        mode: "exact" (default): every distinct value is a threshold, predictions are ``value >= t``;
            AUROC/AP equal sklearn's; AU-PRO integrates the exact PRO curve up to FPR 0.3 (interpolated
            there) and divides by 0.3. "ader": reproduces ADer's evaluator (pixel F1-max on a 21-step grid
            of class-normalized maps, AU-PRO with 100 thresholds and rescaled FPR); image metrics and pixel
            AUROC/AP are the same as in exact mode.

    Returns:
        ``image_auroc, image_ap, image_f1max`` and, when masks are given, ``pixel_auroc, pixel_ap,
        pixel_f1max, pixel_aupro``; then ``mad``, the mean of those that are defined. A metric that needs
        both classes is NaN (never 0) when one is missing: image metrics when all labels are equal, pixel
        metrics when no pixel (or every pixel) is anomalous.

    Raises:
        DataError: inconsistent shapes, labels not 0/1, NaN/inf scores or maps, non-binary masks.
        ConfigError: unknown mode.
    """
    v.check_mode(mode)
    lab = v.check_labels(labels)
    sc = v.check_scores(scores, lab.shape[0])
    mk, mp = v.check_pixel_pair(masks, maps, lab.shape[0])
    return all_metrics(lab, sc, mk, mp, mode)


def _class_index(idx: np.ndarray) -> slice | np.ndarray:
    """A slice (a view, no copy of the maps) when the class's samples are contiguous."""
    if idx[-1] - idx[0] + 1 == idx.size:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def mean_over_classes(per_class: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per key, the mean over the classes where it is present and not NaN; ``mad`` from those means.

    ``mad`` of the mean row is the mean of the averaged metrics (how the papers' "Avg" row is formed), not
    the mean of the per-class mads; the two differ only when some class lacks a metric.
    """
    keys = [k for k in (*IMAGE_KEYS, *PIXEL_KEYS) if any(k in m for m in per_class.values())]
    mean = {k: mean_of_defined([m[k] for m in per_class.values() if k in m]) for k in keys}
    return with_mad(mean)


def evaluate_per_class(
    classes: Sequence[str],
    labels: v.ArrayInput,
    scores: v.ArrayInput,
    masks: v.ArrayInput | None = None,
    maps: v.ArrayInput | None = None,
    mode: str = "exact",
) -> dict[str, dict[str, float]]:
    """:func:`evaluate` on each class separately (pixel normalization and thresholds are per class too).

    Args:
        classes: (N,) class name of each sample.
        labels, scores, masks, maps, mode: as in :func:`evaluate`, for all samples.

    Returns:
        One entry per class (in order of first appearance) plus ``"mean"``: for each key, the mean over the
        classes where that key is defined (a NaN metric, e.g. the image AUROC of a class with only normal
        samples, is left out of its key's mean), and ``mad`` = the mean of those means.
    """
    v.check_mode(mode)
    lab = v.check_labels(labels)
    n = lab.shape[0]
    sc = v.check_scores(scores, n)
    mk, mp = v.check_pixel_pair(masks, maps, n)
    names = np.asarray([str(c) for c in classes])
    if names.shape != (n,):
        raise DataError(f"classes: expected {n} class names to match labels, got {names.shape[0]}")
    if "mean" in names:
        raise DataError("classes: 'mean' is reserved for the average entry; rename that class")
    per_class: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(names.tolist()):
        idx = _class_index(np.flatnonzero(names == name))
        per_class[name] = all_metrics(
            lab[idx], sc[idx], None if mk is None else mk[idx], None if mp is None else mp[idx], mode
        )
    return {**per_class, "mean": mean_over_classes(per_class)}


__all__ = ["evaluate", "evaluate_per_class", "mean_over_classes"]
