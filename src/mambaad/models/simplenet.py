"""SimpleNet: a discriminator between adapted features and noised copies of them (Liu et al., CVPR 2023).

Paper: "SimpleNet: A Simple Network for Image Anomaly Detection and Localization", §3 (Fig. 3):

    feature extractor (§3.1)  frozen ImageNet CNN, layer2 + layer3 (strides 8 and 16; paper: WideResNet50),
                              each averaged over its 3 x 3 neighbourhood (local aggregation, p = 3), the
                              deeper map bilinearly upsampled to the shallower one, concatenated channel-wise
    feature adaptor (§3.2)    one fully connected layer, C -> C, applied at every location
    anomaly feature           training only: q- = q + eps, eps ~ N(0, sigma^2 I), sigma = 0.015
    generator (§3.3)
    discriminator (§3.4)      a 2-layer MLP (Linear, BatchNorm, LeakyReLU 0.2, Linear) giving one score per
                              location; normal features should score high, noised ones low
    loss (Eq. 7)              mean(max(0, th+ - D(q))) + mean(max(0, -th- + D(q-))), th+ = 0.5, th- = -0.5
    map (§3.5)                -D(q) per location, bilinearly upsampled, Gaussian sigma 4; score = map maximum

Paper recipe (§4.1) in :data:`RECIPE`: Adam, lr 1e-4 for the adaptor and 2e-4 for the discriminator
(:meth:`SimpleNet.param_groups` keeps this 1 : 2 ratio for any ``train.lr``), weight decay 1e-5, 160 epochs,
batch 8 (``configs/simplenet.yaml``). The authors' code also anneals the discriminator's lr (cosine, to 0.4 x);
the paper does not state it and we keep it constant. The paper trains at 256 px then crops 224; we keep
the package's 256 px. ``discriminator_hidden`` (1024) is not stated in the paper; it is a common choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambaad.errors import ConfigError, MambaADError
from mambaad.models.anomaly_map import gaussian_blur, image_scores
from mambaad.models.encoder import Encoder
from mambaad.models.recipes import part_groups

RECIPE = {
    "optimizer": "adam",
    "lr": 1e-4,  # the adaptor's; the discriminator gets 2 x lr through param_groups
    "group_lrs": {"adaptor": 1e-4, "discriminator": 2e-4},
    "betas": (0.9, 0.999),
    "weight_decay": 1e-5,
    "lr_decay_at": 1.0,
    "lr_decay": 1.0,  # constant learning rate
    "grad_clip": 0.0,
    "epochs": 160,
    "batch_size": 8,
    "image_size": 256,
}

INPUT_MULTIPLE = 16


def local_aggregation(feats: list[Tensor], patch: int) -> Tensor:
    """Neighbourhood-average each map, bring all to the first map's size, concatenate: (B, C, h, w)."""
    size = feats[0].shape[-2:]
    out = []
    for f in feats:
        f = F.avg_pool2d(f, patch, stride=1, padding=patch // 2, count_include_pad=False)
        if f.shape[-2:] != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        out.append(f)
    return torch.cat(out, dim=1)


@dataclass
class SimpleNetConfig:
    encoder: str = "wide_resnet50_2"
    layers: tuple[int, ...] = (1, 2)  # indices into the encoder's stride-4/8/16 maps: layer2, layer3
    patch_size: int = 3
    noise_std: float = 0.015
    discriminator_hidden: int = 1024
    th_pos: float = 0.5
    th_neg: float = -0.5
    gaussian_sigma: float = 4.0
    score_topk: int | None = None


class SimpleNet(nn.Module):
    """Frozen features -> adaptor -> discriminator; anomalies are locations the discriminator rejects."""

    RECIPE = RECIPE

    def __init__(self, config: SimpleNetConfig, encoder_weights: str | Path | None = None) -> None:
        super().__init__()
        self.config = cfg = config
        self.encoder = Encoder(cfg.encoder, encoder_weights)
        if not cfg.layers or any(i not in (0, 1, 2) for i in cfg.layers):
            raise ConfigError(f"layers must be indices in 0..2 of the encoder's maps, got {list(cfg.layers)}")
        dim = sum(self.encoder.channels[i] for i in cfg.layers)
        self.adaptor = nn.Linear(dim, dim)
        self.discriminator = nn.Sequential(
            nn.Linear(dim, cfg.discriminator_hidden),
            nn.BatchNorm1d(cfg.discriminator_hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(cfg.discriminator_hidden, 1),
        )

    def train(self, mode: bool = True) -> SimpleNet:
        super().train(mode)
        self.encoder.eval()
        return self

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> adapted features (B, h, w, C) on the shallowest chosen grid."""
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise MambaADError(f"input size {h}x{w} must be a multiple of {INPUT_MULTIPLE} on both sides")
        maps = self.encoder(x)
        feats = local_aggregation([maps[i] for i in self.config.layers], self.config.patch_size)
        return self.adaptor(feats.permute(0, 2, 3, 1))

    def training_loss(self, images: Tensor) -> Tensor:
        q = self.features(images).flatten(0, 2)  # (N, C), N = B*h*w
        q_neg = q + self.config.noise_std * torch.randn_like(q)
        scores = self.discriminator(torch.cat([q, q_neg]))[:, 0]  # (2N,)
        pos, neg = scores.chunk(2)
        return F.relu(self.config.th_pos - pos).mean() + F.relu(neg - self.config.th_neg).mean()

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Adaptor and discriminator; the encoder is frozen."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def param_groups(self, lr: float | None = None, weight_decay: float | None = None) -> list[dict]:
        """Optimizer groups with the paper's learning rates: adaptor ``lr``, discriminator 2 x ``lr``.

        ``None`` takes the recipe's value (lr 1e-4, weight decay 1e-5).
        """
        lr = RECIPE["lr"] if lr is None else lr
        wd = RECIPE["weight_decay"] if weight_decay is None else weight_decay
        parts = {"adaptor": self.adaptor.parameters(), "discriminator": self.discriminator.parameters()}
        return part_groups(parts, RECIPE, lr, wd)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> discriminator scores (B, 1, h, w) of the adapted features (high = normal)."""
        q = self.features(x)  # (B, h, w, C)
        b, h, w, c = q.shape
        return self.discriminator(q.reshape(-1, c)).view(b, 1, h, w)

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> smoothed maps (B, H, W) and image scores (B,)."""
        raw = -self(x)  # (B, 1, h, w) anomaly = rejected by the discriminator
        maps = F.interpolate(raw, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
        maps = gaussian_blur(maps, self.config.gaussian_sigma)
        return maps, image_scores(maps, self.config.score_topk)

    def config_dict(self) -> dict:
        return {"model": "simplenet", **asdict(self.config)}


def build(
    encoder: str = "wide_resnet50_2", encoder_weights: str | Path | None = None, **options: object
) -> SimpleNet:
    """Registry entry. Options: layers, patch_size, noise_std, discriminator_hidden, th_pos, th_neg,
    gaussian_sigma, score_topk."""
    try:
        config = SimpleNetConfig(encoder=encoder, **options)  # type: ignore[arg-type]
    except TypeError as err:
        raise ConfigError(f"simplenet: {err}") from None
    config.layers = tuple(config.layers)
    return SimpleNet(config, encoder_weights)
