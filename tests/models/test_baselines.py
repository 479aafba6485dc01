"""The baseline models (RD4AD, UniAD, SimpleNet, DeSTSeg) behind the shared model interface, and the
efficiency counters. Tiny configurations (random-init ResNet18 teacher, 64 x 64 inputs) keep it fast."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mambaad.errors import ConfigError, MambaADError
from mambaad.models import create_model, list_models
from mambaad.models.decoder import SS2D
from mambaad.models.efficiency import count_flops, count_parameters, efficiency_report
from mambaad.models.simplenet import RECIPE as SIMPLENET_RECIPE
from mambaad.models.synthetic_anomalies import perlin_noise, synthesize_anomalies
from mambaad.models.uniad import neighbor_mask

TINY: dict[str, dict] = {
    "rd4ad": {"oce_blocks": 1, "decoder_blocks": (1, 1, 1)},
    "uniad": {
        "image_size": 64,
        "neighbor_size": 3,
        "hidden": 32,
        "heads": 2,
        "ffn": 64,
        "encoder_layers": 1,
        "decoder_layers": 2,
    },
    "simplenet": {"discriminator_hidden": 64},
    "destseg": {
        "student_encoder": "resnet10t",
        "decoder_blocks": (1, 1, 1),
        "seg_width": 16,
        "score_topk": 10,
        "schedule": "joint",  # both parts learn at every step here; the two-step default: test_destseg_schedule
    },
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, encoder="resnet18", encoder_weights=None, **TINY[name])


@pytest.fixture(scope="module", params=sorted(TINY))
def trained(request: pytest.FixtureRequest) -> tuple[str, nn.Module, list[float]]:
    """Each baseline after four Adam steps on one fixed batch (built and trained once per module)."""
    name = request.param
    model = tiny(name)
    model.train()
    params = [p for _, p in model.trainable_parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(4):
        loss = model.training_loss(x)
        opt.zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        if len(losses) == 1:  # check the gradient pattern on the first step, before any update
            model.first_grads = {n: p.grad is not None for n, p in model.named_parameters()}  # type: ignore[assignment]
        opt.step()
    return name, model, losses


def test_registry_lists_every_baseline() -> None:
    assert {"mambaad", "rd4ad", "uniad", "simplenet", "destseg"} <= set(list_models())


@pytest.mark.parametrize("name", sorted(TINY))
def test_unknown_option_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        create_model(name, encoder="resnet18", no_such_option=1)


def test_training_is_finite_and_learns(trained: tuple[str, nn.Module, list[float]]) -> None:
    _, _, losses = trained
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[1:]) < losses[0]


def test_gradients_reach_trainable_parameters_only(trained: tuple[str, nn.Module, list[float]]) -> None:
    _, model, _ = trained
    trainable = {n for n, _ in model.trainable_parameters()}
    assert trainable and not any(n.startswith("encoder.") for n in trainable)
    assert all(not p.requires_grad for p in model.encoder.parameters())
    got = model.first_grads
    assert {n for n, g in got.items() if g} == trainable


def test_frozen_encoder_stays_in_eval_mode(trained: tuple[str, nn.Module, list[float]]) -> None:
    _, model, _ = trained
    model.train()
    assert model.training and not model.encoder.training
    assert all(not m.training for m in model.encoder.modules())


def test_predict_shapes_and_values(trained: tuple[str, nn.Module, list[float]]) -> None:
    _, model, _ = trained
    model.eval()
    maps, scores = model.predict(torch.randn(3, 3, 64, 64))
    assert maps.shape == (3, 64, 64) and scores.shape == (3,)
    assert torch.isfinite(maps).all() and torch.isfinite(scores).all()
    assert not maps.requires_grad and not scores.requires_grad


def test_config_dict_rebuilds_the_model(trained: tuple[str, nn.Module, list[float]]) -> None:
    name, model, _ = trained
    config = model.config_dict()
    assert config["model"] == name and config["encoder"] == "resnet18"
    for key, value in TINY[name].items():
        assert config[key] == value
    options = {k: v for k, v in config.items() if k != "model"}
    rebuilt = create_model(name, **options)
    assert rebuilt.config_dict() == config
    assert {n: p.shape for n, p in rebuilt.state_dict().items()} == {
        n: p.shape for n, p in model.state_dict().items()
    }


def test_every_module_states_a_recipe(trained: tuple[str, nn.Module, list[float]]) -> None:
    _, model, _ = trained
    recipe = model.RECIPE
    assert {"optimizer", "lr", "epochs", "batch_size", "image_size"} <= set(recipe)


def test_efficiency_report_counts_every_baseline(trained: tuple[str, nn.Module, list[float]]) -> None:
    _, model, _ = trained
    model.train()
    report = efficiency_report(model, image_size=64)
    assert report["params"] == sum(p.numel() for p in model.parameters())
    assert 0 < report["trainable"] < report["params"]
    assert report["gflops"] > 0 and report["gflops_scan"] == 0  # no selective scan in the baselines
    assert model.training  # the counter restores the mode it found


def test_uniad_queries_follow_other_grids() -> None:
    model = tiny("uniad").eval()
    maps, scores = model.predict(torch.randn(1, 3, 96, 64))  # 6 x 4 tokens instead of the stored 4 x 4
    assert maps.shape == (1, 96, 64) and torch.isfinite(scores).all()


def test_rd4ad_rejects_sizes_not_multiple_of_32() -> None:
    with pytest.raises(MambaADError, match="multiple of 32"):
        tiny("rd4ad").training_loss(torch.randn(1, 3, 48, 48))


def test_simplenet_param_groups_follow_the_paper() -> None:
    model = tiny("simplenet")
    groups = model.param_groups()
    assert [g["lr"] for g in groups] == [SIMPLENET_RECIPE["lr"], 2 * SIMPLENET_RECIPE["lr"]]
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for _, p in model.trainable_parameters()}


def test_neighbor_mask_blocks_the_window_around_each_token() -> None:
    mask = neighbor_mask(5, 6, 3)
    assert mask.shape == (30, 30) and torch.equal(mask, mask.T)
    assert int(mask[2 * 6 + 3].sum()) == 9  # an inner token: its 3 x 3 window
    assert int(mask[0].sum()) == 4  # a corner: the window cut by the border
    assert bool(mask[0, 7]) and not bool(mask[0, 2])


def test_uniad_refuses_a_mask_that_hides_everything() -> None:
    model = create_model("uniad", encoder="resnet18", image_size=64, neighbor_size=7, hidden=32, heads=2)
    with pytest.raises(MambaADError, match="neighbor_size 7"):
        model.training_loss(torch.randn(1, 3, 64, 64))


def test_uniad_jitter_only_in_training() -> None:
    model = tiny("uniad")
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x)[1], model(x)[1])


def test_synthetic_anomalies_are_reproducible_and_local() -> None:
    images = torch.randn(4, 3, 32, 48)
    torch.manual_seed(3)
    a, ma = synthesize_anomalies(images, prob=1.0)
    torch.manual_seed(3)
    b, mb = synthesize_anomalies(images, prob=1.0)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert ma.shape == (4, 1, 32, 48) and set(ma.unique().tolist()) <= {0.0, 1.0}
    outside = (1 - ma).expand_as(images).bool()
    assert torch.equal(a[outside], images[outside])
    clean, masks = synthesize_anomalies(images, prob=0.0)
    assert torch.equal(clean, images) and masks.sum() == 0


def test_perlin_noise_is_smooth_and_zero_on_the_lattice() -> None:
    torch.manual_seed(0)
    n = perlin_noise(32, 32, 4, 4)
    assert n.shape == (32, 32)
    assert torch.allclose(
        n[::8, ::8], torch.zeros(4, 4), atol=1e-6
    )  # gradient noise vanishes at lattice points
    assert (n[:, 1:] - n[:, :-1]).abs().max() < 0.5


def test_mambaad_official_parameter_count() -> None:
    total, trainable = count_parameters(create_model("mambaad"))
    assert total == 25_615_232
    assert trainable == 1_458_304 + 15_986_624  # bottleneck + decoder (spec §4); encoder frozen


class _ConvThenScan(nn.Module):
    """A 1x1 conv then one SS2D, to check both FLOP parts against hand counts."""

    def __init__(self, dim: int, directions: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 1, bias=False)
        self.ss2d = SS2D(dim, d_state=4, expand=2, scan="sweep", directions=directions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ss2d(self.conv(x).permute(0, 2, 3, 1))


def test_flops_include_the_selective_scan() -> None:
    dim, k, size = 8, 4, 8
    model = _ConvThenScan(dim, k)
    report = efficiency_report(model, image_size=size)
    d_inner, length = 2 * dim, size * size
    assert report["gflops_scan"] * 1e9 == pytest.approx(9 * length * k * d_inner * 4)
    conv = 2 * 3 * dim * length
    in_proj, out_proj = 2 * length * dim * 2 * d_inner, 2 * length * d_inner * dim
    assert report["gflops"] * 1e9 > report["gflops_scan"] * 1e9 + conv + in_proj + out_proj
    assert count_flops(model, size) == pytest.approx(report["gflops"])
    assert report["params"] == count_parameters(model)[0]
