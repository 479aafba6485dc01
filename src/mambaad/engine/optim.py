"""The optimiser and its schedule, built from the model's parameter groups and the ``train`` config.

``train.optimizer`` picks Adam, AdamW or SGD (with ``train.betas`` / ``train.momentum``); the groups come from
the model: ``model.param_groups(lr, weight_decay)`` when it has one (MambaAD's official decayed / undecayed
split, SimpleNet's adaptor / discriminator and DeSTSeg's student / residual / head learning rates), else one
group of ``model.trainable_parameters()``. Every group remembers its own ``base_lr``; the schedule multiplies
each group's base by the same factor (:func:`lr_factor`: 1, then ``lr_decay`` once ``lr_decay_at`` of all
iterations are done), so the ratios between groups that a paper prescribes hold for the whole run. The
factor is a pure function of the iteration, so resuming needs no scheduler state beyond the iteration counter.
The frozen encoder never reaches the optimiser.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from mambaad.config import OPTIMIZERS, TrainConfig
from mambaad.errors import CheckpointError, MambaADError
from mambaad.models.recipes import decay_split


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and an undecayed one (ndim <= 1 or '.bias')."""
    return [{k: v for k, v in g.items() if k != "name"} for g in decay_split(named_params, weight_decay)]


def model_param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The model's optimiser groups at ``cfg.base_lr``, each with ``lr``, ``base_lr``, ``weight_decay``, ``name``.

    Empty groups are dropped; every trainable parameter must be in exactly one group.
    """
    if hasattr(model, "param_groups"):
        groups = [dict(g) for g in model.param_groups(cfg.base_lr, cfg.weight_decay)]
    else:
        params = [p for _, p in model.trainable_parameters() if p.requires_grad]
        groups = [{"name": "all", "params": params}]
    out = []
    for i, g in enumerate(groups):
        g["params"] = list(g["params"])
        if not g["params"]:
            continue
        g.setdefault("name", f"group{i}")
        g.setdefault("lr", cfg.base_lr)
        g.setdefault("weight_decay", cfg.weight_decay)
        g["base_lr"] = g["lr"]
        out.append(g)
    seen = [id(p) for g in out for p in g["params"]]
    wanted = {id(p) for _, p in model.trainable_parameters() if p.requires_grad}
    if len(seen) != len(set(seen)) or set(seen) != wanted:
        raise MambaADError(f"{type(model).__name__}.param_groups must hold every trainable parameter once")
    return out


def fused_adam_ok(params: Iterable[Tensor]) -> bool | None:
    """True when every parameter is on CUDA: Adam's fused kernel then updates all of them in one launch
    (the default multi-tensor path took 5.3 ms of a 98 ms training step on an H200); None (torch's
    default) elsewhere."""
    params = list(params)
    return True if params and all(p.is_cuda for p in params) else None


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over the model's groups (see :func:`model_param_groups`)."""
    groups = model_param_groups(model, cfg)
    fused = fused_adam_ok(p for g in groups for p in g["params"])
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.base_lr, betas=tuple(cfg.betas), fused=fused)
    if cfg.optimizer == "adam":  # weight decay as an L2 term in the gradient, as the papers' Adam
        return torch.optim.Adam(groups, lr=cfg.base_lr, betas=tuple(cfg.betas), fused=fused)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum)
    raise MambaADError(f"train.optimizer {cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")


def lr_factor(iteration: int, total_iterations: int, cfg: TrainConfig) -> float:
    """Schedule multiplier of step ``iteration`` (0-based): 1, then ``lr_decay`` from the milestone on."""
    milestone = int(cfg.lr_decay_at * total_iterations)
    return cfg.lr_decay if iteration >= milestone else 1.0


def lr_at(iteration: int, total_iterations: int, cfg: TrainConfig) -> float:
    """Learning rate of a group whose base is ``cfg.base_lr`` at step ``iteration``."""
    return cfg.base_lr * lr_factor(iteration, total_iterations, cfg)


def set_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Set every group's lr to its own ``base_lr`` times ``factor`` (called before each step)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def restore_base_lrs(optimizer: torch.optim.Optimizer, base_lrs: list[float]) -> None:
    """After ``load_state_dict``: the base learning rates of the current config win over stored ones.

    Checkpoints written before groups had a ``base_lr`` load too; a changed ``train.lr`` applies on resume.
    """
    if len(base_lrs) != len(optimizer.param_groups):
        raise CheckpointError(
            f"optimizer state has {len(optimizer.param_groups)} parameter groups, the model {len(base_lrs)}"
        )
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["base_lr"] = base


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Tensor):
        return value.item()
    return value


def flatten_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Optimizer state as (JSON index, flat tensors ``optim.<param>.<key>``), so no pickle is needed."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, Tensor) and value.ndim > 0:
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            elif isinstance(value, Tensor):  # 0-d tensors (the step counter) keep their dtype via JSON
                scalars.setdefault(str(pid), {})[key] = {"tensor": value.item(), "dtype": str(value.dtype)}
            else:
                scalars.setdefault(str(pid), {})[key] = _plain(value)
    groups = [{k: _plain(v) for k, v in g.items()} for g in sd["param_groups"]]
    return {"param_groups": groups, "scalars": scalars}, tensors


def unflatten_optimizer_state(index: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
    """Rebuild the ``state_dict`` that :func:`flatten_optimizer_state` took apart."""
    try:
        state: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            if not name.startswith("optim."):
                continue
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
        for pid, values in index["scalars"].items():
            for key, value in values.items():
                if isinstance(value, dict) and "tensor" in value:
                    dtype = getattr(torch, value["dtype"].removeprefix("torch."))
                    value = torch.tensor(value["tensor"], dtype=dtype)
                state.setdefault(int(pid), {})[key] = value
        groups = [dict(g) for g in index["param_groups"]]
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"optimizer state index is malformed ({type(exc).__name__}: {exc})") from None
    return {"state": state, "param_groups": groups}
