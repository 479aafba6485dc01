"""The official optimiser recipe: AdamW with two parameter groups and one step-down of the learning rate.

Weight decay applies to weight matrices and kernels only: parameters with ``ndim <= 1`` (norms, SSM
vectors such as ``D`` and ``A_log`` rows) and every ``*.bias`` are left undecayed, as the released
training code does. The frozen encoder never reaches the optimiser. The learning rate is multiplied by
``lr_decay`` once ``lr_decay_at`` of all iterations are done; it is a pure function of the iteration,
so resuming needs no scheduler state beyond the iteration counter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from mambaad.config import TrainConfig
from mambaad.errors import CheckpointError


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and an undecayed one (ndim <= 1 or '.bias')."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``model.trainable_parameters()`` with the two official groups."""
    groups = param_groups(model.trainable_parameters(), cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_at(iteration: int, total_iterations: int, cfg: TrainConfig) -> float:
    """Learning rate of step ``iteration`` (0-based): ``lr``, then ``lr * lr_decay`` from the milestone on."""
    milestone = int(cfg.lr_decay_at * total_iterations)
    return cfg.lr * (cfg.lr_decay if iteration >= milestone else 1.0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every group (called before each step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


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
