"""Throughput and peak memory of a model's training step and inference, on the current device.

Training step = forward + loss + backward + gradient clipping (5) + AdamW step, as the recipe.
Inference = forward + anomaly maps (cosine, upsampling, Gaussian) + image scores.
Timings synchronise the device around the timed loop only (never inside it), after warm-up steps.

    python -m mambaad.bench --device cuda --batch-size 16 --train --backend triton
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from mambaad.engine.optim import fused_adam_ok
from mambaad.engine.step import TrainStep, compile_forward, matmul_tf32
from mambaad.engine.trainer import resolve_device
from mambaad.errors import ConfigError, MambaADError
from mambaad.models.registry import create_model
from mambaad.scan import triton_scan


@dataclass
class BenchResult:
    mode: str  # train | infer
    backend: str
    batch_size: int
    image_size: int
    bf16: bool
    img_per_s: float
    ms_per_step: float
    peak_mem_gb: float | None  # CUDA only
    device: str
    cuda_graph: bool = False
    tf32: bool = False
    compiled: bool = False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    model: nn.Module,
    x: Tensor,
    *,
    train: bool,
    bf16: bool = False,
    cuda_graph: bool = False,
    tf32: bool = False,
) -> Callable[[], None]:
    """One training step (forward + loss + backward + clip 5 + AdamW, as the recipe) or one inference
    (``predict``: forward, anomaly maps, scores) on the batch ``x``; sets the model's train/eval mode.
    ``cuda_graph`` (training): the engine's :class:`~mambaad.engine.step.TrainStep` captures the step
    after its warm-up steps and replays it; ``tf32``: the fp32 matrix products on TF32 tensor cores
    (``train.tf32`` / ``eval.tf32``)."""
    model.train(train)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16)

    if train:
        params = [p for _, p in model.trainable_parameters()]
        optimizer = torch.optim.AdamW(params, lr=1e-4, fused=fused_adam_ok(params))
        train_step = TrainStep(
            model.training_loss, optimizer, params, 5.0, autocast, cuda_graph=cuda_graph, tf32=tf32
        )
        return lambda: train_step(x)

    def infer() -> None:
        with torch.no_grad(), autocast(), matmul_tf32(tf32):
            model.predict(x)

    return infer


def measure(
    model: nn.Module,
    *,
    train: bool,
    batch_size: int,
    image_size: int = 256,
    steps: int = 10,
    warmup: int = 3,
    bf16: bool = False,
    channels_last: bool = False,
    backend: str = "auto",
    cuda_graph: bool = False,
    tf32: bool = False,
) -> BenchResult:
    """Time ``steps`` training steps or inference batches on random normalised images.

    ``cuda_graph`` (CUDA only) captures one inference in a CUDA graph and replays it, as a deployment
    with a fixed input shape would (it removes the per-kernel launch cost of small batches), or the whole
    training step as ``train.cuda_graph`` does.
    """
    device = next(model.parameters()).device
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)
    graph = cuda_graph and device.type == "cuda"
    step = make_step(model, x, train=train, bf16=bf16, cuda_graph=graph, tf32=tf32)

    if device.type == "cuda":  # the peak includes the warm-up and any capture (a replay allocates nothing)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup + (1 if graph and train else 0)):  # training: + the step that captures
        step()
    _sync(device)
    if graph and not train:
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            step()
        step = captured.replay  # the timed loop replays the captured inference
        step()
        _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return BenchResult(
        "train" if train else "infer",
        backend,
        batch_size,
        image_size,
        bf16,
        batch_size * steps / elapsed,
        1000 * elapsed / steps,
        peak,
        torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        graph,
        tf32,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad bench`` (also ``python -m mambaad.bench``)."""
    p.add_argument("--model", default="mambaad")
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", action="append", help="scan backend(s), repeatable (default: auto)")
    p.add_argument("--batch-size", type=int, action="append", help="batch size(s), repeatable (default 16)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--train", action="store_true", help="time training steps")
    p.add_argument("--infer", action="store_true", help="time inference (default: both)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--tf32", action="store_true", help="fp32 matrix products on TF32 tensor cores")
    p.add_argument("--cuda-graph", action="store_true", help="replay the step from a CUDA graph")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the model's forward (the scan kernels stay out)"
    )
    p.add_argument("--triton-bwd", choices=["chunk", "seq"], help="backward kernel of the Triton scan")
    p.add_argument(
        "--triton-split",
        type=int,
        help="programs the Triton step kernels aim at by cutting L where programs are few (0: no split)",
    )
    triton_scan.add_tuning_arguments(p)  # --triton-stages / -gather / -maxnreg / -fwd
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", action="store_true", help="one JSON line per result")


def check_counts(args: argparse.Namespace) -> None:
    """Batch sizes and timed steps must be >= 1, warm-up steps >= 0: a ConfigError naming the option."""
    for option, values, least in (
        ("--batch-size", args.batch_size or [], 1),
        ("--steps", [args.steps], 1),
        ("--warmup", [args.warmup], 0),
        ("--image-size", [args.image_size], 1),
    ):
        for value in values:
            if value < least:
                raise ConfigError(f"{option} must be >= {least}, got {value}")


def run(args: argparse.Namespace) -> int:
    """Measure every (backend, mode, batch size) combination and print one line each."""
    modes = [m for m, on in (("train", args.train), ("infer", args.infer)) if on] or ["train", "infer"]
    check_counts(args)
    device = resolve_device(args.device, "--device")
    triton_scan.apply_tuning_arguments(args)
    triton_scan.BWD_KERNEL = args.triton_bwd or triton_scan.BWD_KERNEL
    if args.triton_split is not None:
        triton_scan.ROW_SPLIT_PROGRAMS = triton_scan.BWD_SPLIT_PROGRAMS = args.triton_split
    for backend in args.backend or ["auto"]:
        model = create_model(args.model, encoder=args.encoder, scan_backend=backend).to(device)
        if args.compile:
            compile_forward(model)
        for mode in modes:
            for bs in args.batch_size or [16]:
                r = measure(
                    model,
                    train=mode == "train",
                    batch_size=bs,
                    image_size=args.image_size,
                    steps=args.steps,
                    warmup=args.warmup,
                    bf16=args.bf16,
                    channels_last=args.channels_last,
                    backend=backend,
                    cuda_graph=args.cuda_graph,
                    tf32=args.tf32,
                )
                r.compiled = args.compile
                if args.json:
                    print(json.dumps(asdict(r)), flush=True)
                else:
                    mem = f"{r.peak_mem_gb:.2f} GB" if r.peak_mem_gb is not None else "-"
                    print(
                        f"{r.mode:5s} backend={backend:10s} bs={bs:3d} bf16={int(r.bf16)} "
                        f"graph={int(r.cuda_graph)} tf32={int(r.tf32)} compile={int(r.compiled)} "
                        f"{r.img_per_s:9.2f} img/s {r.ms_per_step:9.1f} ms/step peak {mem} ({r.device})",
                        flush=True,
                    )
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mambaad.bench``: a bad option is one ``error:`` line and exit status 1, as in ``mambaad``."""
    p = argparse.ArgumentParser(prog="python -m mambaad.bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except MambaADError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
