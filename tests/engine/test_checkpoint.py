"""Checkpoint files, optimizer flattening, parameter groups, lr schedule and RNG capture."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mambaad.config import TrainConfig
from mambaad.engine.checkpoint import load_checkpoint, read_metadata, resolve_checkpoint, save_checkpoint
from mambaad.engine.optim import (
    build_optimizer,
    flatten_optimizer_state,
    lr_at,
    param_groups,
    unflatten_optimizer_state,
)
from mambaad.engine.seed import capture_rng_state, epoch_generator, restore_rng_state
from mambaad.errors import CheckpointError


def test_roundtrip_and_sidecar(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    path = save_checkpoint(tmp_path / "ck" / "last.safetensors", tensors, {"epoch": 3, "threshold": None})
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])
    assert meta["epoch"] == 3 and meta["format"] == "mambaad-checkpoint" and meta["threshold"] is None
    assert path.with_suffix(".json").is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.json", "last.safetensors"]  # no tmp files


def test_truncated_and_garbage_files_give_one_line_errors(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "x.safetensors", {"w": torch.randn(64, 64)}, {"epoch": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"x\.safetensors: truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"x\.safetensors"):
        read_metadata(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_run_folder_resolves_best_then_last(tmp_path: Path) -> None:
    ck = tmp_path / "run" / "checkpoints"
    save_checkpoint(ck / "last.safetensors", {"w": torch.zeros(1)}, {})
    assert resolve_checkpoint(tmp_path / "run") == ck / "last.safetensors"
    save_checkpoint(ck / "best.safetensors", {"w": torch.zeros(1)}, {})
    assert resolve_checkpoint(tmp_path / "run") == ck / "best.safetensors"
    with pytest.raises(CheckpointError, match="no checkpoints"):
        resolve_checkpoint(tmp_path)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.lin = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.A_log = nn.Parameter(torch.zeros(4))

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


def test_param_groups_follow_the_official_rule() -> None:
    net = _Net()
    decay, no_decay = param_groups(net.named_parameters(), 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert [p is net.lin.weight for p in decay["params"]] == [True]
    assert {id(p) for p in no_decay["params"]} == {
        id(net.lin.bias),
        id(net.norm.weight),
        id(net.norm.bias),
        id(net.A_log),
    }


def test_lr_steps_down_at_80_percent_of_iterations() -> None:
    cfg = TrainConfig(lr=0.01)
    assert [lr_at(i, 10, cfg) for i in (0, 7, 8, 9)] == [
        0.01,
        0.01,
        pytest.approx(0.001),
        pytest.approx(0.001),
    ]


def test_optimizer_state_flattens_without_pickle() -> None:
    net = _Net()
    opt = build_optimizer(net, TrainConfig())
    net.lin(torch.randn(2, 3)).sum().backward()
    net.A_log.grad = torch.ones(4)
    opt.step()
    index, tensors = flatten_optimizer_state(opt)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    fresh = build_optimizer(_Net(), TrainConfig())
    fresh.load_state_dict(unflatten_optimizer_state(index, tensors))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid, state in a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["state"][pid][key]), (pid, key)
            assert value.dtype == b["state"][pid][key].dtype


def test_rng_state_roundtrip_and_epoch_order() -> None:
    info, tensors = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(info, tensors)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    a = torch.randperm(10, generator=epoch_generator(1, 2))
    assert torch.equal(a, torch.randperm(10, generator=epoch_generator(1, 2)))
    assert not torch.equal(a, torch.randperm(10, generator=epoch_generator(1, 3)))
