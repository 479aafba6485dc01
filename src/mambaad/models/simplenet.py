"""SimpleNet: a discriminator between adapted features and noised copies of them (Liu et al., CVPR 2023).

Paper: "SimpleNet: A Simple Network for Image Anomaly Detection and Localization", §3 (Fig. 3):

    feature extractor (§3.1)  frozen ImageNet CNN, layer2 + layer3 (strides 8 and 16; paper: WideResNet50),
                              each averaged over its 3 x 3 neighbourhood (local aggregation, p = 3), the
                              deeper map bilinearly upsampled to the shallower one, concatenated channel-wise
    standardisation (ours)    per channel, with the running mean / variance of the training features (below)
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

Why the standardisation: the noise sigma 0.015 is absolute, tuned for the paper's WideResNet50 features (ReLU
outputs of moderate scale). Other encoders differ by orders of magnitude (efficientnet_lite0's block outputs,
without activation, have a channel std near 5), so the noise becomes invisible, the discriminator can never
tell q from q- (the hinge loss sits at exactly 1.0 with D(q) = D(q-)) and the map is whatever function the
untrained discriminator happens to compute: on synthetic data that gave pixel AUROC far below 50. Features
standardised per channel give the noise one meaning for every encoder. ``standardize=False`` restores the
paper's raw features.
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


class ChannelStandardizer(nn.Module):
    """Per-channel ``(x - mean) / std`` with the mean and variance of every feature seen in training mode.

    The statistics are a cumulative average over all training batches (exact, not an exponential one), and
    training uses the running values too (not the batch's), so training and inference see the same
    transform once the first epoch has passed. Before any update it is the identity.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold the (N, C) features ``x`` into the running statistics (Chan et al.'s parallel formula)."""
        x = x.detach().double()
        n_old, n_new = int(self.count), x.shape[0]
        total = n_old + n_new
        mean_new, var_new = x.mean(0), x.var(0, unbiased=False)
        mean_old, var_old = self.mean.double(), self.var.double()  # weightless while n_old == 0
        delta = mean_new - mean_old
        self.mean.copy_(mean_old + delta * (n_new / total))
        self.var.copy_((var_old * n_old + var_new * n_new + delta**2 * (n_old * n_new / total)) / total)
        self.count.fill_(total)

    def forward(self, x: Tensor) -> Tensor:
        """(..., C) -> (..., C); in training mode the statistics first absorb ``x``."""
        if self.training:
            self.update(x.reshape(-1, x.shape[-1]))
        return (x - self.mean) * torch.rsqrt(self.var + self.eps)


def anomaly_maps(normality: Tensor, size: tuple[int, int], sigma: float) -> Tensor:
    """Discriminator scores (B, 1, h, w), high = normal -> anomaly maps (B, H, W), high = anomalous (§3.5).

    A location's anomaly score is -D(q); the grid is upsampled bilinearly to ``size``, then smoothed.
    """
    maps = F.interpolate(-normality, size=size, mode="bilinear", align_corners=False)[:, 0]  # (B, H, W)
    return gaussian_blur(maps, sigma)


@dataclass
class SimpleNetConfig:
    encoder: str = "wide_resnet50_2"
    layers: tuple[int, ...] = (1, 2)  # indices into the encoder's stride-4/8/16 maps: layer2, layer3
    patch_size: int = 3
    standardize: bool = True  # per-channel feature standardisation (not in the paper, see the module doc)
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
        self.standardizer = ChannelStandardizer(dim) if cfg.standardize else nn.Identity()
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

    def aggregated(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> locally aggregated encoder features (B, h, w, C) on the shallowest chosen grid."""
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise MambaADError(f"input size {h}x{w} must be a multiple of {INPUT_MULTIPLE} on both sides")
        maps = self.encoder(x)
        feats = local_aggregation([maps[i] for i in self.config.layers], self.config.patch_size)
        return feats.permute(0, 2, 3, 1)

    def adapt(self, feats: Tensor) -> Tensor:
        """Aggregated features (..., C) -> standardised, adapted features q (..., C)."""
        return self.adaptor(self.standardizer(feats))

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> adapted features q (B, h, w, C)."""
        return self.adapt(self.aggregated(x))

    def feature_loss(self, feats: Tensor) -> Tensor:
        """Eq. 7 on aggregated features (B, h, w, C): D(q) pushed above th+, D(q + noise) below th-."""
        q = self.adapt(feats).flatten(0, -2)  # (N, C), N = B*h*w
        q_neg = q + self.config.noise_std * torch.randn_like(q)
        scores = self.discriminator(torch.cat([q, q_neg]))[:, 0]  # (2N,) one batch, as the authors' code
        pos, neg = scores.chunk(2)
        return F.relu(self.config.th_pos - pos).mean() + F.relu(neg - self.config.th_neg).mean()

    def training_loss(self, images: Tensor) -> Tensor:
        return self.feature_loss(self.aggregated(images))

    def normality(self, feats: Tensor) -> Tensor:
        """Aggregated features (B, h, w, C) -> discriminator scores D(q) (B, 1, h, w), high = normal."""
        b, h, w, c = feats.shape
        return self.discriminator(self.adapt(feats).reshape(-1, c)).view(b, 1, h, w)

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
        return self.normality(self.aggregated(x))

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> smoothed maps (B, H, W) and image scores (B,)."""
        maps = anomaly_maps(self(x), tuple(x.shape[-2:]), self.config.gaussian_sigma)
        return maps, image_scores(maps, self.config.score_topk)

    def config_dict(self) -> dict:
        return {"model": "simplenet", **asdict(self.config)}


def build(
    encoder: str = "wide_resnet50_2", encoder_weights: str | Path | None = None, **options: object
) -> SimpleNet:
    """Registry entry. Options: layers, patch_size, standardize, noise_std, discriminator_hidden, th_pos,
    th_neg, gaussian_sigma, score_topk."""
    try:
        config = SimpleNetConfig(encoder=encoder, **options)  # type: ignore[arg-type]
    except TypeError as err:
        raise ConfigError(f"simplenet: {err}") from None
    config.layers = tuple(config.layers)
    return SimpleNet(config, encoder_weights)
