"""Time the fused Triton hybrid scan against the gather + selective-scan path on MambaAD's stage shapes.

One call = encode (K=8 hybrid-scan gathers), selective scan, decode and K-sum: the whole scan part of one
SS2D, inputs in raster order. Shapes: K=8, N=16, hilbert orders; stage0 D=1024 8x8, stage1 D=512 16x16,
stage2 D=256 32x32, stage3 D=128 64x64; batch 16 and 1. Methods:

    triton          hybrid_selective_scan(..., backend="triton") (fused kernel, this package)
    torch-<name>    hybrid_selective_scan(..., backend="torch", scan_backend=<name>) for every CUDA-able
                    selective-scan backend (reference is a Python loop over L: slow, timed with few iters)
    mamba_ssm       gathers + mamba_ssm's CUDA selective_scan_fn + decode (the official path), if installed

Forward (no grad) and forward+backward are timed with CUDA events after warmup; peak memory is
torch.cuda.max_memory_allocated during the timed forward+backward minus the inputs.

    PYTHONPATH=src python benchmarks/bench_scan_gpu.py
    PYTHONPATH=src python benchmarks/bench_scan_gpu.py --batch 16 --methods triton mamba_ssm
    PYTHONPATH=src python benchmarks/bench_scan_gpu.py --sweep      # triton launch configs per stage
    PYTHONPATH=src python benchmarks/bench_scan_gpu.py --sweep-split  # step kernels' segment lengths
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable

import torch

from mambaad.scan import triton_scan
from mambaad.scan.orders import scan_orders
from mambaad.scan.selective_scan import list_backends
from mambaad.scan.triton_scan import hybrid_selective_scan

STAGES = [("stage0", 1024, 8, 8), ("stage1", 512, 16, 16), ("stage2", 256, 32, 32), ("stage3", 128, 64, 64)]
K, N = 8, 16


def inputs(b: int, d: int, length: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Random inputs in the memory layout SS2D gives the kernel: one pixel's channels (or states)
    contiguous, i.e. (B, L, D) / (B, K, L, D) / (B, K, L, N) storage viewed as the contract's shapes."""
    dev = "cuda"
    return [
        torch.randn(b, length, d, device=dev, dtype=dtype).transpose(1, 2),
        (torch.randn(b, K, length, d, device=dev, dtype=dtype) * 0.5).transpose(2, 3),
        -torch.arange(1, N + 1, device=dev, dtype=torch.float32).repeat(K * d, 1),
        (torch.randn(b, K, length, N, device=dev, dtype=dtype) * 0.5).transpose(2, 3),
        (torch.randn(b, K, length, N, device=dev, dtype=dtype) * 0.5).transpose(2, 3),
        torch.ones(K * d, device=dev),
        torch.full((K * d,), -4.0, device=dev),
    ]


