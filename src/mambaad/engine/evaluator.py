"""Per-class evaluation of a model and the reports of a run (tables, report.html).

Classes are evaluated one at a time: the maps of one class are kept (float32 at the evaluation
resolution, what the pixel metrics need), its metrics computed, and then only the few maps the gallery
may show survive. Memory is therefore bounded by the largest class, not the whole test set, and gallery
images are re-read from disk by path at the end.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mambaad.config import DataConfig, EvalConfig
from mambaad.data.sample import Sample, by_class, class_has_masks
from mambaad.engine import distributed as dist
from mambaad.engine.step import compile_forward, matmul_tf32
from mambaad.metrics import evaluate
from mambaad.metrics.evaluate import mean_over_classes
from mambaad.metrics.functional import PIXEL_KEYS, with_mad
from mambaad.models.anomaly_map import pool_scores

GALLERY_PER_CLASS = 3  # clearest detections per class
GALLERY_NORMALS = 1  # likeliest false alarm per class
GALLERY_MAX = 48


@dataclass
class EvalResult:
    """Metrics of one evaluation and what the report needs."""

    per_class: dict[str, dict[str, float]]  # classes + "mean"
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    gallery: list[dict[str, Any]] = field(default_factory=list)  # items without the image (read later)
    vmin: float = 0.0  # global range of every map evaluated
    vmax: float = 1.0
    n_images: int = 0

    @property
    def mean_mad(self) -> float:
        return float(self.per_class["mean"].get("mad", math.nan))


def image_scores_from_maps(maps: Tensor, cfg: EvalConfig) -> Tensor:
    """(B, H, W) maps -> (B,) image scores by ``eval.score`` (max, mean, or mean of the top-k pixels)."""
    return pool_scores(maps, cfg.score, cfg.topk)


def autocast_context(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; a no-op elsewhere (CPU bf16 is slower than fp32 here)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _class_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray | None,
    maps: np.ndarray,
    known: np.ndarray,
    mode: str,
) -> dict[str, float]:
    """Image metrics on all images; pixel metrics on the images whose mask is known."""
    if masks is None or not known.any():
        return evaluate(labels, scores, mode=mode)
    if known.all():
        return evaluate(labels, scores, masks, maps, mode=mode)
    image = evaluate(labels, scores, mode=mode)
    pixel = evaluate(labels[known], scores[known], masks[known], maps[known], mode=mode)
    return with_mad({**image, **{k: pixel[k] for k in PIXEL_KEYS}})


def _predict(
    model: nn.Module,
    ds: Any,
    indices: list[int],
    with_masks: bool,
    data_cfg: DataConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    batch_size: int,
    bf16: bool,
    channels_last: bool,
    bar: Any,
) -> dict[str, np.ndarray]:
    """Maps, scores, labels, mask-known flags (and masks) of ``ds[indices]``, in that order."""
    from torch.utils.data import DataLoader, Subset

    n, s = len(indices), data_cfg.crop_size
    out = {
        "maps": np.empty((n, s, s), np.float32),  # (N, S, S)
        "scores": np.empty(n, np.float64),
        "labels": np.empty(n, np.int64),
        "known": np.empty(n, bool),
    }
    if with_masks:
        out["masks"] = np.zeros((n, s, s), bool)
    loader = DataLoader(
        ds if n == len(ds) else Subset(ds, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=data_cfg.num_workers,
        pin_memory=device.type == "cuda",
    )
    i = 0
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)  # (B, 3, S, S)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, bf16), matmul_tf32(eval_cfg.tf32):
            amaps, _ = model.predict(images)  # (B, S, S)
        amaps = amaps.float()
        sc = image_scores_from_maps(amaps, eval_cfg)
        b = amaps.shape[0]
        out["maps"][i : i + b] = amaps.cpu().numpy()
        out["scores"][i : i + b] = sc.cpu().numpy()
        out["labels"][i : i + b] = batch["label"].numpy()
        out["known"][i : i + b] = batch["has_mask"].numpy()
        if with_masks:
            out["masks"][i : i + b] = batch["mask"][:, 0].numpy() > 0.5
        i += b
        bar.update(b)
    return out


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    samples: Sequence[Sample],
    data_cfg: DataConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    batch_size: int = 16,
    bf16: bool = False,
    channels_last: bool = False,
    progress: bool = True,
) -> EvalResult:
    """Run ``model.predict`` over every test sample and compute per-class metrics (spec §8).

    Args:
        model: Any registered model (``predict(images) -> (maps, scores)``).
        samples: Test samples of one or more classes.
        data_cfg: Image size, crop and number of loader workers.
        eval_cfg: Metric mode and image score rule.
        device: Where the model runs.
        batch_size: Images per forward pass.
        bf16, channels_last: As in training (CUDA only for bf16).
        progress: Show a progress bar on a terminal.

    Under DDP every rank must call this: each predicts a shard of every class, rank 0 gathers the
    shards, computes the metrics and returns the full result; the other ranks get ``per_class`` only.
    """
    from tqdm import tqdm

    from mambaad.data.dataset import AnomalyDataset
    from mambaad.report import image_curves, select_gallery

    model.eval()
    if eval_cfg.compile:
        compile_forward(model)
    has_masks = class_has_masks(samples)
    per_class: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, Any]] = {}
    candidates: list[dict[str, Any]] = []
    lo, hi = math.inf, -math.inf
    groups = by_class(samples)
    bar = tqdm(total=len(samples), desc="eval", unit="img", disable=not progress or None, file=sys.stderr)
    rank, world = dist.get_rank(), dist.get_world_size()
    main = dist.is_main_process()
    for cls, group in groups.items():
        ds = AnomalyDataset(group, data_cfg.image_size, data_cfg.crop_size)
        n, s = len(ds), data_cfg.crop_size
        with_masks = has_masks.get(cls, False)
        # Each rank predicts every world-th image; rank 0 puts the shards back in order.
        mine = list(range(rank, n, world))
        part = _predict(
            model, ds, mine, with_masks, data_cfg, eval_cfg, device, batch_size, bf16, channels_last, bar
        )
        shards = dist.gather_to_main((mine, part)) if world > 1 else [(mine, part)]
        if not main:
            continue
        if world == 1:
            maps, scores, labels, known = part["maps"], part["scores"], part["labels"], part["known"]
            masks = part.get("masks")
        else:
            maps = np.empty((n, s, s), np.float32)  # (N, S, S)
            masks = np.zeros((n, s, s), bool) if with_masks else None
            labels, scores, known = np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, bool)
            for idx, arrays in shards:
                maps[idx], scores[idx] = arrays["maps"], arrays["scores"]
                labels[idx], known[idx] = arrays["labels"], arrays["known"]
                if masks is not None:
                    masks[idx] = arrays["masks"]
        del shards, part
        lo, hi = min(lo, float(maps.min())), max(hi, float(maps.max()))
        per_class[cls] = _class_metrics(labels, scores, masks, maps, known, eval_cfg.metric_mode)
        curves[cls] = image_curves(labels, scores)
        for j in select_gallery([cls] * n, scores, labels, GALLERY_PER_CLASS, GALLERY_NORMALS, GALLERY_MAX):
            candidates.append(
                {
                    "cls": cls,
                    "path": str(group[j].image_path),
                    "score": float(scores[j]),
                    "label": int(labels[j]),
                    "amap": maps[j].copy(),
                    "mask": None if masks is None or not known[j] else masks[j].copy(),
                }
            )
        del maps, masks
    bar.close()
    if not main:  # the other ranks learn the metrics only (the report is rank 0's)
        return EvalResult(dist.broadcast_from_main(None), n_images=len(samples))
    per_class["mean"] = mean_over_classes(per_class)
    if world > 1:
        dist.broadcast_from_main(per_class)
    keep = select_gallery(
        [c["cls"] for c in candidates],
        [c["score"] for c in candidates],
        [c["label"] for c in candidates],
        GALLERY_PER_CLASS,
        GALLERY_NORMALS,
        GALLERY_MAX,
    )
    if not math.isfinite(lo):
        lo, hi = 0.0, 1.0
    return EvalResult(per_class, curves, [candidates[k] for k in keep], lo, hi, len(samples))


def write_reports(
    result: EvalResult, out_dir: str | Path, data_cfg: DataConfig, info: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write metrics.md/.csv/.json and report.html into ``out_dir``; returns their paths (``html`` too)."""
    from mambaad.data.imageio import load_rgb
    from mambaad.data.transforms import resize_crop
    from mambaad.report import write_html_report, write_tables

    paths = write_tables(result.per_class, out_dir)
    gallery = []
    for item in result.gallery:  # re-read the few shown images with the network's geometry
        img = resize_crop(load_rgb(Path(item["path"])), data_cfg.image_size, data_cfg.crop_size)
        gallery.append({**item, "image": np.asarray(img, dtype=np.uint8)})
    paths["html"] = write_html_report(
        out_dir,
        result.per_class,
        result.curves,
        gallery,
        vmin=result.vmin,
        vmax=result.vmax,
        info=info,
    )
    return paths
