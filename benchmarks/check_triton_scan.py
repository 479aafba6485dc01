"""GPU correctness check of the fused Triton hybrid scan against the gather + selective-scan yardstick.

For random shapes (odd lengths, non-square grids, partial channel blocks) and MambaAD's four decoder stage
shapes at batch 16 (K=8, N=16: D=1024 L=64, D=512 L=256, D=256 L=1024, D=128 L=4096), compares the
forward output (also without autograd) and the gradients of u, delta, A, B, C, D and delta_bias (same
upstream gradient) with ``hybrid_selective_scan_torch`` in float64 (float32 for L=4096, where a float64
autograd graph of the sequential reference would not fit). Also checks bf16 inputs (kernel state in fp32)
against the reference on the same bf16-rounded values. Prints max abs and relative (max abs / max |ref|)
errors per tensor and PASS/FAIL; exits 1 on any FAIL.

    PYTHONPATH=src python benchmarks/check_triton_scan.py              # everything (< 2 min on an H100)
    PYTHONPATH=src python benchmarks/check_triton_scan.py --quick      # random shapes only
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from mambaad.scan import triton_scan
from mambaad.scan.orders import scan_orders
from mambaad.scan.selective_scan import list_backends
from mambaad.scan.triton_scan import hybrid_selective_scan

NAMES = ["u", "delta", "A", "B", "C", "D", "delta_bias"]
DEVICE = "cuda"  # "cpu" only with TRITON_INTERPRET=1 (a smoke test of this script)
STAGES = [(1024, 8, 8), (512, 16, 16), (256, 32, 32), (128, 64, 64)]  # (D, H, W)


def make_inputs(
    b: int, k: int, d: int, n: int, length: int, device: str, dtype: torch.dtype, seed: int, rank: int = 0
) -> list[torch.Tensor]:
    """Inputs with MambaAD's statistics: S4D-real A, softplus-inverse dt bias in [1e-3, 0.1]. With a
    ``rank``, delta is SS2D's low-rank dt (B, K, R, L) (a view of (B, K, L, R) memory) and an 8th input is
    the dt_proj weight (K, D, R)."""
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    dt = torch.exp(torch.rand(k * d, generator=g, dtype=torch.float64) * math.log(100) + math.log(1e-3))
    xs = [
        rnd(b, d, length),  # u
        rnd(b, k, d, length) * 0.5,  # delta (pre-bias, pre-softplus)
        -torch.arange(1, n + 1, dtype=torch.float64).repeat(k * d, 1),  # A
        rnd(b, k, n, length) * 0.5,  # B
        rnd(b, k, n, length) * 0.5,  # C
        torch.ones(k * d, dtype=torch.float64) + 0.1 * rnd(k * d),  # D
        dt + torch.log(-torch.expm1(-dt)),  # delta_bias
    ]
    if rank:
        xs[1] = rnd(b, k, length, rank).transpose(2, 3) * 0.5
        xs.append(rnd(k, d, rank) * rank**-0.5)
    return [x.to(device=device, dtype=dtype) for x in xs]


def errors(a: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    diff = (a.double() - ref.double()).abs().max().item()
    scale = ref.abs().max().item()
    return diff, diff / (scale if scale > 0 else 1.0)


def check_case(
    label: str,
    b: int,
    k: int,
    d: int,
    n: int,
    h: int,
    w: int,
    curve: str,
    in_dtype: torch.dtype,
    inner: str,
    tol_y: float,
    tol_grad: float,
    seed: int,
    rank: int = 0,
) -> bool:
    length = h * w
    orders = scan_orders(curve, h, w, k).to(DEVICE)
    base = make_inputs(b, k, d, n, length, DEVICE, torch.float64, seed, rank)
    ref_dtype = torch.float64 if length <= 1024 else torch.float32
    kernel_in = [x.to(in_dtype).requires_grad_() for x in base]
    ref_in = [x.to(in_dtype).to(ref_dtype).requires_grad_() for x in base]  # same (rounded) values
    t0 = time.perf_counter()
    low_rank = {"dt_weight": kernel_in[7]} if rank else {}
    y = hybrid_selective_scan(*kernel_in[:7], orders, backend="triton", **low_rank)
    grad = torch.randn_like(y)
    y.backward(grad)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    t_kernel = time.perf_counter() - t0
    ref_args = list(ref_in[:7])
    if rank:  # delta = dt_proj(dt), differentiated through
        ref_args[1] = torch.einsum("bkrl,kdr->bkdl", ref_in[1], ref_in[7])
    ref = hybrid_selective_scan(*ref_args, orders, backend="torch", scan_backend=inner)
    ref.backward(grad.to(ref_dtype))
    with torch.no_grad():  # inference: no states saved
        plain = [x.detach() for x in kernel_in]
        low_rank = {"dt_weight": plain[7]} if rank else {}
        y_nograd = hybrid_selective_scan(*plain[:7], orders, backend="triton", **low_rank)
    ok = True
    rows = [("y", *errors(y, ref), tol_y)]
    rows += [("y no-grad", *errors(y_nograd, ref), tol_y)]
    names = [*NAMES, "dt_weight"] if rank else NAMES
    rows += [(nm, *errors(a.grad, r.grad), tol_grad) for nm, a, r in zip(names, kernel_in, ref_in)]
    print(
        f"{label}: B={b} K={k} D={d} N={n} {h}x{w} (L={length}) {curve} in={str(in_dtype)[6:]} "
        f"{f'rank {rank} ' if rank else ''}"
        f"ref={inner}/{str(ref_dtype)[6:]} kernel {t_kernel * 1e3:.0f} ms (incl. compile)"
    )
    for name, abs_err, rel_err, tol in rows:
        good = rel_err <= tol and math.isfinite(rel_err)
        ok &= good
        print(f"    {name:<10} max abs {abs_err:.3e}  rel {rel_err:.3e}  {'PASS' if good else 'FAIL'}")
    del y, ref, kernel_in, ref_in
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return ok


def check_projection(label: str, b: int, length: int, din: int, k: int, c: int, dtype: torch.dtype) -> bool:
    """SS2D's x_proj as the Triton kernel (``triton_scan.direction_projection``, 16-bit, no autograd)
    against the fp64 product of the same rounded inputs: relative to the largest value."""
    x = torch.randn(b, din, length, 1, device=DEVICE).to(dtype).permute(0, 2, 3, 1).reshape(b, length, din)
    w = (torch.randn(k, c, din, device=DEVICE) / din**0.5).to(dtype)
    with torch.no_grad():
        out = triton_scan.direction_projection(x, w)
    ref = torch.einsum("bld,kcd->bklc", x.double(), w.double())
    rel = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    ok = out.dtype == torch.float32 and out.is_contiguous() and rel < 1e-5
    print(f"{label:16s} x_proj kernel {str(dtype)[6:]:9s} fp32 out rel {rel:.2e}  {'ok' if ok else 'FAIL'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="random shapes only, no stage shapes")
    parser.add_argument("--bwd-kernel", default=None, choices=["chunk", "seq"], help="backward kernel")
    parser.add_argument(
        "--split", type=int, default=None, help="ROW_ and BWD_SPLIT_PROGRAMS of the step kernels (0: off)"
    )
    parser.add_argument("--min-segment", type=int, default=None, help="MIN_SEGMENT of the step kernels")
    triton_scan.add_tuning_arguments(parser, prefix="--")  # --stages, --gather, --maxnreg, --fwd
    parser.add_argument("--inner", default=None, help="selective-scan backend of the yardstick")
    parser.add_argument("--only", nargs="*", default=None, help="run only these case labels")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only with TRITON_INTERPRET=1")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    triton_scan.BWD_KERNEL = args.bwd_kernel or triton_scan.BWD_KERNEL
    if args.split is not None:
        triton_scan.ROW_SPLIT_PROGRAMS = triton_scan.BWD_SPLIT_PROGRAMS = args.split
    if args.min_segment is not None:
        triton_scan.MIN_SEGMENT = args.min_segment
    triton_scan.apply_tuning_arguments(args)
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("check_triton_scan: needs a CUDA device", file=sys.stderr)
        return 2
    inner = args.inner or ("chunked" if "chunked" in list_backends() else "reference")
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (triton interpreter)"
    print(
        f"torch {torch.__version__}, device {name}, yardstick backend {inner}, backward "
        f"{triton_scan.BWD_KERNEL}, split to {triton_scan.ROW_SPLIT_PROGRAMS} / {triton_scan.BWD_SPLIT_PROGRAMS} "
        "programs (forward / backward), "
        f"segments >= {triton_scan.MIN_SEGMENT} steps, stages {triton_scan.PIPELINE_STAGES}, "
        f"gather modes {triton_scan.GATHER_MODE}, "
        f"register caps {triton_scan.MAX_REGISTERS}"
    )
    f32, bf16 = torch.float32, torch.bfloat16
    cases = [
        ("rand-L1", 2, 8, 5, 16, 1, 1, "hilbert", f32),
        ("rand-odd", 3, 8, 37, 16, 7, 9, "hilbert", f32),
        ("rand-odd2", 1, 4, 70, 5, 5, 13, "zigzag", f32),
        ("rand-K2", 2, 2, 16, 16, 11, 11, "scan", f32),
        ("rand-14x14", 2, 8, 96, 16, 14, 14, "hilbert", f32),
        ("rand-bf16", 2, 8, 48, 16, 9, 15, "hilbert", bf16),
        # SS2D's low-rank dt: dt_proj inside the step forward (rank <= ROW_LOW_RANK) or before it
        ("rand-rank4", 2, 8, 40, 16, 9, 15, "hilbert", f32, 4),
        ("rand-rank3-odd", 3, 4, 37, 16, 7, 9, "zigzag", f32, 3),
        ("rand-rank8", 2, 8, 64, 16, 11, 11, "hilbert", f32, 8),
        ("rand-bf16-rank4", 2, 8, 48, 16, 9, 15, "hilbert", bf16, 4),
    ]
    if not args.quick:
        for i, (d, h, w) in enumerate(STAGES):
            cases.append((f"stage{i}", 16, 8, d, 16, h, w, "hilbert", f32))
        cases.append(("stage3-rank4", 16, 8, 128, 16, 64, 64, "hilbert", f32, 4))
        cases.append(("stage2-rank8", 16, 8, 256, 16, 32, 32, "hilbert", f32, 8))
    if args.only is not None:
        cases = [c for c in cases if c[0] in args.only]
    ok = True
    for seed, (label, b, k, d, n, h, w, curve, dtype, *rank) in enumerate(cases):
        tol_y, tol_grad = (1e-4, 1e-4) if dtype == f32 else (1e-4, 2e-2)  # bf16 grads are rounded to bf16
        ok &= check_case(label, b, k, d, n, h, w, curve, dtype, inner, tol_y, tol_grad, seed, *rank)
    projections = [("proj-odd", 3, 37, 64, 8, 36, torch.float16), ("proj-rand", 2, 100, 192, 4, 40, bf16)]
    if not args.quick:  # the official decoder's four stage shapes (Din, R + 2N), batch 16
        for i, (din, c, side) in enumerate([(1024, 64, 8), (512, 48, 16), (256, 40, 32), (128, 36, 64)]):
            projections.append((f"proj-stage{i}", 16, side * side, din, 8, c, bf16))
    for label, *shape in projections:
        if args.only is None or label in args.only:
            ok &= check_projection(label, *shape)
    print("ALL PASS" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
