"""The deployed computation as one module: raw RGB in, anomaly map + image score + decision out.

``DeployedModel`` wraps any model with ``predict(images) -> (maps, scores)`` and adds what lives
outside the network during training: the [0, 255] -> ImageNet normalisation, the image score rule of
``eval.score`` and the threshold. Eager ``mambaad predict`` and the ONNX export both run this module,
so the two can only differ by the numerics of the runtime, never by a forgotten pre/post-processing
step (the most common complaint about exported anomaly models).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mambaad.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mambaad.models.anomaly_map import pool_scores


class DeployedModel(nn.Module):
    """(B, 3, S, S) uint8 or float RGB in [0, 255] -> maps (B, S, S), scores (B,), decisions (B,) bool.

    Args:
        model: The trained model (eval mode; its own map smoothing is part of ``predict``).
        score: ``max`` | ``mean`` | ``topk`` (as ``eval.score``).
        topk: Pixels averaged for ``topk`` (None: 1 % of the map).
        threshold: Image-score threshold; None means no decision (all False).
    """

    def __init__(
        self, model: nn.Module, score: str = "max", topk: int | None = None, threshold: float | None = None
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.score = score
        self.topk = topk
        thr = math.inf if threshold is None else float(threshold)
        self.register_buffer("threshold", torch.tensor(thr, dtype=torch.float32), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def image_scores(self, maps: Tensor) -> Tensor:
        """(B, H, W) -> (B,) by the score rule (the same rule as the evaluator's)."""
        return pool_scores(maps, self.score, self.topk)

    def forward(self, rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = (rgb.float() - self.mean) / self.std  # (B, 3, S, S), ImageNet-normalised
        maps, _ = self.model.predict(x)  # (B, S, S), smoothed
        maps = maps.float()
        scores = self.image_scores(maps)  # (B,)
        return maps, scores, scores > self.threshold
