"""The ``train.ddp_*`` options: checked like every option, and passed to DistributedDataParallel.

The spawned test runs 2 gloo processes on the CPU: each option set builds the tiny MambaAD, wraps it
with the trainer's ``_wrap_ddp`` and takes one SGD step on its half of a batch. gloo all-reduces bf16
and fp16, so the compression hooks run for real here; NCCL-only behaviour (bucket timing, speed) is
what ``benchmarks/bench_ddp.py --variants`` measures on GPUs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from mambaad.config import RunConfig, load_config, split_dotted_args
from mambaad.engine import distributed as dist
from mambaad.engine.trainer import _wrap_ddp, build_model
from mambaad.errors import ConfigError
from tiny_run import TINY_RUN

LR = 0.01
OPTION_SETS: dict[str, list[str]] = {
    "defaults": [],
    "bucket": ["train.ddp_bucket_mb=0.5", "train.ddp_static_graph=true"],
    "views": ["train.ddp_gradient_as_bucket_view=true", "train.ddp_broadcast_buffers=false"],
    "bf16": ["train.ddp_comm_hook=bf16"],
    "fp16": ["train.ddp_comm_hook=fp16"],
}
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _cfg(extra: list[str]) -> RunConfig:
    return load_config(None, [*TINY_RUN, "model.drop_path_rate=0", *extra])


def _model_and_batch(extra: list[str]) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(_cfg(extra))
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # (4, 3, 64, 64)
    return model, images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: Path) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    os.environ["LOCAL_RANK"] = str(rank)
    device = dist.init_from_env(torch.device("cpu"))
    report: dict[str, dict] = {}
    for name, extra in OPTION_SETS.items():
        model, images = _model_and_batch(extra)
        dist.convert_sync_batchnorm(model, device)
        ddp = _wrap_ddp(model, device, _cfg(extra))
        params = [p for _, p in model.trainable_parameters()]
        opt = torch.optim.SGD(params, lr=LR)
        model.train()
        ddp(images[2 * rank : 2 * rank + 2]).backward()  # this rank's half of the batch
        grads = torch.cat([p.grad.flatten() for p in params])
        opt.step()
        flat = torch.cat([p.detach().flatten() for p in params])
        other = [torch.zeros_like(flat) for _ in range(2)]
        tdist.all_gather(other, flat)
        info = ddp._get_ddp_logging_data()
        report[name] = {
            "bucket_cap_bytes": ddp.bucket_bytes_cap,
            "static_graph": bool(ddp.static_graph),
            "gradient_as_bucket_view": bool(ddp.gradient_as_bucket_view),
            "broadcast_buffers": bool(ddp.broadcast_buffers),
            "comm_hook": info.get("comm_hook", ""),
            "ranks_equal": bool(torch.equal(other[0], other[1])),
            "grads_rounded": {k: bool(torch.equal(grads.to(t).float(), grads)) for k, t in HALF.items()},
        }
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out / f"{name}.pt")
        del ddp
    if rank == 0:
        (out / "report.json").write_text(json.dumps(report))
    dist.shutdown()


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One spawn of 2 gloo processes runs every option set (spawning is the slow part)."""
    out = tmp_path_factory.mktemp("ddp_options")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    return out


def _single_process_step() -> dict[str, torch.Tensor]:
    model, images = _model_and_batch([])
    params = [p for _, p in model.trainable_parameters()]
    opt = torch.optim.SGD(params, lr=LR)
    model.train()
    model.training_loss(images).backward()
    opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_options_reach_ddp(ddp_runs: Path) -> None:
    report = json.loads((ddp_runs / "report.json").read_text())
    d = report["defaults"]
    assert d["bucket_cap_bytes"] == 25 * 2**20 and not d["static_graph"] and not d["gradient_as_bucket_view"]
    assert d["broadcast_buffers"] and d["comm_hook"] in ("", None)
    assert report["bucket"]["bucket_cap_bytes"] == 2**19 and report["bucket"]["static_graph"]
    assert report["views"]["gradient_as_bucket_view"] and not report["views"]["broadcast_buffers"]
    assert "bf16_compress_hook" in report["bf16"]["comm_hook"]
    assert "fp16_compress_hook" in report["fp16"]["comm_hook"]
    assert all(r["ranks_equal"] for r in report.values()), report


def test_compress_hooks_round_the_averaged_gradients(ddp_runs: Path) -> None:
    """bf16 / fp16 hooks all-reduce in that precision: every averaged gradient is representable in it."""
    report = json.loads((ddp_runs / "report.json").read_text())
    assert report["bf16"]["grads_rounded"]["bf16"] and report["fp16"]["grads_rounded"]["fp16"]
    assert not any(report["defaults"]["grads_rounded"].values())  # fp32 all-reduce: not rounded


