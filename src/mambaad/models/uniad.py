"""UniAD: a transformer that reconstructs feature tokens, one model for all classes (You et al., NeurIPS 2022).

Paper: "A Unified Model for Multi-class Anomaly Detection", §3 (Fig. 3):

    features (§4.1)       frozen ImageNet CNN maps resized to one grid and concatenated (paper: EfficientNet-B4
                          stages 1-4 at 14x14, 272 channels). Here: the encoder's stride-4/8/16 maps average-
                          pooled to the stride-16 grid (16x16 at 256 px), concatenated, then a linear (1x1)
                          projection to ``hidden`` = 256 channels, and a linear projection back at the end
    neighbour-masked      in every attention of encoder and decoder a token may not attend to the k x k
    attention (§3.3)      neighbourhood around itself (k = 7 on the paper's 14x14 grid), so it cannot copy
                          itself or its neighbours ("identical shortcut")
    layer-wise query      every decoder layer owns a learnable query embedding (one vector per token); it
    (§3.3)                first attends to the encoder output, then the result attends to the previous
                          decoder layer's output (the encoder output for the first layer), then an FFN
    feature jitter (§3.4) training only: tokens + N(0, (alpha * ||token||_2 / C)^2) noise with probability p;
                          the paper uses alpha = 20, p = 1 (our defaults ``jitter_scale``, ``jitter_prob``),
                          added to the encoder's feature tokens (C = their channel count) BEFORE the input
                          projection, as in the authors' code: on the projected tokens the noise scale would
                          depend on (and back-propagate into) the learned projection
    loss                  MSE between input features and their reconstruction
    map (§3.5)            per-token L2 distance, bilinearly upsampled to the input, Gaussian (sigma 4, the
                          benchmark protocol); image score = max of the map average-pooled with a
                          ``score_pool`` x ``score_pool`` window (the paper's "averagely pooled" maximum)

Sizes (paper): hidden 256, 8 heads, FFN 1024, 4 encoder + 4 decoder layers, dropout 0.1, 2-D sine
positional embedding on queries and keys. Learnable queries are stored for ``image_size`` and resized
bilinearly for other grids. Initialisation as in the authors' code: Xavier-uniform weights and zero biases
for every linear layer of the reconstruction network, N(0, 1) queries (an ``nn.Embedding``). Paper recipe in :data:`RECIPE`: AdamW lr 1e-4, betas (0.9, 0.999), weight
decay 1e-4 on every parameter, lr x0.1 after epoch 800 of 1000, gradient-norm clip 0.1, batch 64 (8 GPUs x
8), 224 px (we keep the package's 256 px); ``configs/uniad.yaml``. The schedule and clip are those of the
authors' released MVTec config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambaad.errors import ConfigError, MambaADError
from mambaad.models.anomaly_map import gaussian_blur
from mambaad.models.encoder import Encoder

RECIPE = {
    "optimizer": "adamw",
    "lr": 1e-4,
    "betas": (0.9, 0.999),
    "weight_decay": 1e-4,  # on every parameter (one group)
    "lr_decay_at": 0.8,  # StepLR: x0.1 after epoch 800 of 1000
    "lr_decay": 0.1,
    "grad_clip": 0.1,
    "epochs": 1000,
    "batch_size": 64,
    "image_size": 256,
}

GRID_STRIDE = 16


def neighbor_mask(h: int, w: int, k: int, device: torch.device | None = None) -> Tensor:
    """(L, L) bool, True where token j lies in the k x k window centred on token i (attention blocked)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    r = k // 2
    return ((ys[:, None] - ys[None, :]).abs() <= r) & ((xs[:, None] - xs[None, :]).abs() <= r)


