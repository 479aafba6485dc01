"""MambaAD: frozen CNN encoder -> half-FPN bottleneck -> Mamba decoder (He et al., NeurIPS 2024).

The model is a reconstruction network in feature space: the decoder learns to rebuild the encoder's
features of normal images, so where it fails (low cosine similarity) the image is anomalous.

    model = MambaAD(encoder="resnet34", scan="hilbert", directions=8, encoder_weights="imagenet")
    enc, dec = model(x)                     # 3 + 3 maps, shallow to deep
    loss = model.loss(enc, dec)             # training
    maps, scores = model.predict(x)         # (B, H, W), (B,)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mambaad.errors import ConfigError, MambaADError
from mambaad.models.anomaly_map import (
    cosine_distance_maps,
    fuse_maps,
    gaussian_blur,
    image_scores,
    reconstruction_loss,
)
from mambaad.models.bottleneck import HalfFPNBottleneck
from mambaad.models.decoder import MambaDecoder
from mambaad.models.encoder import Encoder
from mambaad.models.recipes import decay_split

INPUT_MULTIPLE = 32  # encoder stride 16, bottleneck stride 2

# The official recipe (spec §7): AdamW 5e-3 for batch 16, no decay on 1-D tensors and biases, x0.1 at 80 %.
RECIPE = {
    "optimizer": "adamw",
    "lr": 0.005,
    "betas": (0.9, 0.999),
    "weight_decay": 1e-4,
    "lr_decay_at": 0.8,
    "lr_decay": 0.1,
    "grad_clip": 5.0,
    "epochs": 1000,  # released configs; the paper states 500, ADer's re-runs 100
    "batch_size": 16,
    "image_size": 256,
}


@dataclass
class MambaADConfig:
    """Everything that fixes the architecture (stored with every checkpoint)."""

    encoder: str = "resnet34"
    scan: str = "hilbert"  # sweep | scan | zorder | zigzag | hilbert
    directions: int = 8  # 2 | 4 | 8
    distinct_directions: bool = False  # True: 8 pairwise distinct orders (the paper's figure)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    d_state: int = 16  # N
    expand: int = 2  # D = expand * C
    drop_path_rate: float = 0.2
    local_kernels: tuple[int, ...] = (5, 7)  # depthwise kernels of the LSS local branches
    lss_branches: str = "both"  # both | hss (scans only) | conv (local convolutions only); ablation switch
    loss_weight: float = 5.0
    gaussian_sigma: float = 4.0
    score_topk: int | None = None  # None: image score = max of the map


class MambaAD(nn.Module):
    """The MambaAD model; see the module docstring for the public methods."""

    RECIPE = RECIPE

    def __init__(
        self,
        encoder: str = "resnet34",
        scan: str = "hilbert",
        directions: int = 8,
        encoder_weights: str | Path | None = None,
        scan_backend: str = "auto",
        **options: object,
    ) -> None:
        super().__init__()
        self.config = MambaADConfig(encoder=encoder, scan=scan, directions=directions, **options)  # type: ignore[arg-type]
        cfg = self.config
        cfg.local_kernels = tuple(cfg.local_kernels)
        if cfg.lss_branches not in ("both", "hss", "conv"):
            raise ConfigError(f"lss_branches must be 'both', 'hss' or 'conv', got {cfg.lss_branches!r}")
        if cfg.lss_branches == "conv" and not cfg.local_kernels:
            raise ConfigError("lss_branches 'conv' needs at least one local kernel")
        self.encoder = Encoder(encoder, encoder_weights)
        self.bottleneck = HalfFPNBottleneck(self.encoder.channels)
        dims = [self.bottleneck.out_channels, *reversed(self.encoder.channels)]
        if len(cfg.depths) != len(dims):  # one depth per decoder stage; other lengths compare fewer scales
            raise ConfigError(
                f"model.depths must list {len(dims)} stage depths (deep to shallow), got {list(cfg.depths)}"
            )
        self.decoder = MambaDecoder(
            dims,
            tuple(cfg.depths),
            cfg.drop_path_rate,
            kernels=() if cfg.lss_branches == "hss" else tuple(cfg.local_kernels),
            use_hss=cfg.lss_branches != "conv",
            d_state=cfg.d_state,
            expand=cfg.expand,
            scan=scan,
            directions=directions,
            distinct=cfg.distinct_directions,
            backend=scan_backend,
        )

    def set_scan_backend(self, backend: str) -> None:
        """Switch every SS2D layer to another selective-scan backend (same weights, same maths)."""
        for m in self.decoder.modules():
            if hasattr(m, "backend"):
                m.backend = backend

    def train(self, mode: bool = True) -> MambaAD:
        super().train(mode)
        self.encoder.eval()  # the teacher never leaves eval mode
        return self

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """(B, 3, H, W) normalised images -> (encoder maps, decoder maps), shallow to deep."""
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise MambaADError(f"input size {h}x{w} must be a multiple of {INPUT_MULTIPLE} on both sides")
        enc = self.encoder(x)
        dec = self.decoder(self.bottleneck(enc))
        return enc, dec

    def loss(self, enc: list[Tensor], dec: list[Tensor]) -> Tensor:
        return reconstruction_loss(enc, dec, self.config.loss_weight)

    def training_loss(self, images: Tensor) -> Tensor:
        """The loss on a batch of normal images (the engine's one call per step)."""
        return self.loss(*self(images))

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Bottleneck and decoder; the encoder is frozen."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def param_groups(self, lr: float | None = None, weight_decay: float | None = None) -> list[dict]:
        """The official AdamW groups: weights decayed; 1-D tensors and biases not (``None``: recipe values)."""
        lr = RECIPE["lr"] if lr is None else lr
        wd = RECIPE["weight_decay"] if weight_decay is None else weight_decay
        return decay_split(self.trainable_parameters(), wd, lr)

    def anomaly_map(
        self, enc: list[Tensor], dec: list[Tensor], smooth: bool = True, size: tuple[int, int] | None = None
    ) -> Tensor:
        """(B, H, W) pixel anomaly map at ``size`` (default: input size = 4 x the shallowest map)."""
        if size is None:
            size = (enc[0].shape[-2] * 4, enc[0].shape[-1] * 4)
        maps = fuse_maps(cosine_distance_maps(enc, dec), size)
        return gaussian_blur(maps, self.config.gaussian_sigma) if smooth else maps

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> smoothed maps (B, H, W) and image scores (B,)."""
        enc, dec = self(x)
        maps = self.anomaly_map(enc, dec, size=tuple(x.shape[-2:]))
        return maps, image_scores(maps, self.config.score_topk)

    def config_dict(self) -> dict:
        return {"model": "mambaad", **asdict(self.config)}


def build(
    encoder: str = "resnet34",
    encoder_weights: str | Path | None = None,
    scan: str = "hilbert",
    directions: int = 8,
    scan_backend: str = "auto",
    **options: object,
) -> MambaAD:
    """Registry entry: unknown options (other models' settings) are rejected by MambaADConfig."""
    return MambaAD(encoder, scan, directions, encoder_weights, scan_backend, **options)
