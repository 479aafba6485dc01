"""Threshold calibration: a yes/no per image from scores of normal images the model never trained on.

Anomaly detection trains on normal images only, so the one rate we can control without defect samples
is the false-positive rate: the threshold is the score that at most ``target_fpr`` of held-out normals
exceed. When a labelled validation set exists, the F1-optimal threshold is stored as well. Statistics
of the normals' image scores and map pixels are stored too, so maps and scores can be put on one fixed
scale (0 = a typical normal, 1 = the threshold) and a heat map means the same across images.

The result is the ``threshold`` dict of a checkpoint's metadata::

    {"image": float, "pixel": float, "target_fpr": float, "source": "holdout" | "train", "n_normals": int,
     "score": "max" | "mean" | "topk", "normal_score_stats": {...}, "normal_pixel_stats": {...},
     "f1_threshold": float, "n_labelled": int (both only with a labelled validation set, data.val_root)}

``image`` is the threshold in use; :func:`select_threshold` makes the F1 one the threshold in use.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mambaad.config import DataConfig, EvalConfig
from mambaad.data.sample import Sample
from mambaad.errors import ConfigError

PIXEL_STRIDE = 7  # every 7th pixel of each map feeds the pixel statistics (bounded memory, no aliasing)


def split_holdout(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(training, held-out) normals: ``fraction`` of each class, chosen by ``seed`` only.

    The choice per class depends on the seed, the class name and the sorted paths, never on the reading
    order, so a resumed run and a rerun hold out the same images. Each class keeps >= 1 training image.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.holdout_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return list(samples), []
    by_cls: dict[str, list[Sample]] = {}
    for s in samples:
        by_cls.setdefault(s.cls, []).append(s)
    held: set[Path] = set()
    for cls, group in sorted(by_cls.items()):
        group = sorted(group, key=lambda s: str(s.image_path))
        n_hold = min(max(1, round(len(group) * fraction)), len(group) - 1)
        rng = np.random.default_rng([seed, zlib.crc32(cls.encode())])
        held.update(group[i].image_path for i in rng.permutation(len(group))[:n_hold])
    train = [s for s in samples if s.image_path not in held]
    return train, [s for s in samples if s.image_path in held]


def calibrate_threshold(normal_scores: Sequence[float] | np.ndarray, target_fpr: float = 0.01) -> float:
    """The smallest observed normal score that at most ``target_fpr`` of the normals exceed.

    With the decision ``score > threshold`` this is the empirical (1 - fpr) quantile ("higher"
    interpolation): floor(fpr * n) normals may lie above it, never more.
    """
    s = np.sort(np.asarray(normal_scores, dtype=np.float64).ravel())
    if s.size == 0:
        raise ConfigError("threshold calibration needs at least one normal image score")
    if not 0.0 < target_fpr < 1.0:
        raise ConfigError(f"eval.target_fpr must be in (0, 1), got {target_fpr}")
    allowed = math.floor(target_fpr * s.size)
    return float(s[s.size - 1 - allowed])


def f1_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The threshold (``score > t`` is anomalous) with the best F1 on a labelled set.

    Candidates lie midway between consecutive distinct scores (and below the lowest), so the decision
    does not hinge on ties with the calibration images themselves.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.size != y.size or s.size == 0:
        raise ConfigError(f"f1_threshold: {s.size} scores and {y.size} labels")
    if not y.any():
        raise ConfigError("f1_threshold: the labelled set has no anomalous image")
    values = np.unique(s)  # ascending
    cuts = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2.0])
    pred = s[None, :] > cuts[:, None]  # (T, N)
    tp = (pred & y).sum(1)
    fp = (pred & ~y).sum(1)
    fn = y.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return float(cuts[int(np.argmax(f1))])


def value_stats(values: np.ndarray) -> dict[str, float]:
    """min / median / p99 / max / mean / std of a set of values (for the stored normalisation)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    p50, p99 = np.percentile(v, [50, 99])
    return {
        "min": float(v.min()),
        "p50": float(p50),
        "p99": float(p99),
        "max": float(v.max()),
        "mean": float(v.mean()),
        "std": float(v.std()),
    }