def sine_position_embedding(h: int, w: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed 2-D sine/cosine embedding (DETR style): half the channels for y, half for x: (L, dim)."""
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    y = torch.arange(h, device=device, dtype=torch.float32)[:, None] * freq  # (h, dim/4)
    x = torch.arange(w, device=device, dtype=torch.float32)[:, None] * freq
    ey = torch.cat([y.sin(), y.cos()], 1)[:, None, :].expand(h, w, 2 * quarter)
    ex = torch.cat([x.sin(), x.cos()], 1)[None, :, :].expand(h, w, 2 * quarter)
    emb = torch.cat([ey, ex], -1).reshape(h * w, 4 * quarter)
    return F.pad(emb, (0, dim - 4 * quarter))


def feature_jitter(tokens: Tensor, scale: float, prob: float) -> Tensor:
    """Add N(0, (scale * ||t|| / C)^2) noise to each (B, L, C) token with probability ``prob``."""
    c = tokens.shape[-1]
    sigma = scale * tokens.norm(dim=-1, keepdim=True) / c  # (B, L, 1)
    keep = (torch.rand((*tokens.shape[:2], 1), device=tokens.device) < prob).to(tokens.dtype)
    return tokens + keep * sigma * torch.randn_like(tokens)


def _xavier_linear(module: nn.Module) -> None:
    """Xavier-uniform weight, zero bias: the authors' initialiser for every linear layer of the network."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class EncoderLayer(nn.Module):
    """Post-norm transformer layer: masked self-attention, then FFN."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor, mask: Tensor) -> Tensor:  # (B, L, C)
        q = x + pos
        x = self.norm1(x + self.drop(self.attn(q, q, x, attn_mask=mask, need_weights=False)[0]))
        return self.norm2(x + self.drop(self.ffn(x)))


class QueryDecoderLayer(nn.Module):
    """Decoder layer with its own learnable query: query -> encoder output, -> previous layer, -> FFN."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid
        self.query = nn.Parameter(torch.randn(grid[0] * grid[1], dim))  # N(0, 1) as an nn.Embedding
        self.attn_memory = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attn_previous = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def query_for(self, h: int, w: int) -> Tensor:
        """The learnable queries for an h x w grid: (1, L, C), resized bilinearly from the stored grid."""
        if (h, w) == self.grid:
            return self.query[None]
        q = self.query.T.reshape(1, -1, *self.grid)  # (1, C, gh, gw)
        return F.interpolate(q, size=(h, w), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)

    def forward(
        self, previous: Tensor, memory: Tensor, pos: Tensor, mask: Tensor, grid: tuple[int, int]
    ) -> Tensor:
        q = self.query_for(*grid).expand(memory.shape[0], -1, -1)  # (B, L, C)
        a = self.attn_memory(q + pos, memory + pos, memory, attn_mask=mask, need_weights=False)[0]
        t = self.norm1(q + self.drop(a))
        a = self.attn_previous(t + pos, previous + pos, previous, attn_mask=mask, need_weights=False)[0]
        t = self.norm2(t + self.drop(a))
        return self.norm3(t + self.drop(self.ffn(t)))


@dataclass
class UniADConfig:
    encoder: str = "efficientnet_b4"
    image_size: int = 256  # the grid the learnable queries are stored for (image_size / 16 per side)
    hidden: int = 256
    heads: int = 8
    ffn: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    neighbor_size: int = 7
    jitter_scale: float = 20.0
    jitter_prob: float = 1.0
    gaussian_sigma: float = 4.0
    score_pool: int = 16


class UniAD(nn.Module):
    """Frozen CNN features -> 1x1 projection -> NMA transformer encoder / layer-wise-query decoder."""

    RECIPE = RECIPE

    def __init__(self, config: UniADConfig, encoder_weights: str | Path | None = None) -> None:
        super().__init__()
        if config.image_size % GRID_STRIDE:
            raise ConfigError(f"image_size {config.image_size} must be a multiple of {GRID_STRIDE}")
        self.config = cfg = config
        self.encoder = Encoder(cfg.encoder, encoder_weights)
        self.feature_dim = sum(self.encoder.channels)
        grid = (cfg.image_size // GRID_STRIDE,) * 2
        self.input_proj = nn.Linear(self.feature_dim, cfg.hidden)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(cfg.hidden, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            QueryDecoderLayer(cfg.hidden, cfg.heads, cfg.ffn, cfg.dropout, grid)
            for _ in range(cfg.decoder_layers)
        )
        self.output_proj = nn.Linear(cfg.hidden, self.feature_dim)
        for part in (self.input_proj, self.encoder_layers, self.decoder_layers, self.output_proj):
            part.apply(_xavier_linear)  # not the pretrained encoder

    def train(self, mode: bool = True) -> UniAD:
        super().train(mode)
        self.encoder.eval()
        return self

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, C_feat, H/16, W/16): the encoder's maps pooled to one grid, concatenated."""
        h, w = x.shape[-2:]
        if h % GRID_STRIDE or w % GRID_STRIDE:
            raise MambaADError(f"input size {h}x{w} must be a multiple of {GRID_STRIDE} on both sides")
        size = (h // GRID_STRIDE, w // GRID_STRIDE)
        return torch.cat([F.adaptive_avg_pool2d(f, size) for f in self.encoder(x)], dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> (features, reconstruction), both (B, C_feat, H/16, W/16)."""
        feats = self.features(x)
        b, c, h, w = feats.shape
        k = self.config.neighbor_size
        mask = neighbor_mask(h, w, k, x.device)
        if mask.all(dim=1).any():
            raise MambaADError(f"neighbor_size {k} hides every token of the {h}x{w} grid; use a smaller one")
        pos = sine_position_embedding(h, w, self.config.hidden, x.device)[None]  # (1, L, C)
        tokens = feats.flatten(2).transpose(1, 2)  # (B, L, C_feat)
        if self.training and self.config.jitter_prob > 0:  # on the features, before the projection (§3.4)
            tokens = feature_jitter(tokens, self.config.jitter_scale, self.config.jitter_prob)
        tokens = self.input_proj(tokens)  # (B, L, hidden)
        memory = tokens
        for layer in self.encoder_layers:
            memory = layer(memory, pos, mask)
        out = memory
        for layer in self.decoder_layers:
            out = layer(out, memory, pos, mask, (h, w))
        rec = self.output_proj(out).transpose(1, 2).reshape(b, c, h, w)
        return feats, rec

    def training_loss(self, images: Tensor) -> Tensor:
        feats, rec = self(images)
        return F.mse_loss(rec, feats)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Projections and transformer; the encoder is frozen."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def anomaly_map(self, feats: Tensor, rec: Tensor, size: tuple[int, int]) -> Tensor:
        """Per-token L2 distance, upsampled to ``size``: (B, H, W), before smoothing."""
        dist = (feats - rec).pow(2).sum(1, keepdim=True).sqrt()  # (B, 1, h, w)
        return F.interpolate(dist, size=size, mode="bilinear", align_corners=False)[:, 0]

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> smoothed maps (B, H, W) and image scores (B,)."""
        feats, rec = self(x)
        maps = gaussian_blur(self.anomaly_map(feats, rec, tuple(x.shape[-2:])), self.config.gaussian_sigma)
        pool = max(1, min(self.config.score_pool, *maps.shape[-2:]))
        scores = F.avg_pool2d(maps[:, None], pool, stride=1).flatten(1).amax(1)
        return maps, scores

    def config_dict(self) -> dict:
        return {"model": "uniad", **asdict(self.config)}


def build(
    encoder: str = "efficientnet_b4", encoder_weights: str | Path | None = None, **options: object
) -> UniAD:
    """Registry entry. Options: the fields of :class:`UniADConfig` (image_size, hidden, heads, ffn,
    encoder_layers, decoder_layers, dropout, neighbor_size, jitter_scale, jitter_prob, gaussian_sigma,
    score_pool)."""
    try:
        config = UniADConfig(encoder=encoder, **options)  # type: ignore[arg-type]
    except TypeError as err:
        raise ConfigError(f"uniad: {err}") from None
    return UniAD(config, encoder_weights)
