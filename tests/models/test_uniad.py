"""UniAD details that decide whether it learns at all: where the feature jitter acts and the initialisation.

Tiny configuration (random-init ResNet18 teacher, 64 x 64 inputs, 4 x 4 tokens) keeps it fast."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mambaad.models import create_model
from mambaad.models.uniad import UniAD

TINY = {"image_size": 64, "neighbor_size": 3, "hidden": 32, "heads": 2, "ffn": 64}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**options: object) -> UniAD:
    torch.manual_seed(0)
    return create_model("uniad", encoder="resnet18", encoder_weights=None, **{**TINY, **options})


def projection_input(model: UniAD, x: Tensor, seed: int) -> Tensor:
    """What ``input_proj`` receives in one training forward: (B, L, C_feat)."""
    seen: list[Tensor] = []
    handle = model.input_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    torch.manual_seed(seed)
    model.train()(x)
    handle.remove()
    return seen[0]


def test_jitter_is_relative_noise_on_the_encoder_features_before_the_projection() -> None:
    model = tiny()
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    feats = model.features(x).flatten(2).transpose(1, 2)  # (B, L, C_feat)
    noise = projection_input(model, x, seed=5) - feats
    c = feats.shape[-1]
    assert c == model.feature_dim  # the paper's C is the feature channel count, not ``hidden``
    ratio = noise.std(-1) / (feats.norm(dim=-1) / c)  # per token: should be alpha = 20
    assert ratio.mean().item() == pytest.approx(20.0, rel=0.05)
    # the noise scale must not depend on (nor train) the learned projection: blow it up, same noise
    with torch.no_grad():
        model.input_proj.weight.mul_(100.0)
    assert torch.allclose(projection_input(model, x, seed=5) - feats, noise)


def test_no_jitter_reaches_the_projection_in_eval() -> None:
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    seen: list[Tensor] = []
    model.input_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    model(x)
    assert torch.equal(seen[0], model.features(x).flatten(2).transpose(1, 2))


def test_initialisation_follows_the_authors_code() -> None:
    model = tiny(hidden=64, heads=2, decoder_layers=2)
    linears = [
        m
        for part in (model.input_proj, model.encoder_layers, model.decoder_layers, model.output_proj)
        for m in part.modules()
        if isinstance(m, nn.Linear)
    ]
    assert all(m.bias is None or not m.bias.any() for m in linears)  # zero biases
    w = model.output_proj.weight  # Xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    bound = (6.0 / sum(w.shape)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    queries = torch.cat([layer.query.flatten() for layer in model.decoder_layers])
    assert queries.std().item() == pytest.approx(1.0, rel=0.1)  # N(0, 1) like an nn.Embedding
