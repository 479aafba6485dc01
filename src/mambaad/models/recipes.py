"""Published training recipes: each model's ``RECIPE`` dict, its parameter groups and its config overrides.

Every model module states the recipe of its paper as a ``RECIPE`` dict with the same keys, so one engine can
train them all as published:

    optimizer      "adam" | "adamw" | "sgd"
    lr             the base learning rate (``train.lr``)
    group_lrs      optional {part: lr}: per-part learning rates of the paper; the model's ``param_groups``
                   turns them into ratios of ``lr`` so that changing ``train.lr`` scales every part alike
    betas          Adam/AdamW betas (SGD ignores them)
    momentum       SGD momentum (Adam/AdamW ignore it)
    weight_decay   on every trainable parameter, except where the model's ``param_groups`` says otherwise
    lr_decay_at    fraction of the iterations after which every group's lr is multiplied by ``lr_decay``
    lr_decay       1.0 = constant learning rate
    grad_clip      global L2 gradient-norm clip; 0 = none
    epochs, batch_size, image_size   the paper's budget (multi-class re-runs usually change ``epochs``)

:func:`recipe_overrides` turns a recipe into dotted config overrides (``train.optimizer=adam`` ...), which
``mambaad train --model X`` applies when no ``--config`` is given, and ``configs/<model>.yaml`` spells out.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from mambaad.errors import ConfigError

__all__ = [
    "OPTIMIZER_KEYS",
    "decay_split",
    "get_recipe",
    "part_groups",
    "recipe_overrides",
]

# recipe keys that set train.* values of the optimiser and schedule (not the budget)
OPTIMIZER_KEYS = (
    "optimizer",
    "lr",
    "betas",
    "momentum",
    "weight_decay",
    "lr_decay_at",
    "lr_decay",
    "grad_clip",
)
BUDGET_KEYS = ("epochs", "batch_size")


def get_recipe(name: str) -> dict[str, Any]:
    """The ``RECIPE`` dict of the registered model ``name`` (a copy)."""
    from mambaad.models.registry import MODELS, list_models

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    module = importlib.import_module(MODELS[name].split(":")[0])
    return dict(module.RECIPE)


def _yaml_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def recipe_overrides(name: str, budget: bool = False) -> list[str]:
    """Dotted ``train.*`` overrides that reproduce model ``name``'s recipe (with ``budget``: epochs, batch).

    >>> recipe_overrides("rd4ad")[:3]
    ['train.optimizer=adam', 'train.lr=0.005', 'train.betas=[0.5,0.999]']
    """
    recipe = get_recipe(name)
    keys = OPTIMIZER_KEYS + (BUDGET_KEYS if budget else ())
    return [f"train.{k}={_yaml_value(recipe[k])}" for k in keys if k in recipe]


def decay_split(
    named_params: Iterable[tuple[str, nn.Parameter]], weight_decay: float, lr: float | None = None
) -> list[dict[str, Any]]:
    """MambaAD's official two groups: weights decayed, ``ndim <= 1`` tensors and ``*.bias`` not decayed."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    if lr is not None:
        for g in groups:
            g["lr"] = lr
    return groups


def part_groups(
    parts: Mapping[str, Iterable[nn.Parameter]], recipe: Mapping[str, Any], lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """One group per named part, at ``lr * group_lrs[part] / recipe['lr']`` (the paper's ratios kept).

    Args:
        parts: {part name: its parameters}; names must be the keys of ``recipe['group_lrs']``.
        recipe: The model's RECIPE (``lr`` and ``group_lrs``).
        lr: The base learning rate actually used (``train.lr``).
        weight_decay: Applied to every group.
    """
    ratios = {k: v / recipe["lr"] for k, v in recipe["group_lrs"].items()}
    return [
        {
            "name": name,
            "params": [p for p in params if p.requires_grad],
            "lr": lr * ratios[name],
            "weight_decay": weight_decay,
        }
        for name, params in parts.items()
    ]