def mamba_ssm_fn() -> Callable[..., torch.Tensor] | None:
    """The official path: K permuted copies, mamba_ssm's CUDA scan, un-permute, sum."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None

    def run(u, delta, A, B, C, D, bias, orders):
        b, d, length = u.shape
        idx = orders[None, :, None, :]
        u_seq = u[:, :, orders].transpose(1, 2).reshape(b, K * d, length)
        d_seq = delta.gather(3, idx.expand_as(delta)).reshape(b, K * d, length)
        b_seq = B.gather(3, idx.expand_as(B)).contiguous()
        c_seq = C.gather(3, idx.expand_as(C)).contiguous()
        ys = selective_scan_fn(u_seq, d_seq, A, b_seq, c_seq, D, None, bias, delta_softplus=True)
        inverse = torch.argsort(orders, dim=1)
        ys = ys.view(b, K, d, length)
        return ys.gather(3, inverse[None, :, None, :].expand_as(ys)).sum(1)

    return run


def time_ms(fn: Callable[[], object], iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def measure(method: Callable[..., torch.Tensor], xs: list[torch.Tensor], orders: torch.Tensor, iters: int):
    leaves = [x.detach().requires_grad_() for x in xs]
    grad = torch.randn(xs[0].shape, device="cuda")

    def fwd() -> None:
        with torch.no_grad():
            method(*xs, orders)

    def fwd_bwd() -> None:
        method(*leaves, orders).backward(grad)

    warm = 1 if iters <= 2 else 3
    t_f = time_ms(fwd, iters, warm)
    t_fb = time_ms(fwd_bwd, iters, warm)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fwd_bwd()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return t_f, t_fb, peak


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, nargs="*", default=[16, 1])
    parser.add_argument("--methods", nargs="*", default=None, help="default: every available method")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="u/delta/B/C")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--sweep", action="store_true", help="time triton launch configs instead")
    parser.add_argument("--sweep-fwd", action="store_true", help="time the seq forward's launch configs")
    parser.add_argument("--sweep-split", action="store_true", help="time the step kernels' segment lengths")
    triton_scan.add_tuning_arguments(parser, prefix="--")  # --stages, --gather, --maxnreg, --fwd
    args = parser.parse_args()
    triton_scan.apply_tuning_arguments(args)
    if not torch.cuda.is_available():
        print("bench_scan_gpu: needs a CUDA device", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    methods: dict[str, Callable[..., torch.Tensor]] = {
        "triton": lambda *a: hybrid_selective_scan(*a, backend="triton"),
        "triton-chunkfwd": lambda *a: hybrid_selective_scan(*a, backend="triton", fwd_kernel="chunk"),
        "triton-seqbwd": lambda *a: hybrid_selective_scan(*a, backend="triton", bwd_kernel="seq"),
        "triton-nosplit": lambda *a: hybrid_selective_scan(*a, backend="triton", fwd_kernel="seq", seg_len=0),
    }
    for name in list_backends():
        methods[f"torch-{name}"] = lambda *a, _n=name: hybrid_selective_scan(
            *a, backend="torch", scan_backend=_n
        )
    official = mamba_ssm_fn()
    if official is not None:
        methods["mamba_ssm"] = official
    if args.methods:
        methods = {k: v for k, v in methods.items() if k in args.methods}
    print(
        f"torch {torch.__version__}, {torch.cuda.get_device_name()}, inputs {args.dtype}, K={K} N={N}, "
        f"pipeline stages {triton_scan.PIPELINE_STAGES}"
    )
    if args.sweep:
        return sweep(args.batch, dtype, args.iters)
    if args.sweep_fwd:
        return sweep_fwd(args.batch, dtype, args.iters)
    if args.sweep_split:
        return sweep_split(args.batch, dtype, args.iters)
    print(f"{'stage':<7} {'B':>3} {'method':<16} {'fwd ms':>9} {'fwd+bwd ms':>11} {'peak MiB':>9}")
    for b, (stage, d, h, w) in itertools.product(args.batch, STAGES):
        orders = scan_orders("hilbert", h, w, K).cuda()
        xs = inputs(b, d, h * w, dtype)
        for name, method in methods.items():
            iters = 2 if name == "torch-reference" else args.iters
            if name == "mamba_ssm" and dtype != torch.float32:
                continue
            t_f, t_fb, peak = measure(method, xs, orders, iters)
            print(f"{stage:<7} {b:>3} {name:<16} {t_f:>9.3f} {t_fb:>11.3f} {peak:>9.0f}")
        del xs
        torch.cuda.empty_cache()
    return 0


def sweep(batches: list[int], dtype: torch.dtype, iters: int) -> int:
    """Forward+backward ms per backward launch config (block_d, chunk, num_warps): to pick the defaults.

    Larger block_d means fewer programs adding into dB/dC (each (b, k, n, pixel) receives D / block_d
    atomic adds); larger chunks mean fewer sequential steps but larger register tiles.
    """
    print(f"{'stage':<7} {'B':>3} {'block_d':>7} {'chunk':>5} {'warps':>5} {'fwd+bwd ms':>11}")
    for b, (stage, d, h, w) in itertools.product(batches, STAGES[1:]):
        orders = scan_orders("hilbert", h, w, K).cuda()
        xs = inputs(b, d, h * w, dtype)
        for block_d, chunk, warps in itertools.product([4, 8, 16, 32], [8, 16, 32], [2, 4]):
            if block_d * N * chunk > 8192 or block_d > d:
                continue

            def method(*a, _cfg=(block_d, chunk, warps)):
                return hybrid_selective_scan(
                    *a, backend="triton", block_d=_cfg[0], chunk=_cfg[1], num_warps=_cfg[2]
                )

            try:
                leaves = [x.detach().requires_grad_() for x in xs]
                grad = torch.randn(xs[0].shape, device="cuda")
                t_fb = time_ms(
                    lambda _m=method, _l=leaves, _g=grad, _o=orders: _m(*_l, _o).backward(_g), iters, 2
                )
            except Exception as err:  # resource limits of a config: report and go on
                print(f"{stage:<7} {b:>3} {block_d:>7} {chunk:>5} {warps:>5}  failed: {type(err).__name__}")
                continue
            print(f"{stage:<7} {b:>3} {block_d:>7} {chunk:>5} {warps:>5} {t_fb:>11.3f}", flush=True)
        del xs
        torch.cuda.empty_cache()
    return 0


def sweep_fwd(batches: list[int], dtype: torch.dtype, iters: int) -> int:
    """Forward-only ms of the step-by-step kernel per (fwd_block_d, unroll)."""
    print(f"{'stage':<7} {'B':>3} {'fwd_block_d':>11} {'unroll':>6} {'fwd ms':>9}")
    for b, (stage, d, h, w) in itertools.product(batches, STAGES):
        orders = scan_orders("hilbert", h, w, K).cuda()
        xs = inputs(b, d, h * w, dtype)
        for block_d, unroll in itertools.product([16, 32, 64], [1, 2, 4, 8]):
            if block_d > max(32, d):
                continue

            def fwd(_cfg=(block_d, unroll), _xs=xs, _orders=orders) -> None:
                with torch.no_grad():
                    hybrid_selective_scan(
                        *_xs, _orders, backend="triton", fwd_block_d=_cfg[0], unroll=_cfg[1], chunk=64
                    )

            try:
                t_f = time_ms(fwd, iters, 2)
            except Exception as err:  # resource limits of a config: report and go on
                print(f"{stage:<7} {b:>3} {block_d:>11} {unroll:>6}  failed: {type(err).__name__}")
                continue
            print(f"{stage:<7} {b:>3} {block_d:>11} {unroll:>6} {t_f:>9.3f}")
        del xs
        torch.cuda.empty_cache()
    return 0


def sweep_split(batches: list[int], dtype: torch.dtype, iters: int) -> int:
    """Forward and forward+backward ms of the step kernels per segment length (0 = one program per
    sequence), with the chunked forward for comparison; ``auto`` is the default policy's choice."""
    print(f"{'stage':<7} {'B':>3} {'seg_len':>8} {'n_seg':>5} {'unroll':>6} {'fwd ms':>9} {'fwd+bwd ms':>11}")
    for b, (stage, d, h, w) in itertools.product(batches, STAGES):
        orders = scan_orders("hilbert", h, w, K).cuda()
        xs = inputs(b, d, h * w, dtype)
        length = h * w
        segs = ["chunk", "auto", 0, 1024, 512, 256, 128, 64]
        for seg, unroll in itertools.product(segs, [8, 4, 2]):
            if (isinstance(seg, int) and seg >= length) or (seg == "chunk" and unroll != 8):
                continue
            opts = {"fwd_kernel": "chunk"} if seg == "chunk" else {"fwd_kernel": "seq", "unroll": unroll}
            opts["bwd_kernel"] = "seq"
            if isinstance(seg, int):
                opts["seg_len"] = seg
            n_seg = "-" if not isinstance(seg, int) else (-(-length // seg) if seg else 1)

            def method(*a, _o=opts):
                return hybrid_selective_scan(*a, backend="triton", **_o)

            try:
                t_f, t_fb, _ = measure(method, xs, orders, iters)
            except Exception as err:  # resource limits of a config: report and go on
                print(f"{stage:<7} {b:>3} {seg!s:>8} {n_seg!s:>5} {unroll:>6}  failed: {type(err).__name__}")
                continue
            print(
                f"{stage:<7} {b:>3} {seg!s:>8} {n_seg!s:>5} {unroll:>6} {t_f:>9.3f} {t_fb:>11.3f}", flush=True
            )
        del xs
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
