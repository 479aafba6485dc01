"""Time every selective-scan backend on MambaAD's real scan shapes (256x256 input), on CPU.

For each backend, stage and batch size: forward time and forward+backward time (minimum over repeats, which
is the figure least disturbed by other processes on a shared machine), then the whole-model scan time per
image, 3*t0 + 4*t1 + 6*t2 + 3*t3 (16 SS2D calls: 3/4/6/3 per stage), divided by the batch size.

    PYTHONPATH=src python benchmarks/bench_selective_scan.py
    PYTHONPATH=src python benchmarks/bench_selective_scan.py --batch 1 --backends chunked --chunk-size 32
    PYTHONPATH=src python benchmarks/bench_selective_scan.py --check   # y and grads vs reference, real shapes
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import time
from collections.abc import Callable

import torch

# the module, not the function of the same name that mambaad.scan re-exports
ss = importlib.import_module("mambaad.scan.selective_scan")

K, N = 8, 16
# (name, D channels per direction, L = H*W, SS2D calls per forward)
STAGES = [("s0", 1024, 64, 3), ("s1", 512, 256, 4), ("s2", 256, 1024, 6), ("s3", 128, 4096, 3)]


def make_inputs(bt: int, d: int, length: int, grad: bool) -> list[torch.Tensor]:
    """Inputs with MambaAD's init ranges: A = -[1..N], dt in [1e-3, 0.1], small raw delta."""
    kd = K * d
    g = torch.Generator().manual_seed(0)
    u = torch.randn(bt, kd, length, generator=g)
    delta = 0.1 * torch.randn(bt, kd, length, generator=g)
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(kd, 1)
    B = torch.randn(bt, K, N, length, generator=g)
    C = torch.randn(bt, K, N, length, generator=g)
    D = torch.ones(kd)
    dt = torch.exp(torch.empty(kd).uniform_(math.log(1e-3), math.log(0.1), generator=g))
    bias = dt + torch.log(-torch.expm1(-dt))
    tensors = [u, delta, A, B, C, D, bias]
    return [t.requires_grad_(grad) for t in tensors]


def best_time(fn: Callable[[], object], reps: int) -> float:
    """Minimum wall time in ms over ``reps`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def time_backend(
    scan: Callable[..., torch.Tensor], bt: int, d: int, length: int, reps: int, backward: bool = True
) -> tuple[float, float]:
    """(forward ms, forward+backward ms) for one shape."""
    inputs = make_inputs(bt, d, length, grad=False)
    with torch.no_grad():
        fwd = best_time(lambda: scan(*inputs), reps)
    if not backward:
        return fwd, float("nan")
    inputs = make_inputs(bt, d, length, grad=True)
    grad_out = torch.randn(bt, K * d, length)

    def fwd_bwd() -> None:
        torch.autograd.backward(scan(*inputs), grad_out)
        for t in inputs:
            t.grad = None

    return fwd, best_time(fwd_bwd, reps)


def check_parity(backends: list[str]) -> None:
    """Max relative error of y and of every input gradient vs the reference, all four stages at Bt=1."""
    names = ("y", "u", "delta", "A", "B", "C", "D", "delta_bias")
    for stage, d, length, _ in STAGES:
        inputs = make_inputs(1, d, length, grad=False)
        grad_out = torch.randn(1, K * d, length, generator=torch.Generator().manual_seed(1))
        results = {}
        for name in ["reference", *backends]:
            leaves = [t.clone().requires_grad_(True) for t in inputs]
            y = ss._get_backend(name)(*leaves)
            y.backward(grad_out)
            results[name] = [y.detach()] + [t.grad for t in leaves]
        for name in backends:
            errs = [
                ((x - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()
                for x, r in zip(results[name], results["reference"])
            ]
            worst = max(zip(errs, names))
            print(f"{stage} {name:<11} max rel err {worst[0]:.2e} ({worst[1]})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["reference", "chunked", "sequential"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--stages", nargs="+", default=[s[0] for s in STAGES])
    parser.add_argument("--chunk-size", type=int, default=None, help="override ss.CHUNK_SIZE for chunked")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--block", type=int, default=None, help="override ss.SEQUENTIAL_BLOCK")
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument("--check", action="store_true", help="parity of y and grads vs reference, then exit")
    parser.add_argument(
        "--max-ref-work",
        type=float,
        default=2e7,
        help="skip the reference where Bt*KD*L exceeds this (default: only stage 3 at Bt=8, minutes)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.block:
        ss.SEQUENTIAL_BLOCK = args.block
    if args.chunk_size:
        ss.CHUNK_SIZE["cpu"] = args.chunk_size
    if args.check:
        check_parity([b for b in args.backends if b != "reference"])
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(
        f"chunk size {ss.CHUNK_SIZE['cpu']}, sequential block {ss.SEQUENTIAL_BLOCK}, min of {args.reps} runs"
    )
    print(f"{'backend':<11}{'Bt':>3} {'stage':<6}{'KD':>6}{'L':>6}{'fwd ms':>10}{'fwd+bwd ms':>12}")
    for name in args.backends:
        scan = ss._get_backend(name)
        for bt in args.batch:
            totals = [0.0, 0.0]
            complete = True
            for stage, d, length, calls in STAGES:
                if stage not in args.stages:
                    complete = False
                    continue
                if name == "reference" and bt * K * d * length > args.max_ref_work:
                    print(f"{name:<11}{bt:>3} {stage:<6}{K * d:>6}{length:>6}{'skipped (too slow)':>22}")
                    complete = False
                    continue
                fwd, both = time_backend(scan, bt, d, length, args.reps, not args.forward_only)
                totals[0] += calls * fwd / bt
                totals[1] += calls * both / bt
                print(
                    f"{name:<11}{bt:>3} {stage:<6}{K * d:>6}{length:>6}{fwd:>10.1f}{both:>12.1f}", flush=True
                )
            if complete:
                print(
                    f"{name:<11}{bt:>3} whole model per image: fwd {totals[0]:.0f} ms, fwd+bwd {totals[1]:.0f} ms"
                )


if __name__ == "__main__":
    main()
