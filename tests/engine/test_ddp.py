"""DDP on the CPU (gloo, 2 processes): one step equals a single process on the concatenated batch,
and a `mambaad train --gpus 2` run writes its files from rank 0 only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from engine_helpers import as_cli, tiny_overrides

from mambaad.config import load_config
from mambaad.engine import distributed as dist
from mambaad.engine.checkpoint import load_checkpoint
from mambaad.engine.trainer import _wrap_ddp, build_model

SRC = Path(__file__).resolve().parents[2] / "src"
LR = 0.01


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_and_batch(data: Path, out: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    cfg = load_config(None, [*tiny_overrides(data, out), "model.drop_path_rate=0"])
    torch.manual_seed(0)
    model = build_model(cfg)
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # (4, 3, 64, 64)
    return model, images


def _sgd_step(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
    params = [p for _, p in model.trainable_parameters()]
    opt = torch.optim.SGD(params, lr=LR)
    model.train()
    loss_fn().backward()
    opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, port: int, data: Path, out: Path) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    os.environ["LOCAL_RANK"] = str(rank)
    device = dist.init_from_env(torch.device("cpu"))
    model, images = _model_and_batch(data, out)
    assert dist.convert_sync_batchnorm(model, device) > 0
    cfg = load_config(None, tiny_overrides(data, out))
    ddp = _wrap_ddp(model, device, cfg)
    state = _sgd_step(model, lambda: ddp(images[2 * rank : 2 * rank + 2]))  # this rank's half
    if rank == 0:
        torch.save(state, out / "ddp_state.pt")
    dist.shutdown()


def test_one_ddp_step_equals_single_process_on_the_whole_batch(synth_root: Path, tmp_path: Path) -> None:
    model, images = _model_and_batch(synth_root, tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    single = _sgd_step(model, lambda: model.training_loss(images))
    mp.spawn(_worker, args=(_free_port(), synth_root, tmp_path), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp_state.pt")
    assert single.keys() == ddp.keys()
    for k in single:  # weights after the SGD step and SyncBN running statistics alike
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-6, msg=k)
    moved = [k for k in single if k.startswith("decoder") and not torch.equal(single[k], before[k])]
    assert len(moved) > 10  # the step really changed the decoder
    assert single["bottleneck.fuse.bn.num_batches_tracked"].item() == 1


def _run_names(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*")}


def test_gpus_2_on_cpu_writes_from_rank_0_only(synth_root: Path, tmp_path: Path) -> None:
    """`mambaad train --gpus 2` (gloo on CPU): same files as a single run, each log line once, same loss."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    runs = {}
    for name, extra in (("single", []), ("ddp", ["--gpus", "2"])):
        out = tmp_path / name
        over = [*tiny_overrides(synth_root, out, epochs=1), "train.batch_size=8", "model.drop_path_rate=0"]
        cmd = [sys.executable, "-m", "mambaad", "train", *as_cli(over), "--no-progress", "--threads", "1"]
        proc = subprocess.run([*cmd, *extra], env=env, capture_output=True, text=True, timeout=110)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = out
        if name == "ddp":
            assert proc.stdout.count("| **mean** |") == 1  # only rank 0 prints the table
    assert _run_names(runs["ddp"]) == _run_names(runs["single"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]  # nothing written elsewhere
    log = (runs["ddp"] / "train.log").read_text().splitlines()
    assert (
        sum("epoch 1/1 loss" in line for line in log) == 1 and sum("eval epoch" in line for line in log) == 1
    )
    assert any("DDP: 2 processes (gloo), global batch 8 = 4 per process" in line for line in log)
    # one step over the same 8 images: equal loss and (up to Adam's sign of near-zero grads) weights
    losses = [
        float(
            next(x for x in (r / "train.log").read_text().split("\n") if "loss" in x)
            .split("loss ")[1]
            .split()[0]
        )
        for r in (runs["single"], runs["ddp"])
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    _, meta = load_checkpoint(runs["ddp"] / "checkpoints" / "last_state.safetensors")
    assert len(meta["rng_ranks"]) == 1  # rank 1's generators are kept for a resume


def test_gpus_checks_the_inputs_before_it_starts_the_ranks(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistake in the data or options of `--gpus 2` is one error line from the launching process; torchrun
    is never started (each rank printed it, then torchrun its own report)."""
    from mambaad import cli

    launched: list[list[str]] = []
    monkeypatch.setattr(cli, "launch_torchrun", lambda n, argv: launched.append(list(argv)) or 0)
    over = [*tiny_overrides(synth_root, tmp_path / "run", epochs=1), "train.batch_size=1000"]
    assert cli.main(["train", *as_cli(over), "--gpus", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: train.batch_size 1000 is larger than the")
    assert launched == [] and not (tmp_path / "run").exists()
    over = [*tiny_overrides(synth_root, tmp_path / "run", epochs=1), "train.batch_size=8"]
    assert cli.main(["train", *as_cli(over), "--gpus", "2"]) == 0
    assert len(launched) == 1 and "--gpus" not in launched[0]
