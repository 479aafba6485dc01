"""Anomaly-detection metrics: image AUROC/AP/F1-max, pixel AUROC/AP/F1-max/AU-PRO, and their mean (mAD).

``evaluate`` computes them for one set of samples, ``evaluate_per_class`` per class plus the class mean
(how MambaAD and ADer report results). ``mode="exact"`` uses every distinct value as a threshold;
``mode="ader"`` reproduces ADer's evaluator (coarse pixel F1 grid, 100-step AU-PRO).
"""

from mambaad.metrics.evaluate import evaluate, evaluate_per_class
from mambaad.metrics.functional import METRIC_KEYS

__all__ = ["METRIC_KEYS", "evaluate", "evaluate_per_class"]
