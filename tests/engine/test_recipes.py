"""Each model's published recipe reaches the optimizer: type, betas/momentum, weight decay, per-part lrs,
and a schedule that scales every group's own base lr (ratios between parts hold for the whole run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mambaad.config import TrainConfig, apply_overrides, load_config
from mambaad.engine.optim import (
    build_optimizer,
    flatten_optimizer_state,
    lr_factor,
    restore_base_lrs,
    set_lr_factor,
    unflatten_optimizer_state,
)
from mambaad.models import create_model
from mambaad.models.recipes import get_recipe, recipe_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODELS = ("mambaad", "rd4ad", "uniad", "simplenet", "destseg")
TINY: dict[str, dict] = {
    "mambaad": {"depths": (1, 1, 1, 1), "directions": 2, "d_state": 4, "expand": 1},
    "rd4ad": {"oce_blocks": 1, "decoder_blocks": (1, 1, 1)},
    "uniad": {
        "image_size": 64,
        "hidden": 16,
        "heads": 2,
        "ffn": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
    },
    "simplenet": {"discriminator_hidden": 16},
    "destseg": {"student_encoder": "resnet10t", "decoder_blocks": (1, 1, 1), "seg_width": 8},
}
# expected {group name: lr / recipe lr} of each model
RATIOS: dict[str, dict[str, float]] = {
    "mambaad": {"decay": 1.0, "no_decay": 1.0},
    "rd4ad": {"all": 1.0},
    "uniad": {"all": 1.0},
    "simplenet": {"adaptor": 1.0, "discriminator": 2.0},
    "destseg": {"student": 1.0, "seg_residual": 0.25, "seg_head": 0.025},
}
OPTIMIZER_TYPES = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    encoder = {"mambaad": "test_efficientnet"}
    return {
        n: create_model(n, encoder=encoder.get(n, "resnet18"), encoder_weights=None, **TINY[n])
        for n in MODELS
    }


def recipe_train(name: str) -> TrainConfig:
    return apply_overrides(load_config(None), recipe_overrides(name, budget=True)).train


@pytest.mark.parametrize("name", MODELS)
def test_optimizer_follows_the_recipe(name: str, models: dict[str, nn.Module]) -> None:
    recipe = get_recipe(name)
    cfg = recipe_train(name)
    opt = build_optimizer(models[name], cfg)
    assert type(opt) is OPTIMIZER_TYPES[recipe["optimizer"]]
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == set(RATIOS[name])
    for gname, ratio in RATIOS[name].items():
        assert groups[gname]["lr"] == pytest.approx(recipe["lr"] * ratio)
        assert groups[gname]["base_lr"] == groups[gname]["lr"]
        if recipe["optimizer"] == "sgd":
            assert groups[gname]["momentum"] == recipe["momentum"]
        else:
            assert tuple(groups[gname]["betas"]) == tuple(recipe["betas"])
    expected_wd = {"no_decay": 0.0}
    for gname, g in groups.items():
        assert g["weight_decay"] == expected_wd.get(gname, recipe["weight_decay"])
    # every trainable parameter in exactly one group; the frozen encoder in none
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for _, p in models[name].trainable_parameters())
    assert not {id(p) for p in models[name].encoder.parameters()} & set(ids)
    assert (cfg.grad_clip, cfg.lr_decay, cfg.epochs) == (
        recipe["grad_clip"],
        recipe["lr_decay"],
        recipe["epochs"],
    )


@pytest.mark.parametrize("name", ["simplenet", "destseg"])
def test_schedule_keeps_the_ratios_between_groups(name: str, models: dict[str, nn.Module]) -> None:
    cfg = apply_overrides(
        load_config(None),
        [*recipe_overrides(name), "train.lr=0.02", "train.lr_decay=0.5", "train.lr_decay_at=0.8"],
    )
    opt = build_optimizer(models[name], cfg.train)
    total = 10
    for it in (0, 7, 8, 9):
        set_lr_factor(opt, lr_factor(it, total, cfg.train))
        factor = 0.5 if it >= 8 else 1.0
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(0.02 * RATIOS[name][g["name"]] * factor)


def test_mambaad_keeps_the_official_adamw_groups(models: dict[str, nn.Module]) -> None:
    model = models["mambaad"]
    opt = build_optimizer(model, TrainConfig())
    decay, no_decay = opt.param_groups
    by_id = {id(p): n for n, p in model.trainable_parameters()}
    assert all(p.ndim > 1 and not by_id[id(p)].endswith(".bias") for p in decay["params"])
    assert all(p.ndim <= 1 or by_id[id(p)].endswith(".bias") for p in no_decay["params"])
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (1e-4, 0.0)
    assert type(opt) is torch.optim.AdamW and decay["lr"] == no_decay["lr"] == 0.005


@pytest.mark.parametrize("name", ["rd4ad", "uniad", "simplenet", "destseg"])
def test_model_configs_spell_out_the_recipe(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.model == name
    expected = recipe_train(name)
    for key in (
        "optimizer",
        "lr",
        "weight_decay",
        "lr_decay_at",
        "lr_decay",
        "grad_clip",
        "epochs",
        "batch_size",
    ):
        assert getattr(cfg.train, key) == getattr(expected, key), key
    assert cfg.train.betas == expected.betas or expected.optimizer == "sgd"
    assert cfg.train.momentum == expected.momentum


def test_resume_keeps_group_ratios_and_takes_the_configs_base_lrs(models: dict[str, nn.Module]) -> None:
    model = models["destseg"]
    cfg = recipe_train("destseg")
    opt = build_optimizer(model, cfg)
    set_lr_factor(opt, 0.1)
    index, tensors = flatten_optimizer_state(opt)
    for g in index["param_groups"]:  # a checkpoint written before groups had a base_lr
        g.pop("base_lr")
    fresh = build_optimizer(model, cfg)
    base = [g["base_lr"] for g in fresh.param_groups]
    fresh.load_state_dict(unflatten_optimizer_state(index, tensors))
    restore_base_lrs(fresh, base)
    set_lr_factor(fresh, 1.0)
    assert [g["lr"] for g in fresh.param_groups] == pytest.approx([0.4, 0.1, 0.01])


def test_bad_optimizer_is_a_one_line_config_error() -> None:
    from mambaad.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.optimizer must be one of adamw, adam, sgd"):
        load_config(None, ["train.optimizer=lamb"])


def test_train_without_config_starts_from_the_models_recipe(synth_root: Path, tmp_path: Path) -> None:
    """`mambaad train --model simplenet` (no --config) trains with SimpleNet's Adam and its two lrs."""
    import yaml

    from mambaad.cli import main

    out = tmp_path / "run"
    argv = ["train", "--model", "simplenet", "--data", str(synth_root), "--out", str(out), "--epochs", "1"]
    argv += [
        "--encoder",
        "resnet18",
        "--encoder-weights",
        "none",
        "--data.image_size",
        "64",
        "--data.crop_size",
    ]
    argv += ["64", "--data.num_workers", "0", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    assert main([*argv, "--train.lr", "0.001"]) == 0  # an explicit option still wins over the recipe
    train = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert (train["optimizer"], train["weight_decay"], train["grad_clip"], train["lr"]) == (
        "adam",
        1e-5,
        0.0,
        0.001,
    )
    assert (
        "optimizer adam: adaptor lr 0.001 wd 1e-05, discriminator lr 0.002 wd 1e-05"
        in (out / "train.log").read_text()
    )
