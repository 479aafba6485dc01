"""RD4AD: reverse distillation from a one-class embedding (Deng & Li, CVPR 2022).

Paper: "Anomaly Detection via Reverse Distillation from One-Class Embedding", §3 (Fig. 2):

    teacher E        frozen ImageNet CNN; its stride-4/8/16 maps are the targets (paper: WideResNet50
                     layer1..3; any timm CNN works here, ``encoder=``)
    OCBE (§3.3)      multi-scale feature fusion (MFF): shallow maps brought to stride 16 by 3x3 stride-2
                     conv+BN+ReLU layers, concatenated, fused by a 1x1 conv+BN+ReLU; then the one-class
                     embedding (OCE): one ResNet stage (stride 2, 2 x the deepest channels), as the teacher's
                     4th residual stage
    student D (§3.2) the teacher reversed: per scale a 2x2 stride-2 transposed conv (upsampling) and
                     residual blocks, deep to shallow, producing maps shaped like the teacher's
    loss (Eq. 2-3)   sum over scales k of mean_{h,w} (1 - cos(f_E^k(h,w), f_D^k(h,w)))
    map (§3.4)       sum over scales of the upsampled 1 - cos maps, Gaussian sigma 4; score = map maximum

Paper recipe (§4.1), in :data:`RECIPE`: Adam, lr 0.005, betas (0.5, 0.999), constant lr, no weight decay or
gradient clipping, 200 epochs, batch 16, 256 px (``configs/rd4ad.yaml``).

Deviations: residual blocks are standard ResNet bottlenecks of width C/4 (the paper copies the teacher's
blocks, wide ones for WideResNet50), so parameter counts differ from the official model. ``loss_mode=
"flat"`` instead takes one cosine per scale over the whole flattened map, which some re-implementations
use; the default ``"pixel"`` is the paper's Eq. 3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambaad.errors import ConfigError, MambaADError
from mambaad.models.anomaly_map import cosine_distance_maps, gaussian_blur, image_scores
from mambaad.models.encoder import Encoder

RECIPE = {
    "optimizer": "adam",
    "lr": 0.005,
    "betas": (0.5, 0.999),
    "weight_decay": 0.0,
    "lr_decay_at": 1.0,
    "lr_decay": 1.0,  # constant learning rate
    "grad_clip": 0.0,
    "epochs": 200,
    "batch_size": 16,
    "image_size": 256,
}

INPUT_MULTIPLE = 32  # teacher stride 16, OCE stride 2


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce, 3x3 (maybe strided), 1x1 expand, plus a projected shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        width = max(16, c_out // 4)
        self.body = nn.Sequential(
            conv_bn_relu(c_in, width, 1),
            conv_bn_relu(width, width, 3, stride),
            nn.Conv2d(width, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class OCBE(nn.Module):
    """One-class bottleneck embedding: 3 teacher maps (strides 4/8/16) -> one (B, 2*C3, H/32, W/32) code."""

    def __init__(self, channels: list[int], blocks: int = 3) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.down1 = nn.Sequential(conv_bn_relu(c1, c2, 3, 2), conv_bn_relu(c2, c3, 3, 2))  # stride 4 -> 16
        self.down2 = conv_bn_relu(c2, c3, 3, 2)  # stride 8 -> 16
        self.fuse = conv_bn_relu(3 * c3, c3, 1)
        layers = [Bottleneck(c3, 2 * c3, stride=2)] + [Bottleneck(2 * c3, 2 * c3) for _ in range(blocks - 1)]
        self.oce = nn.Sequential(*layers)
        self.out_channels = 2 * c3

    def forward(self, feats: list[Tensor]) -> Tensor:
        f1, f2, f3 = feats
        x = torch.cat([self.down1(f1), self.down2(f2), f3], dim=1)  # (B, 3*C3, H/16, W/16)
        return self.oce(self.fuse(x))  # (B, 2*C3, H/32, W/32)


class ReverseStage(nn.Sequential):
    """2x upsampling by a transposed conv (+BN+ReLU), then ``blocks`` residual blocks at ``c_out``."""

    def __init__(self, c_in: int, c_out: int, blocks: int) -> None:
        up = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, 2, stride=2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )
        super().__init__(up, *[Bottleneck(c_out, c_out) for _ in range(blocks)])


class ReverseDecoder(nn.Module):
    """Student: code at stride 32 -> maps at strides 16, 8, 4 (returned shallow-first like the teacher's)."""

    def __init__(self, c_in: int, channels: list[int], blocks: tuple[int, ...] = (3, 4, 6)) -> None:
        super().__init__()
        if len(blocks) != len(channels):
            raise ConfigError(f"decoder_blocks needs {len(channels)} numbers, got {list(blocks)}")
        stages, prev = [], c_in
        # blocks are given shallow-first like the teacher's layers; build deep-first
        for c, n in zip(reversed(channels), reversed(blocks)):
            stages.append(ReverseStage(prev, c, n))
            prev = c
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs[::-1]


@dataclass
class RD4ADConfig:
    encoder: str = "wide_resnet50_2"
    oce_blocks: int = 3
    decoder_blocks: tuple[int, ...] = (3, 4, 6)  # per scale, shallow to deep (ResNet layer1..3)
    loss_mode: str = "pixel"  # pixel (paper Eq. 3) | flat
    gaussian_sigma: float = 4.0
    score_topk: int | None = None  # None: image score = max of the map (paper)


class RD4AD(nn.Module):
    """Teacher encoder -> OCBE -> reverse student decoder; anomalies are where the two disagree."""

    RECIPE = RECIPE

    def __init__(self, config: RD4ADConfig, encoder_weights: str | Path | None = None) -> None:
        super().__init__()
        if config.loss_mode not in ("pixel", "flat"):
            raise ConfigError(f"loss_mode must be 'pixel' or 'flat', got {config.loss_mode!r}")
        self.config = config
        self.encoder = Encoder(config.encoder, encoder_weights)
        self.bottleneck = OCBE(self.encoder.channels, config.oce_blocks)
        self.decoder = ReverseDecoder(
            self.bottleneck.out_channels, self.encoder.channels, config.decoder_blocks
        )

    def train(self, mode: bool = True) -> RD4AD:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """(B, 3, H, W) -> (teacher maps, student maps), shallow to deep."""
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise MambaADError(f"input size {h}x{w} must be a multiple of {INPUT_MULTIPLE} on both sides")
        enc = self.encoder(x)
        return enc, self.decoder(self.bottleneck(enc))

    def loss(self, enc: list[Tensor], dec: list[Tensor]) -> Tensor:
        if self.config.loss_mode == "flat":
            return sum(
                (1 - F.cosine_similarity(e.flatten(1), d.flatten(1), dim=1)).mean() for e, d in zip(enc, dec)
            )
        return sum(m.mean() for m in cosine_distance_maps(enc, dec))

    def training_loss(self, images: Tensor) -> Tensor:
        return self.loss(*self(images))

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """OCBE and student; the teacher is frozen."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def anomaly_map(self, enc: list[Tensor], dec: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Sum of the per-scale 1 - cos maps upsampled to ``size``: (B, H, W), before smoothing."""
        maps = cosine_distance_maps(enc, dec)
        up = [F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=True)[:, 0] for m in maps]
        return torch.stack(up).sum(0)

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> smoothed maps (B, H, W) and image scores (B,)."""
        enc, dec = self(x)
        maps = gaussian_blur(self.anomaly_map(enc, dec, tuple(x.shape[-2:])), self.config.gaussian_sigma)
        return maps, image_scores(maps, self.config.score_topk)

    def config_dict(self) -> dict:
        return {"model": "rd4ad", **asdict(self.config)}


def build(
    encoder: str = "wide_resnet50_2", encoder_weights: str | Path | None = None, **options: object
) -> RD4AD:
    """Registry entry. Options: oce_blocks, decoder_blocks, loss_mode, gaussian_sigma, score_topk."""
    try:
        config = RD4ADConfig(encoder=encoder, **options)  # type: ignore[arg-type]
    except TypeError as err:
        raise ConfigError(f"rd4ad: {err}") from None
    config.decoder_blocks = tuple(config.decoder_blocks)
    return RD4AD(config, encoder_weights)