@torch.no_grad()
def collect_scores(
    model: nn.Module,
    samples: Sequence[Sample],
    data_cfg: DataConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image scores (N,), map maxima (N,), a strided sample of map pixels) of ``samples``."""
    from torch.utils.data import DataLoader

    from mambaad.data.dataset import AnomalyDataset
    from mambaad.engine.evaluator import image_scores_from_maps

    model.eval()
    ds = AnomalyDataset(list(samples), data_cfg.image_size, data_cfg.crop_size)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=data_cfg.num_workers)
    scores, maxima, pixels = [], [], []
    for batch in loader:
        maps, _ = model.predict(batch["image"].to(device))  # (B, S, S)
        maps = maps.float()
        scores.append(image_scores_from_maps(maps, eval_cfg).cpu().numpy())
        maxima.append(maps.flatten(1).amax(1).cpu().numpy())
        pixels.append(maps.flatten(1)[:, ::PIXEL_STRIDE].cpu().numpy().ravel())
    return np.concatenate(scores), np.concatenate(maxima), np.concatenate(pixels)


def calibrate_model(
    model: nn.Module,
    normals: Sequence[Sample],
    data_cfg: DataConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    batch_size: int = 16,
    source: str = "holdout",
    labelled: Sequence[Sample] | None = None,
) -> dict[str, Any]:
    """The ``threshold`` metadata dict (module docstring) of ``model`` from normal images.

    The pixel threshold (for masks) is the same quantile of the normals' map maxima, so at most
    ``target_fpr`` of normal images show any masked pixel. ``labelled`` (normal and anomalous images)
    adds the F1-optimal image threshold.
    """
    scores, maxima, pixels = collect_scores(model, normals, data_cfg, eval_cfg, device, batch_size)
    fpr = eval_cfg.target_fpr
    out: dict[str, Any] = {
        "image": calibrate_threshold(scores, fpr),
        "pixel": calibrate_threshold(maxima, fpr),
        "target_fpr": fpr,
        "source": source,
        "n_normals": int(scores.size),
        "score": eval_cfg.score,
        "normal_score_stats": value_stats(scores),
        "normal_pixel_stats": value_stats(pixels),
    }
    if labelled:
        lab_scores, _, _ = collect_scores(model, labelled, data_cfg, eval_cfg, device, batch_size)
        out["f1_threshold"] = f1_threshold(lab_scores, [s.label for s in labelled])
        out["n_labelled"] = len(labelled)
    return out


THRESHOLD_KINDS = ("fpr", "f1")


def select_threshold(threshold: dict[str, Any] | None, kind: str, where: str = "") -> dict[str, Any] | None:
    """The calibration with the ``kind`` image threshold in use (``fpr``: as stored; ``f1``: the F1 one).

    The pixel (mask) threshold and the statistics stay; ``source`` records the choice. Raises a
    ConfigError (naming ``where``, e.g. the checkpoint) when the F1 threshold was never calibrated.
    """
    if kind not in THRESHOLD_KINDS:
        raise ConfigError(f"--threshold-kind must be one of {', '.join(THRESHOLD_KINDS)}, got {kind!r}")
    if kind == "fpr":
        return threshold
    if not threshold or "f1_threshold" not in threshold:
        raise ConfigError(
            f"--threshold-kind f1: {where or 'the model'} has no F1 threshold (train with data.val_root)"
        )
    return {**threshold, "image": float(threshold["f1_threshold"]), "source": "f1 (data.val_root)"}


def normalize_scores(scores: np.ndarray, threshold: dict[str, Any]) -> np.ndarray:
    """Image scores on the calibrated scale: 0 = the median normal, 1 = the threshold."""
    lo = threshold["normal_score_stats"]["p50"]
    return (np.asarray(scores, dtype=np.float64) - lo) / max(threshold["image"] - lo, 1e-12)


def normalize_maps(maps: np.ndarray, threshold: dict[str, Any]) -> np.ndarray:
    """Maps on the calibrated scale: 0 = the median normal pixel, 1 = the pixel (mask) threshold."""
    lo = threshold["normal_pixel_stats"]["p50"]
    return (np.asarray(maps, dtype=np.float32) - lo) / max(threshold["pixel"] - lo, 1e-12)


def calibrate_run(
    ckpt_dir: Path,
    holdout: Sequence[Sample],
    train_samples: Sequence[Sample],
    data_cfg: DataConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    batch_size: int,
    log: Callable[[str], None],
    labelled: Sequence[Sample] = (),
) -> dict[str, Any] | None:
    """Calibrate ``best`` and ``last`` of a finished run and store the thresholds in their metadata.

    ``labelled`` (the images of ``data.val_root``) adds the F1-optimal threshold.

    Without held-out normals (``data.holdout_fraction`` 0) the training normals are used: their scores
    are optimistic (the model fitted them), so the threshold is too low and the false-positive rate in
    use higher than ``target_fpr``; a warning says so. Returns the ``last`` calibration.
    """
    from mambaad.engine.checkpoint import load_checkpoint, load_model, save_checkpoint

    normals, source = (holdout, "holdout") if holdout else (train_samples, "train")
    if source == "train":
        log(
            "warning: data.holdout_fraction is 0, calibrating the threshold on the training normals "
            "(optimistic: expect more false positives than eval.target_fpr; set data.holdout_fraction)"
        )
    done: dict[int, dict[str, Any]] = {}
    result = None
    for name in ("last", "best"):
        path = ckpt_dir / f"{name}.safetensors"
        if not path.is_file():
            continue
        tensors, meta = load_checkpoint(path)
        epoch = int(meta.get("epoch", -1))
        if epoch not in done:
            model, _ = load_model(path, device)
            done[epoch] = calibrate_model(
                model, normals, data_cfg, eval_cfg, device, batch_size, source, labelled
            )
        meta["threshold"] = done[epoch]
        meta.pop("format", None), meta.pop("format_version", None)
        save_checkpoint(path, tensors, meta)
        result = result or done[epoch]
        t = done[epoch]
        log(
            f"calibrated {name} (epoch {epoch}) on {t['n_normals']} {source} normals: image threshold "
            f"{t['image']:.5f}, pixel threshold {t['pixel']:.5f} (target FPR {t['target_fpr']:g})"
            + (f"; F1 threshold {t['f1_threshold']:.5f} on {t['n_labelled']} labelled" if labelled else "")
        )
    return result