@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_every_option_set_trains_like_one_process(ddp_runs: Path, name: str) -> None:
    """One DDP step equals one single-process step on the whole batch (hooks: up to their rounding)."""
    single = _single_process_step()
    ddp = torch.load(ddp_runs / f"{name}.pt")
    tol = {"rtol": 1e-4, "atol": 1e-6} if name not in HALF else {"rtol": 1e-3, "atol": 2e-4}
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], **tol, msg=k)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.ddp_bucket_mb=0", "train.ddp_bucket_mb must be a finite number > 0"),
        ("train.ddp_bucket_mb=-5", "train.ddp_bucket_mb must be a finite number > 0"),
        ("train.ddp_bucket_mb=inf", "train.ddp_bucket_mb must be a finite number > 0"),
        ("train.ddp_bucket_mb=big", "train.ddp_bucket_mb"),
        ("train.ddp_comm_hook=int8", "train.ddp_comm_hook must be one of none, bf16, fp16"),
        ("train.ddp_static_graph=maybe", "train.ddp_static_graph"),
        ("train.ddp_gradient_as_bucket_view=2", "train.ddp_gradient_as_bucket_view"),
        ("train.ddp_broadcast_buffers=x", "train.ddp_broadcast_buffers"),
    ],
)
def test_bad_ddp_options_are_one_line_config_errors(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_ddp_options_from_the_command_line() -> None:
    rest, overrides = split_dotted_args(["--train.ddp_bucket_mb", "50", "--train.ddp_comm_hook=bf16"])
    cfg = load_config(None, overrides)
    assert rest == [] and cfg.train.ddp_bucket_mb == 50.0 and cfg.train.ddp_comm_hook == "bf16"


def test_ddp_kwargs_pass_only_non_defaults() -> None:
    assert dist.ddp_kwargs(_cfg([]).train) == {}  # exactly PyTorch's DDP, 1 MiB first bucket included
    assert dist.describe_ddp(_cfg([]).train) == ""
    train = _cfg(["train.ddp_bucket_mb=50", "train.ddp_broadcast_buffers=false"]).train
    kwargs = dist.ddp_kwargs(train)
    assert kwargs["bucket_cap_mb"] == 50.0
    assert False in (kwargs.get("forward_sync_buffers"), kwargs.get("broadcast_buffers"))
    assert dist.describe_ddp(train) == "bucket_mb=50.0, broadcast_buffers=False"
    assert dist.comm_hook("none") is None


def test_bench_ddp_script_runs_every_part_on_cpu() -> None:
    """benchmarks/bench_ddp.py (one process, tiny model): each part prints its line; a bad part is an error
    line, not the end of the run (the 2-process GPU run is `bash benchmarks/bench_ddp.sh --diagnose`)."""
    root = Path(__file__).resolve().parents[2]
    tiny = [o for o in TINY_RUN if not o.startswith(("data.", "train.batch_size"))]
    cmd = [
        sys.executable,
        str(root / "benchmarks" / "bench_ddp.py"),
        "--per-gpu-batch",
        "1",
        "--image-size",
        "64",
    ]
    cmd += ["--steps", "1", "--warmup", "0", "--breakdown", "--breakdown-steps", "1", "--allreduce"]
    cmd += [
        "--variants",
        "defaults,nope",
        "--variant-steps",
        "1",
        "--variant-warmup",
        "0",
        "--sync-debug",
        *tiny,
    ]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    parts = {r["part"] for r in rows}
    assert {"env", "model", "throughput", "breakdown", "profile_summary", "variant", "done"} <= parts
    assert set(next(r for r in rows if r["part"] == "breakdown")["phases"]) == {
        "forward",
        "backward",
        "clip",
        "optimizer",
    }
    assert next(r for r in rows if r["part"] == "throughput")["img_per_s"] > 0
    assert [r["name"] for r in rows if r["part"] == "variant" and "error" not in r] == ["defaults"]
    assert any(r["part"] == "variant" and "unknown variant" in r.get("error", "") for r in rows)
    skipped = {r["part"]: r["skipped"] for r in rows if "skipped" in r}
    assert "allreduce" in skipped and "sync_debug" in skipped  # one process / no CUDA here


def test_bench_ddp_setup_compiles_when_the_config_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_ddp.py builds its step as the trainer does, ``train.compile`` included (its GPU figures with
    ``train.compile=true`` were eager before: 259.6 img/s, the eager figure, on an H200 in session 9)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ddp.py"
    spec = importlib.util.spec_from_file_location("bench_ddp_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    seen: list[torch.nn.Module] = []
    monkeypatch.setattr(bench, "compile_forward", lambda m: seen.append(m) or m)
    tiny = [o for o in TINY_RUN if not o.startswith("data.")]
    for flag, calls in (("false", 0), ("true", 1)):
        cfg = load_config(None, [*tiny, "train.cuda_graph=false", f"train.compile={flag}"])
        setup = bench.build_setup(cfg, torch.device("cpu"), 1, 64)
        assert len(seen) == calls
    assert seen[0] is setup.model
