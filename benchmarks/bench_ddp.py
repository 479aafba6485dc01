"""DDP training throughput and where its time goes, on synthetic batches at a fixed per-GPU batch.

    python -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/bench_ddp.py --per-gpu-batch 16

Each step is the engine's: SyncBN in the trainable BatchNorm layers, DDP gradient all-reduce (with the
``train.ddp_*`` options), gradient clipping and AdamW, replayed from a CUDA graph as the trainer does on CUDA
(``train.cuda_graph``; the ``eager`` variants and ``--breakdown`` launch every kernel from Python). Rank 0 prints one JSON line per result, each with a
``part`` key. Also runs as a single process (world of 1, no DDP) for the 1-GPU baseline, and on the CPU
(gloo) for a smoke check. Random images are enough for speed: the data loader is not what is measured.

Parts (each in its own try/except, so one failure keeps the others' lines):

- ``throughput`` (on unless ``--no-throughput``): images per second over ``--steps`` steps.
- ``--allreduce``: all_reduce time and bus bandwidth for buffers of 4 KiB, 1 MiB, 25 MiB and the model's
  gradient size, fp32 and bf16 (how the GPUs are linked), plus ``can_device_access_peer(0, 1)``.
- ``--breakdown``: per-phase host and device time of a step (forward, backward with DDP's all-reduce,
  clip, optimizer) and, from torch.profiler, the communication kernels (NCCL / gloo), the SyncBatchNorm
  ops and DDP's own host-side work; ``--profile`` adds the top-15 kernels by time.
- ``--sync-debug``: host synchronisations per step (``torch.cuda.set_sync_debug_mode("warn")``) and the
  code locations that cause them.
- ``--variants [NAMES]``: throughput of each variant (DDP options, no SyncBN, no gradient all-reduce)
  in one go; ``--variants list`` prints the names.

Dotted overrides (``train.ddp_bucket_mb=50``, ``model.scan_backend=triton``) apply to every part.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as tdist

from mambaad.config import RunConfig, apply_overrides, load_config
from mambaad.engine import distributed as dist
from mambaad.engine.evaluator import autocast_context
from mambaad.engine.optim import build_optimizer
from mambaad.engine.step import TrainStep, compile_forward, prepare_nccl_for_capture, use_cuda_graph
from mambaad.engine.trainer import build_model, build_train_step, resolve_device

# name -> (dotted overrides, SyncBN on, gradient all-reduce on); diagnosis variants are not training modes
VARIANTS: dict[str, tuple[list[str], bool, bool]] = {
    "defaults": ([], True, True),
    "bucket_10": (["train.ddp_bucket_mb=10"], True, True),
    "bucket_50": (["train.ddp_bucket_mb=50"], True, True),
    "bucket_100": (["train.ddp_bucket_mb=100"], True, True),
    "bf16_hook": (["train.ddp_comm_hook=bf16"], True, True),
    "static_graph": (["train.ddp_static_graph=true"], True, True),
    "grad_as_bucket_view": (["train.ddp_gradient_as_bucket_view=true"], True, True),
    "no_broadcast_buffers": (["train.ddp_broadcast_buffers=false"], True, True),
    "batched_grad_copy": (["train.ddp_batched_grad_copy=true"], True, True),
    "combined": (
        [
            "train.ddp_comm_hook=bf16",
            "train.ddp_static_graph=true",
            "train.ddp_gradient_as_bucket_view=true",
            "train.ddp_broadcast_buffers=false",
        ],
        True,
        True,
    ),
    "allreduce_sync_bn": (["train.ddp_sync_bn=allreduce"], True, True),  # ours: no host syncs
    "views_no_broadcast": (
        ["train.ddp_gradient_as_bucket_view=true", "train.ddp_broadcast_buffers=false"],
        True,
        True,
    ),
    "eager": (["train.cuda_graph=false"], True, True),  # every kernel launched from Python, as before
    "eager_static_graph": (["train.cuda_graph=false", "train.ddp_static_graph=true"], True, True),
    "no_sync_bn": ([], False, True),  # diagnosis: plain BatchNorm (per-rank statistics)
    "no_grad_allreduce": ([], True, False),  # diagnosis: ddp.no_sync(), gradients stay local
    "defaults_again": ([], True, True),  # the spread of the two defaults runs is the noise
}
COMM_KEYS = ("nccl", "gloo", "all_reduce", "allreduce", "all_gather", "allgather", "broadcast")
SYNC_BN_KEYS = ("batch_norm", "syncbatch")  # SyncBN's ops and kernels; the frozen encoder's BN shows too
DDP_KEYS = ("distributeddataparallel", "reducer")


def emit(part: str, **fields: Any) -> None:
    """One JSON line from rank 0 (errors from every rank, tagged with it)."""
    if dist.is_main_process() or "error" in fields:
        print(json.dumps({"part": part, "rank": dist.get_rank(), **fields}), flush=True)


def run_part(name: str, fn: Callable[[], None], device: torch.device) -> None:
    """Run one part; a failure becomes an ``error`` line instead of ending the script.

    Python and PyTorch warnings raised meanwhile (e.g. DDP's "Grad strides do not match bucket view
    strides") are reported once per message, with where they came from.
    """
    t0 = time.perf_counter()
    records: list[tuple[str, list[traceback.FrameSummary]]] = []
    try:
        with recording_warnings(records):
            fn()
    except Exception as err:  # one part's failure must not lose the other parts' output
        tail = traceback.format_exc().strip().splitlines()[-6:]
        first = str(err).splitlines()[0][:300] if str(err) else ""
        emit(name, error=f"{type(err).__name__}: {first}", tb=tail)
    seen = Counter(" ".join(msg.split())[:400] for msg, _ in records if "synchroniz" not in msg.lower())
    if seen:
        emit("warnings", of=name, messages=[{"msg": m, "count": n} for m, n in seen.most_common(5)])
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    dist.barrier()
    emit("timing", of=name, seconds=round(time.perf_counter() - t0, 1))


def _caller_stack() -> list[traceback.FrameSummary]:
    """The Python stack without the warnings machinery and this recorder's own frames."""
    stack = traceback.extract_stack()
    skip = ("<lambda>", "_caller_stack")
    return [f for f in stack if not f.filename.endswith("warnings.py") and f.name not in skip]


@contextlib.contextmanager
def recording_warnings(records: list[tuple[str, list[traceback.FrameSummary]]]) -> Iterator[None]:
    """Record every warning (each occurrence) with the Python stack at the time it was raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: records.append((str(msg), _caller_stack()))
        yield


# ------------------------------------------------------------------------------------------ the step
@dataclass
class Setup:
    """One model, its optimizer and (world > 1) its DDP wrapper, ready to step on a fixed batch."""

    cfg: RunConfig
    device: torch.device
    model: torch.nn.Module
    ddp: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    images: torch.Tensor  # (B, 3, S, S)
    grad_sync: bool = True
    graph_step: TrainStep | None = None  # train.cuda_graph: the engine's captured step

    @property
    def min_warmup(self) -> int:
        """Steps before timing: a captured step needs its eager warm-up and the capturing step."""
        return self.graph_step.warmup + 1 if self.graph_step is not None else 0

    def step(self, mark: Callable[[str], None] = lambda _: None) -> None:
        """One training step as the trainer's loop does it; ``mark(phase)`` after each phase (a captured
        step has one phase, ``step``)."""
        if self.graph_step is not None:
            self.graph_step(self.images)
            mark("step")
            return
        cfg = self.cfg
        no_sync = (
            self.ddp.no_sync() if self.ddp is not None and not self.grad_sync else contextlib.nullcontext()
        )
        with no_sync:
            with autocast_context(self.device, cfg.train.bf16):
                loss = (
                    self.ddp(self.images) if self.ddp is not None else self.model.training_loss(self.images)
                )
            mark("forward")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            mark("backward")
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.train.grad_clip)
        mark("clip")
        self.optimizer.step()
        mark("optimizer")


def build_setup(
    cfg: RunConfig, device: torch.device, batch: int, size: int, sync_bn: bool = True, grad_sync: bool = True
) -> Setup:
    """Model (same seed on every rank), SyncBN when asked, ``train.compile``, optimizer, DDP with
    ``cfg.train.ddp_*``."""
    world = dist.get_world_size()
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1 and sync_bn:
        dist.convert_sync_batchnorm(model, device, cfg.train.ddp_sync_bn)
    if cfg.train.compile:  # as the trainer does: after SyncBN, before DDP wraps the model
        compile_forward(model)
    optimizer = build_optimizer(model, cfg.train)
    graph = grad_sync and use_cuda_graph(cfg.train.cuda_graph, model, device)  # no_sync() needs eager
    train_step, ddp = build_train_step(model, optimizer, cfg, device, graph)
    model.train()
    gen = torch.Generator().manual_seed(dist.get_rank())
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)  # (B, 3, S, S)
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    graph_step = train_step if graph else None
    return Setup(cfg, device, model, ddp, optimizer, train_step.params, images, grad_sync, graph_step)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(s: Setup, steps: int, warmup: int) -> float:
    """Seconds for ``steps`` steps after ``warmup`` ones, all ranks aligned at both ends."""
    for _ in range(max(warmup, s.min_warmup)):
        s.step()
    sync(s.device)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        s.step()
    sync(s.device)
    dist.barrier()
    return time.perf_counter() - t0


def throughput_fields(s: Setup, steps: int, seconds: float) -> dict[str, Any]:
    batch, world = s.images.shape[0], dist.get_world_size()
    return {
        "world_size": world,
        "per_gpu_batch": batch,
        "global_batch": batch * world,
        "image_size": s.images.shape[-1],
        "img_per_s": round(steps * batch * world / seconds, 1),
        "ms_per_step": round(1000 * seconds / steps, 2),
        "steps": steps,
    }


# --------------------------------------------------------------------------------------------- parts
def part_env(device: torch.device) -> None:
    """Versions, devices and NCCL settings: what the other figures depend on."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "world_size": dist.get_world_size(),
        "backend": tdist.get_backend() if dist.is_initialized() else None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_count": os.cpu_count(),
        "env": {
            k: v for k, v in os.environ.items() if k.startswith(("NCCL_", "TORCH_NCCL", "OMP_", "CUDA_VIS"))
        },
    }
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        info["cuda_devices"] = n
        version = torch.cuda.nccl.version()
        info["nccl_version"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        info["pci_bus_ids"] = [
            getattr(torch.cuda.get_device_properties(i), "pci_bus_id", None) for i in range(n)
        ]
        if n >= 2:
            info["can_device_access_peer_0_1"] = torch.cuda.can_device_access_peer(0, 1)
            info["can_device_access_peer_1_0"] = torch.cuda.can_device_access_peer(1, 0)
    emit("env", **info)


def _time_allreduce(buf: torch.Tensor, iters: int, device: torch.device) -> float:
    """Slowest rank's mean seconds per all_reduce of ``buf``, after 3 warm-up calls."""
    for _ in range(3):
        tdist.all_reduce(buf)
    sync(device)
    tdist.barrier()
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            tdist.all_reduce(buf)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000 / iters
    else:
        t0 = time.perf_counter()
        for _ in range(iters):
            tdist.all_reduce(buf)
        seconds = (time.perf_counter() - t0) / iters
    worst = torch.tensor([seconds], dtype=torch.float64, device=device)
    tdist.all_reduce(worst, op=tdist.ReduceOp.MAX)
    return float(worst.item())


def part_allreduce(device: torch.device, grad_numel: int) -> None:
    """all_reduce latency and bandwidth: busbw = bytes / time x 2 (n - 1) / n, as nccl-tests reports it."""
    world = dist.get_world_size()
    if world < 2:
        emit("allreduce", skipped="needs 2+ processes")
        return
    sizes = {"4KiB": 1024, "1MiB": 2**18, "25MiB": 25 * 2**18, "grad": grad_numel}  # fp32 elements
    for dtype in (torch.float32, torch.bfloat16):
        for name, numel in sizes.items():
            buf = torch.ones(numel, dtype=dtype, device=device)
            nbytes = buf.numel() * buf.element_size()
            iters = 50 if nbytes < 2**22 else 10
            seconds = _time_allreduce(buf, iters, device)
            algbw = nbytes / seconds / 1e9
            emit(
                "allreduce",
                buffer=name,
                dtype=str(dtype).removeprefix("torch."),
                mbytes=round(nbytes / 2**20, 3),
                ms=round(1000 * seconds, 3),
                algbw_gb_s=round(algbw, 3),
                busbw_gb_s=round(algbw * 2 * (world - 1) / world, 3),
            )
            del buf


def part_throughput(
    name: str, cfg: RunConfig, device: torch.device, args: argparse.Namespace, variant: str = "", **kw: Any
) -> None:
    """Images per second of ``cfg``'s step; ``kw``: steps, warmup and :func:`build_setup`'s switches."""
    steps, warmup = kw.pop("steps", args.steps), kw.pop("warmup", args.warmup)
    s = build_setup(cfg, device, args.per_gpu_batch, args.image_size, **kw)
    seconds = timed_steps(s, steps, warmup)
    extra = {
        "ddp": dist.describe_ddp(cfg.train) or "defaults",
        "sync_bn": kw.get("sync_bn", True),
        "cuda_graph": s.graph_step is not None,
    }
    if variant:
        extra = {"name": variant, **extra}
    if not kw.get("grad_sync", True):
        extra["grad_allreduce"] = False
    emit(name, **throughput_fields(s, steps, seconds), **extra, scan_backend=cfg.model.scan_backend)


class PhaseClock:
    """Host time and (CUDA) device time between the marks of one step."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, float, Any]] = []

    def __call__(self, phase: str) -> None:
        event = None
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
        self.marks.append((phase, time.perf_counter(), event))

    def phases(self) -> dict[str, tuple[float, float | None]]:
        """phase -> (host ms, device ms) from the previous mark (the first mark is 'start')."""
        out = {}
        for (_, t0, e0), (name, t1, e1) in zip(self.marks, self.marks[1:]):
            out[name] = (1000 * (t1 - t0), e0.elapsed_time(e1) if e0 is not None else None)
        return out


def _median_phases(clocks: list[PhaseClock]) -> dict[str, dict[str, float | None]]:
    per = [c.phases() for c in clocks]
    out: dict[str, dict[str, float | None]] = {}
    for name in per[0]:
        host = statistics.median(p[name][0] for p in per)
        devs = [p[name][1] for p in per if p[name][1] is not None]
        out[name] = {
            "host_ms": round(host, 2),
            "device_ms": round(statistics.median(devs), 2) if devs else None,
        }
    return out


def _rows(events: list[Any], keys: tuple[str, ...], steps: int) -> list[dict[str, Any]]:
    """Profiler key averages whose name contains one of ``keys`` (per step)."""
    rows = []
    for e in events:
        key = e.key.lower()
        if any(k in key for k in keys) and "broadcast_tensors" not in key:
            rows.append(
                {
                    "key": e.key[:90],
                    "count": round(e.count / steps, 1),
                    "host_ms": round(e.cpu_time_total / steps / 1000, 3),
                    "device_ms": round(getattr(e, "device_time_total", 0) / steps / 1000, 3),
                    "self_device_ms": round(getattr(e, "self_device_time_total", 0) / steps / 1000, 3),
                }
            )
    return sorted(rows, key=lambda r: -max(r["device_ms"], r["host_ms"]))[:20]


def part_breakdown(cfg: RunConfig, device: torch.device, args: argparse.Namespace) -> None:
    """Phases of an eager step (median of ``--breakdown-steps``), then a torch.profiler pass over 3 steps."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cfg = apply_overrides(cfg, ["train.cuda_graph=false"])  # phases need the eager step
    s = build_setup(cfg, device, args.per_gpu_batch, args.image_size, sync_bn=not args.no_sync_bn)
    for _ in range(args.warmup):
        s.step()
    sync(device)
    dist.barrier()
    clocks = []
    for _ in range(args.breakdown_steps):
        clock = PhaseClock(device)
        clock("start")
        s.step(clock)
        sync(device)  # each step alone, so a phase's device time is not the previous step's tail
        clocks.append(clock)
    phases = _median_phases(clocks)
    host_total = sum(p["host_ms"] for p in phases.values())
    dev = [p["device_ms"] for p in phases.values()]
    emit(
        "breakdown",
        world_size=dist.get_world_size(),
        ddp=dist.describe_ddp(cfg.train) or "defaults",
        sync_bn=not args.no_sync_bn,
        phases=phases,
        host_ms=round(host_total, 2),
        device_ms=round(sum(dev), 2) if None not in dev else None,
        note="one step at a time (synchronised after each), so the total exceeds a pipelined step",
    )

    steps = 3
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    dist.barrier()
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            s.step()
        sync(device)
    wall = (time.perf_counter() - t0) / steps
    events = list(prof.key_averages())
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    kernel_ms = sum(e.self_device_time_total for e in kernels) / steps / 1000
    comm_kernel_ms = sum(e.self_device_time_total for e in kernels if "nccl" in e.key.lower()) / steps / 1000
    emit(
        "profile_summary",
        step_wall_ms_profiled=round(1000 * wall, 2),
        kernel_ms=round(kernel_ms, 2),
        nccl_kernel_ms=round(comm_kernel_ms, 2),
        compute_kernel_ms=round(kernel_ms - comm_kernel_ms, 2),
        kernels_per_step=round(sum(e.count for e in kernels) / steps),
        note="NCCL kernel time includes waiting for the peer; compute < wall means the GPU idles",
    )
    emit("profile_comm", rows=_rows(events, COMM_KEYS, steps))
    emit("profile_sync_bn", rows=_rows(events, SYNC_BN_KEYS, steps))
    emit("profile_ddp_host", rows=_rows(events, DDP_KEYS, steps))
    if args.profile:
        top = kernels if kernels else [e for e in events if e.device_type == DeviceType.CPU]
        field = "self_device_time_total" if kernels else "self_cpu_time_total"
        top = sorted(top, key=lambda e: -getattr(e, field))[:15]
        emit(
            "profile_top15",
            by="cuda kernels" if kernels else "cpu ops",
            rows=[
                {
                    "key": e.key[:100],
                    "ms": round(getattr(e, field) / steps / 1000, 3),
                    "count": e.count // steps,
                }
                for e in top
            ],
        )


@contextlib.contextmanager
def _sync_warnings(records: list[tuple[str, list[traceback.FrameSummary]]]) -> Iterator[None]:
    """Warn (and record) at every synchronising CUDA call made inside the block."""
    with recording_warnings(records):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")


def _where(stack: list[traceback.FrameSummary]) -> str:
    """Innermost frames of the stack: up to 3 in mambaad / this script, then the innermost one overall."""
    ours = [f for f in reversed(stack) if "mambaad" in f.filename or "bench_ddp" in f.filename]
    short = [f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno}" for f in ours[:3]]
    inner = stack[-1] if stack else None
    if inner is not None and (not ours or inner is not ours[0]):
        short.append(f"(in {'/'.join(inner.filename.split('/')[-3:])}:{inner.lineno})")
    return " <- ".join(short)


def part_sync_debug(cfg: RunConfig, device: torch.device, args: argparse.Namespace) -> None:
    """Host syncs per step and where; a step without syncs lets the CPU run ahead of the GPU."""
    if device.type != "cuda":
        emit("sync_debug", skipped="needs CUDA (set_sync_debug_mode is a CUDA feature)")
        return
    s = build_setup(cfg, device, args.per_gpu_batch, args.image_size, sync_bn=not args.no_sync_bn)
    for _ in range(max(3, s.min_warmup)):  # first steps differ (DDP's bucket rebuild, lazy init)
        s.step()
    sync(device)
    steps = 3
    records: list[tuple[str, list[traceback.FrameSummary]]] = []
    with _sync_warnings(records):
        for _ in range(steps):
            s.step()
    sync(device)
    places = Counter(_where(stack) for msg, stack in records if "synchroniz" in msg.lower())
    emit(
        "sync_debug",
        syncs_per_step=round(sum(places.values()) / steps, 2),
        other_warnings=sorted({msg[:120] for msg, _ in records if "synchroniz" not in msg.lower()})[:5],
        where=[{"count_per_step": round(n / steps, 2), "at": at} for at, n in places.most_common(8)],
    )


def part_variants(base: RunConfig, device: torch.device, args: argparse.Namespace) -> None:
    names = list(VARIANTS) if args.variants == "all" else [n.strip() for n in args.variants.split(",")]
    for name in names:
        if name not in VARIANTS:
            emit("variant", name=name, error=f"unknown variant (known: {', '.join(VARIANTS)})")
            continue
        overrides, sync_bn, grad_sync = VARIANTS[name]

        def one(
            name: str = name,
            overrides: list[str] = overrides,
            sync_bn: bool = sync_bn,
            grad: bool = grad_sync,
        ):
            cfg = apply_overrides(base, overrides)
            kw = {"steps": args.variant_steps, "warmup": args.variant_warmup}
            part_throughput("variant", cfg, device, args, name, sync_bn=sync_bn, grad_sync=grad, **kw)

        run_part(f"variant {name}", one, device)


# ---------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-gpu-batch", type=int, default=16)
    p.add_argument(
        "--steps", type=int, default=40, help="timed steps of the throughput part (after --warmup)"
    )
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--config", default=None, help="YAML run config (default: the official recipe)")
    p.add_argument("--throughput", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--allreduce", action="store_true", help="all_reduce timings and peer access")
    p.add_argument("--breakdown", action="store_true", help="per-phase times and profiler rows of one step")
    p.add_argument("--breakdown-steps", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="with --breakdown: top-15 kernels by time")
    p.add_argument("--sync-debug", action="store_true", help="host syncs per step and where (CUDA)")
    p.add_argument(
        "--variants", nargs="?", const="all", default=None, help="all (default), NAME,NAME or list"
    )
    p.add_argument("--variant-steps", type=int, default=20)
    p.add_argument("--variant-warmup", type=int, default=5)
    p.add_argument("--no-sync-bn", action="store_true", help="plain BatchNorm (diagnosis only)")
    p.add_argument("--pg-timeout-s", type=int, default=180, help="collective timeout: a hung part fails")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.ddp_bucket_mb=50")
    return p.parse_intermixed_args()


def init(cfg: RunConfig, timeout_s: int) -> torch.device:
    """Join the torchrun group with a short collective timeout, so a hang ends the run in minutes."""
    device = resolve_device(cfg.train.device)
    if dist.env_world_size() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
            tdist.init_process_group("nccl", timeout=timedelta(seconds=timeout_s), device_id=device)
        else:
            tdist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    return dist.init_from_env(device)


def main() -> int:
    args = parse_args()
    if args.variants == "list":
        print(
            "\n".join(
                f"{n}: {' '.join(o) or '-'} sync_bn={b} grad_allreduce={g}"
                for n, (o, b, g) in VARIANTS.items()
            )
        )
        return 0
    cfg = load_config(args.config, ["model.encoder_weights=none", *args.overrides])
    if cfg.train.cuda_graph is not False:  # capturing DDP's all-reduce (the default on CUDA)
        prepare_nccl_for_capture()
    device = init(cfg, args.pg_timeout_s)
    t_start = time.perf_counter()
    run_part("env", lambda: part_env(device), device)
    grad_numel = 0

    def count() -> None:
        nonlocal grad_numel
        model = build_model(cfg)
        grad_numel = sum(q.numel() for _, q in model.trainable_parameters())
        emit(
            "model",
            trainable_params=grad_numel,
            trainable_tensors=len(model.trainable_parameters()),
            grad_mbytes_fp32=round(4 * grad_numel / 2**20, 2),
        )

    run_part("model", count, device)
    if args.allreduce and grad_numel:
        run_part("allreduce", lambda: part_allreduce(device, grad_numel), device)
    if args.throughput:
        run_part(
            "throughput",
            lambda: part_throughput("throughput", cfg, device, args, sync_bn=not args.no_sync_bn),
            device,
        )
    if args.breakdown:
        run_part("breakdown", lambda: part_breakdown(cfg, device, args), device)
    if args.variants:
        part_variants(cfg, device, args)
    if args.sync_debug:
        run_part("sync_debug", lambda: part_sync_debug(cfg, device, args), device)
    emit("done", seconds=round(time.perf_counter() - t_start, 1))
    dist.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
