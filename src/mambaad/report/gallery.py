"""Which test images a report shows.

Selection works on scores and labels only and returns indices, so the caller loads images and anomaly
maps for the chosen few instead of keeping every test image in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["select_gallery"]


def select_gallery(
    classes: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    per_class: int = 3,
    normals_per_class: int = 1,
    max_items: int = 48,
) -> list[int]:
    """Indices of the images to show, grouped by class.

    Per class: the ``per_class`` highest-scoring anomalous images (the clearest detections) and the
    ``normals_per_class`` highest-scoring normal images (the likeliest false alarms). When more than
    ``max_items`` qualify, classes take turns by rank so every class keeps its best examples.

    Args:
        classes: (N,) class name of each test image.
        scores: (N,) image anomaly scores; NaN ranks last.
        labels: (N,) 0 = normal, 1 = anomalous.

    Returns:
        Indices into the inputs, classes in order of first appearance, each class's picks by rank.

    >>> select_gallery(["a", "a", "a", "b"], [0.9, 0.1, 0.5, 0.7], [1, 0, 0, 1])
    [0, 2, 3]
    """
    n = len(classes)
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(int).ravel()
    if s.size != n or y.size != n:
        raise ValueError(f"classes ({n}), scores ({s.size}) and labels ({y.size}) differ in length")
    order = list(dict.fromkeys(classes))  # first-appearance order
    key = np.where(np.isnan(s), -math.inf, s)
    picks: dict[str, list[int]] = {}
    for cls in order:
        idx = np.array([i for i in range(n) if classes[i] == cls], dtype=int)
        ranked = idx[np.argsort(-key[idx], kind="stable")]  # highest score first, ties by input order
        anomalous = [int(i) for i in ranked if y[i] == 1][:per_class]
        normal = [int(i) for i in ranked if y[i] == 0][:normals_per_class]
        picks[cls] = anomalous + normal
    # Round-robin by rank across classes up to the cap, then regroup by class.
    chosen: set[int] = set()
    depth = max((len(p) for p in picks.values()), default=0)
    for rank in range(depth):
        for cls in order:
            if rank < len(picks[cls]) and len(chosen) < max_items:
                chosen.add(picks[cls][rank])
    return [i for cls in order for i in picks[cls] if i in chosen]
