"""Fused hybrid selective scan in Triton: the K scan permutations live in the kernel's loads and stores.

SS2D reads a (B, D, H, W) map as K sequences (``seq_k[t] = raster[orders[k, t]]``), runs the selective
scan on each and writes every output back to its raster pixel, summing the K directions. The official
code materialises 8 permuted copies of every input and 8 un-permuted outputs. Here every tensor stays in
RASTER order and the kernel walks direction k in its own order by gathering ``p = orders[k, t]``:

    delta_t = softplus(delta[b, k, :, p] + delta_bias_k)                          p = orders[k, t]
    h_t     = exp(delta_t A_k) h_{t-1} + delta_t B[b, k, :, p] u[b, :, p]          h: (D, N), fp32
    out[b, :, p] += <C[b, k, :, p], h_t> + D_k u[b, :, p]                          summed over k

The x_proj / dt_proj projections of SS2D act on each position separately, so they commute with the
permutation: computing them on the raster map gives the same values the permuted sequences would get.

Kernels: one program per (b, k, block of channels). Two forwards: the step kernel (``fwd_seq_kernel``,
the default) keeps its channels' N states in registers, each thread 4 contiguous states of a channel, and
walks L one step at a time (least work per step; each block of steps' gathers are issued while the block
before computes, and where (b, k, channel block) programs are few, L is cut into segments, one program
each, after a pass computing each segment's end state (``fwd_seg_kernel``)); the chunked kernel
(``fwd_kernel``) walks L in chunks of ``chunk`` positions, loads a whole chunk at once and runs the
recurrence inside it as a parallel ``tl.associative_scan`` (state (BLOCK_D, N, chunk) in registers), the
(BLOCK_D, N) state carried across chunks. The K-direction
sum is an fp32 atomic add into the raster output (each raster pixel receives K adds). The forward saves
the state entering every chunk (B, K, n_chunks, N, D) fp32 for the backward, which walks the chunks in
reverse and recomputes the states of a chunk from its saved start state. Two backwards as well: the step
layout (``bwd_seq_kernel``, default: the chunk's states recomputed into a per-program scratch, then the
adjoint walked one step at a time, dB / dC summed over the program's 32 channels) and the chunked one
(``bwd_kernel``: the adjoint as a reverse associative scan).

Triton is imported lazily: importing this module never needs it (CPU-only and Windows installs).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from mambaad.errors import ConfigError
from mambaad.scan.projections import DirectionProjection, low_rank_delta, low_rank_delta_grads

__all__ = [
    "hybrid_selective_scan",
    "hybrid_selective_scan_torch",
    "hybrid_selective_scan_triton",
    "triton_available",
]


# ---------------------------------------------------------------- pure-torch yardstick


def hybrid_selective_scan_torch(
    u: Tensor,  # (B, D, L) raster
    delta: Tensor,  # (B, K, D, L) raster
    A: Tensor,  # (K*D, N)
    B: Tensor,  # (B, K, N, L) raster
    C: Tensor,  # (B, K, N, L) raster
    D: Tensor | None,  # (K*D,)
    delta_bias: Tensor | None,  # (K*D,)
    orders: Tensor,  # (K, L) int
    delta_softplus: bool = True,
    backend: str = "reference",
) -> Tensor:
    """Same contract as :func:`hybrid_selective_scan`, built from gathers and the plain selective scan.

    It materialises the K permuted copies the fused kernel avoids; it is the numerical yardstick for the
    Triton kernel (differentiable through autograd, any device).
    """
    from mambaad.scan.selective_scan import selective_scan

    bsz, d, length = u.shape
    k = orders.shape[0]
    orders = orders.to(device=u.device, dtype=torch.long)
    u_seq = u[:, :, orders].transpose(1, 2).reshape(bsz, k * d, length)  # (B, K*D, L) sequence order
    d_seq = delta.gather(3, orders[None, :, None, :].expand_as(delta)).reshape(bsz, k * d, length)
    b_seq = B.gather(3, orders[None, :, None, :].expand_as(B))  # (B, K, N, L)
    c_seq = C.gather(3, orders[None, :, None, :].expand_as(C))
    ys = selective_scan(u_seq, d_seq, A, b_seq, c_seq, D, delta_bias, delta_softplus, backend=backend)
    ys = ys.view(bsz, k, d, length)
    # decode: pixel p of direction k is sequence position inverse[k, p]
    inverse = torch.empty_like(orders).scatter_(
        1, orders, torch.arange(length, device=orders.device).expand_as(orders)
    )
    return ys.gather(3, inverse[None, :, None, :].expand_as(ys)).sum(1)  # (B, D, L)


# ---------------------------------------------------------------- Triton kernels (built lazily)


def triton_available() -> bool:
    """Whether the Triton backend can run: triton importable and CUDA present (or the interpreter on)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _kernels() -> dict[str, Any]:
    """The jitted kernels; imported on first use so ``import mambaad`` never imports triton."""
    from mambaad.scan import _triton_kernels as kern

    return {
        "fwd": kern.fwd_kernel,
        "bwd": kern.bwd_kernel,
        "bwd_seq": kern.bwd_seq_kernel,
        "bwd_seg": kern.bwd_seg_kernel,
        "fwd_seq": kern.fwd_seq_kernel,
        "fwd_seg": kern.fwd_seg_kernel,
        "rows": kern.direction_rows_kernel,
        "proj": kern.direction_projection_kernel,
    }


# ---------------------------------------------------------------- launch helpers


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _launch_config(
    d: int, n: int, length: int, block_d: int | None, chunk: int | None, tile: int = 1024
) -> tuple[int, int]:
    """(BLOCK_D, CHUNK) of the chunked kernels: BLOCK_D * N * CHUNK ~ ``tile`` fp32 per live tensor.

    The backward's defaults (chunk 16, 4 channels, 2 warps) were the fastest of a sweep over
    (block_d, chunk, warps) on an H200 at batch 16 (``bench_scan_gpu.py --sweep``, 2026-11-28): 1.7x
    faster than chunk 64 x 4 channels; wider blocks spill registers.
    """
    chunk = chunk or min(16, max(8, _pow2(length)))
    block_d = block_d or max(1, min(_pow2(d), tile // (_pow2(n) * chunk)))
    for name, value in (("block_d", block_d), ("chunk", chunk)):
        if value & (value - 1):
            raise ConfigError(f"triton scan {name} must be a power of two, got {value}")
    return block_d, chunk


# The step forward (``fwd_seq_kernel``) holds a program's states as a (channels, N) tile, each thread 4
# contiguous states of a channel: session 10 on an H200 replaced the (N, channels) layout of sessions 1-9
# (4 states x 4 channels per thread, three shared-memory layout conversions per step), the forward scan
# 7.87 -> 6.50 ms per batch of 16 in TF32 inference and the compiled model 1,142 -> 1,246-1,262 img/s.
# Channels per program, one warp per 32 (32: 16 states per thread; 16 channels and 32 in 2 warps measured
# slower, session 10).
ROW_BLOCK_D = 32
# Steps per gathered block (two blocks per loop iteration, the next one's loads in flight): 4 unsplit
# (160 registers), 2 when split into segments (122 registers, more warps per SM).
ROW_UNROLL = 4
ROW_SPLIT_UNROLL = 2
# The forward cuts L into segments (one program each, after a pass computing the segments' end states) only
# when there are fewer than ROW_SPLIT_BELOW (b, k, channel block) programs, up to about ROW_SPLIT_PROGRAMS
# programs: at batch 16 that is stage 3 alone (512 programs; per call 1.04 -> 0.89 ms), stage 2 (1,024)
# measured slower split (0.32 -> 0.43 ms); at batch 1 every sequence of L >= SPLIT_MIN_LENGTH is split.
ROW_SPLIT_BELOW = 1024
ROW_SPLIT_PROGRAMS = 2048
# The step forward applies SS2D's dt_proj itself (delta = W dt, R multiply-adds per channel and step, the R
# scalars of dt loaded beside B and C) when the rank R is at most ROW_LOW_RANK (0: never) and L is not split;
# otherwise delta is computed before the kernels (``projections.low_rank_delta``) and read per step. H200,
# batch 16, session 11, per call: stage 2 (R = 8, unsplit) 0.400 -> 0.374 ms; stage 3 (R = 4, split in 4)
# 1.037 -> 1.123 ms, slower in the split kernel (2 steps per block) in spite of delta's round trip saved.
ROW_LOW_RANK = 8
# Channels per program of the step-layout backward (one warp). 16 or 8 (2 or 4 threads per channel, fewer
# registers) measured slower at batch 16 on an H200 (docs/benchmarks.md, session 4).
SEQ_BWD_BLOCK_D = 32
# Register cap per backward step kernel (Triton's ``maxnreg``; 0: the compiler's choice), fewer registers
# for more warps per SM. ``bwd_seq`` compiled for sm_90 as at run time (``benchmarks/kernel_resources.py
# --maxnreg``, 2026-11-28) takes 249 registers at 3 stages: 8 warps per SM; capped at 200: 28 B spilled, 10
# warps; at 168: 136 B, 12 warps. Timed on an H200 (``benchmarks/sweep_registers.sh``, session 6): training
# 220.8 img/s uncapped, 213.7 at 200, 195.8 at 168. Set with :func:`set_max_registers`.
MAX_REGISTERS: dict[str, int] = {"bwd_seq": 0, "bwd_seg": 0}
# Steps per block of the backward's pass 1 (``bwd_seg_kernel``; 8 with its gathers first: 252.2 img/s).
BWD_SEG_UNROLL = 4
# Default backward kernel, "seq" or "chunk". On an H200 at batch 16 (2026-11-28) "seq" made forward +
# backward 1.4-2.3x faster per stage and the training step 154 vs 100 img/s; benchmarks switch it.
BWD_KERNEL = "seq"
# The backward splits L into segments (0: never) only with fewer than BWD_SPLIT_BELOW programs, up to
# about BWD_SPLIT_PROGRAMS. H200, batch 16, session 5 (bench_scan_gpu.py --sweep-split, forward +
# backward per SS2D call): L = 1024 (1,024 programs) 2.73 ms unsplit vs 2.91 at 2 and 3.00 at 4 segments;
# L = 4096 (512 programs) 5.98 at 4 segments, 6.12 at 8, 8.52 unsplit.
BWD_SPLIT_BELOW = 1024
BWD_SPLIT_PROGRAMS = 2048
MIN_SEGMENT = 64  # shortest segment: each costs a pass over its steps and a combine step for the others
SPLIT_MIN_LENGTH = 512  # at L <= 256 the split measured slower at batch 1 and 16
# Software pipelining of the backward step kernels' loops (``tl.range(num_stages=...)``): with 2 or more
# stages Triton issues the next iterations' gathers as asynchronous copies into shared memory while this
# one computes; 1 = a plain loop. Timed per kernel in one training step on an H200 at batch 16
# (docs/benchmarks.md, session 5): bwd_seq 29.4 -> 24.8 ms at 3 stages, bwd_seg fastest unpipelined.
# Set with :func:`set_pipeline_stages`.
PIPELINE_STAGES: dict[str, int] = {"bwd_seq": 3, "bwd_seg": 1}
# When ``bwd_seg_kernel`` issues its gathers (``_blocks`` in the kernels): 0 = each step's as it computes
# (a step's layout conversions are barriers no load crosses, so every step waits for memory); 1 = all
# BWD_SEG_UNROLL steps' at the top of a block (one wait per block, more registers); 2 = the next block's
# while this one computes. H200 training at batch 16 (session 8): 1 with 4 steps 251.8 -> 255.1 img/s.
# Set with :func:`set_gather_mode`.
GATHER_MODE: dict[str, int] = {"bwd_seg": 1}


def _parse_entries(
    spec: int | str, names: Iterable[str], what: str, ok: Callable[[str, int], bool], want: str
) -> dict[str, int]:
    """``"a=1,b=2"`` -> {"a": 1, "b": 2}; an entry whose name is not one of ``names`` or whose value is not
    a natural number passing ``ok(name, value)`` raises ConfigError naming it (``want``: what is wanted)."""
    wanted = {}
    for item in (part.strip() for part in str(spec).split(",") if part.strip()):
        name, _, value = item.partition("=")
        if name not in names or not value.isdigit() or not ok(name, int(value)):
            raise ConfigError(f"triton {what}: bad entry {item!r} (want {want})")
        wanted[name] = int(value)
    return wanted


def _set_per_kernel(
    table: dict[str, int], spec: int | str, what: str, least: int, most: int | None = None
) -> None:
    """Set a per-kernel table from ``N`` (every kernel) or ``"bwd_seq=3,bwd_seg=1"`` (those kernels);
    a bad entry raises ConfigError naming it and changes nothing."""
    items = [part.strip() for part in str(spec).split(",") if part.strip()]
    if len(items) == 1 and "=" not in items[0]:
        items = [f"{name}={items[0]}" for name in table]
    bounds = f"N >= {least}" if most is None else f"{least} <= N <= {most}"
    want = f"{bounds} or KERNEL=N, KERNEL one of {', '.join(table)}"

    def in_bounds(_name: str, value: int) -> bool:
        return least <= value <= (most or value)

    table.update(_parse_entries(",".join(items), table, what, in_bounds, want))


def set_pipeline_stages(spec: int | str) -> None:
    """Set :data:`PIPELINE_STAGES`: one count for every backward step kernel (``3``, ``"3"``) or some
    kernels' counts (``"bwd_seq=3"``); the benchmarks' ``--triton-stages`` option."""
    _set_per_kernel(PIPELINE_STAGES, spec, "pipeline stages", 1)


def set_max_registers(spec: int | str) -> None:
    """Set :data:`MAX_REGISTERS` (0: no cap) like :func:`set_pipeline_stages`; ``--triton-maxnreg``."""
    _set_per_kernel(MAX_REGISTERS, spec, "register cap", 0, 255)


def _maxnreg(kernel: str) -> dict[str, int]:
    """The launch option capping ``kernel``'s registers, if :data:`MAX_REGISTERS` sets one."""
    return {"maxnreg": MAX_REGISTERS[kernel]} if MAX_REGISTERS[kernel] else {}


def set_gather_mode(spec: int | str) -> None:
    """Set :data:`GATHER_MODE` (0, 1 or 2) like :func:`set_pipeline_stages`; ``--triton-gather``."""
    _set_per_kernel(GATHER_MODE, spec, "gather mode", 0, 2)


# The step forward's launch settings by short name (``--triton-fwd unroll=2,split_below=2048``); the first
# three are powers of two.
FORWARD_SETTINGS = {
    "block_d": "ROW_BLOCK_D",
    "unroll": "ROW_UNROLL",
    "split_unroll": "ROW_SPLIT_UNROLL",
    "split_below": "ROW_SPLIT_BELOW",
    "split_programs": "ROW_SPLIT_PROGRAMS",
    "low_rank": "ROW_LOW_RANK",
}


def set_forward_settings(spec: str) -> None:
    """Set the step forward's :data:`FORWARD_SETTINGS` from ``"unroll=2,split_below=2048"``, for tuning on
    another card (the defaults are an H200's); a bad entry raises ConfigError naming it and changes nothing."""

    def ok(name: str, value: int) -> bool:  # block_d and the unrolls: powers of two
        return name not in ("block_d", "unroll", "split_unroll") or (value > 0 and not value & (value - 1))

    want = f"NAME=N, NAME one of {', '.join(FORWARD_SETTINGS)}; block_d and the unrolls powers of two"
    wanted = _parse_entries(spec, FORWARD_SETTINGS, "forward settings", ok, want)
    globals().update({FORWARD_SETTINGS[name]: value for name, value in wanted.items()})


# The tables and settings a command line may set: option name -> (setter, help)
TUNING_OPTIONS = {
    "stages": (
        set_pipeline_stages,
        "software-pipelining stages of the backward step kernels: N or bwd_seq=N,bwd_seg=M",
    ),
    "gather": (set_gather_mode, "when bwd_seg issues its gathers (GATHER_MODE): 0/1/2 or bwd_seg=2"),
    "maxnreg": (set_max_registers, "register caps of the backward step kernels (0: none): N or bwd_seq=N"),
    "fwd": (set_forward_settings, "the step forward's settings: unroll=4,split_unroll=2,block_d=32,..."),
}


def add_tuning_arguments(parser: argparse.ArgumentParser, prefix: str = "--triton-") -> None:
    """Add one option per :data:`TUNING_OPTIONS` entry (``--triton-stages`` ...; the GPU scripts use
    ``prefix="--"``); :func:`apply_tuning_arguments` sets them."""
    for name, (_, text) in TUNING_OPTIONS.items():
        parser.add_argument(f"{prefix}{name}", dest=f"triton_{name}", default=None, metavar="SPEC", help=text)


def apply_tuning_arguments(args: argparse.Namespace) -> None:
    """Set the tables from the options :func:`add_tuning_arguments` added (a bad entry: ConfigError)."""
    for name, (setter, _) in TUNING_OPTIONS.items():
        value = getattr(args, f"triton_{name}", None)
        if value is not None:
            setter(value)


def _row_vec(*rows: Tensor) -> bool:
    """Whether the per-position rows of these (B, K, N, L) tensors (B and C) have strides that keep them
    16-byte aligned when their start is: the kernels' ``ROW_VEC`` hint (Triton itself checks the start)."""
    return all(t.stride(3) % 4 == 0 for t in rows)


def _segments(
    bsz: int,
    k: int,
    d: int,
    length: int,
    chunk: int,
    seg_len: int | None,
    backward: bool = False,
    block_d: int | None = None,
) -> tuple[int, int]:
    """(seg_len, n_seg) of the step kernels: L cut into n_seg segments of seg_len steps (a multiple of
    ``chunk``), each its own program. A step kernel is latency-bound, and one (b, k, 32-channel) program
    per sequence leaves an H200 mostly idle at L = 4096 and batch 16 (512 programs): segments multiply the
    programs, for one extra pass (the segments' zero-start end states) and a combine of at most n_seg
    states per program. ``seg_len``: None = automatic (only sequences of at least SPLIT_MIN_LENGTH steps
    with fewer than :data:`ROW_SPLIT_BELOW` programs of ``block_d`` (None: :data:`ROW_BLOCK_D`) channels, into about
    :data:`ROW_SPLIT_PROGRAMS` programs; the ``backward``: :data:`BWD_SPLIT_BELOW`,
    :data:`BWD_SPLIT_PROGRAMS`, 32 channels), 0 = no split, else the wanted length (rounded up to a
    multiple of ``chunk``).
    """
    if seg_len is None:
        below, target, block_d = (
            (BWD_SPLIT_BELOW, BWD_SPLIT_PROGRAMS, SEQ_BWD_BLOCK_D)
            if backward
            else (ROW_SPLIT_BELOW, ROW_SPLIT_PROGRAMS, block_d or ROW_BLOCK_D)
        )
        programs = bsz * k * -(-d // block_d)
        n_seg = 1
        if programs < below and length >= SPLIT_MIN_LENGTH:
            n_seg = max(1, min(target // programs, length // MIN_SEGMENT))
        seg_len = -(-length // n_seg)
    if seg_len <= 0 or seg_len >= length:
        return length, 1
    seg_len = -(-seg_len // chunk) * chunk
    return seg_len, -(-length // seg_len)


def _segment_buffers(rows: int, n_seg: int, n: int, d: int, dummy: Tensor) -> tuple[Tensor, Tensor]:
    """Pass 1's per-segment results, (rows, n_seg, N * D) states (each (D, N) in the forward, (N, D) in the
    backward) and (rows, n_seg, D) delta sums, fp32; without a split the kernels never read them
    (``dummy`` stands in)."""
    if n_seg == 1:
        return dummy, dummy
    f32 = {"device": dummy.device, "dtype": torch.float32}
    return torch.empty(rows, n_seg, n, d, **f32), torch.empty(rows, n_seg, d, **f32)


def _forward_config(
    kind: str, block_d: int | None, unroll: int | None, seg_len: int | None
) -> tuple[str, int, int | None, int | None]:
    """(kind, channels per program, steps per block or None for the policy, seg_len) of the forward.

    ``auto`` is the step kernel: split into segments where programs are few, it is faster than the
    chunked scan at every MambaAD shape on an H200, batch 1 and 16 (the chunked scan was 7x faster than an
    unsplit step kernel at batch 1, L = 4096, session 2).
    """
    if kind not in ("auto", "seq", "chunk"):
        raise ConfigError(f"triton scan fwd_kernel must be 'auto', 'seq' or 'chunk', got {kind!r}")
    block_d = block_d or ROW_BLOCK_D
    for name, value in (("fwd_block_d", block_d), ("unroll", unroll or 1)):
        if value < 1 or value & (value - 1):
            raise ConfigError(f"triton scan {name} must be a power of two, got {value}")
    if seg_len is not None and seg_len < 0:
        raise ConfigError(f"triton scan seg_len must be >= 0 (0: no split), got {seg_len}")
    return ("seq" if kind == "auto" else kind), block_d, unroll, seg_len


# SS2D's copy of x_proj's output into rows stored direction by direction, (B, L, K, C) -> (B, K, L, C) fp32,
# by the Triton kernel instead of PyTorch's strided copy (0.42 ms per batch of 16 in 16 launches under bf16
# autocast on an H200, ~1.4 TB/s; session 15). Off: in bf16 the projection kernel below replaces both
# (with the product and this kernel, 1,632.8 img/s against its 1,629.4, session 16); fp32 x not timed.
ROWS_KERNEL = False
ROWS_BLOCK = 2048


def direction_rows(x_dbl: Tensor) -> Tensor:
    """x_proj's output (B, K, L, C), a view of (B, L, K, C) memory, as (B, K, L, C) fp32 contiguous memory:
    with :data:`ROWS_KERNEL` on CUDA (or the interpreter) and no autograd, one Triton kernel; else a copy."""
    b, k, length, c = x_dbl.shape
    here = x_dbl.is_cuda or os.environ.get("TRITON_INTERPRET", "0") == "1"
    autograd = torch.is_grad_enabled() and x_dbl.requires_grad
    if not (ROWS_KERNEL and here and triton_available()) or autograd or x_dbl.stride(3) != 1:
        return x_dbl.to(torch.float32, memory_format=torch.contiguous_format).contiguous()
    out = torch.empty(b, k, length, c, device=x_dbl.device, dtype=torch.float32)
    sx_b, sx_k, sx_l, _ = x_dbl.stride()
    grid = (b * k, -(-length * c // ROWS_BLOCK))
    _kernels()["rows"][grid](x_dbl, out, k, length, sx_b, sx_l, sx_k, C=c, BLOCK=ROWS_BLOCK, num_warps=4)
    return out


# SS2D's x_proj at inference with a 16-bit x (autocast) as one Triton kernel that writes its fp32 products
# straight into rows stored direction by direction, instead of a bf16 product and the copy above (H200,
# session 16, compiled bf16 inference at batch 16: 1,594.8 -> 1,629.4 img/s; its 16 calls take 0.35 ms,
# the copy alone took 0.43 in session 15's profile).
PROJECTION_KERNEL = True
PROJ_BLOCK_L = 128


def direction_projection(x: Tensor, weight: Tensor) -> Tensor:
    """SS2D's x_proj as the fused scans read it: x (B, L, Din) and weight (K, C, Din) -> (B, K, L, C) fp32,
    contiguous, so a program's rows at neighbouring steps lie side by side (see ``SS2D._scan_fused``).

    With :data:`PROJECTION_KERNEL`, no autograd, CUDA (or the interpreter) and x and the weight in bf16 or
    fp16: one Triton kernel, its products accumulated and stored in fp32. Otherwise the projection
    (``DirectionProjection``, differentiable) and :func:`direction_rows`.
    """
    b, length, din = x.shape
    k, c, _ = weight.shape
    here = x.is_cuda or os.environ.get("TRITON_INTERPRET", "0") == "1"
    half = x.dtype in (torch.bfloat16, torch.float16) and weight.dtype == x.dtype
    autograd = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if not (PROJECTION_KERNEL and here and half and triton_available()) or autograd:
        return direction_rows(DirectionProjection.apply(x, weight))
    out = torch.empty(b, k, length, c, device=x.device, dtype=torch.float32)
    grid = (k, b * -(-length // PROJ_BLOCK_L))
    _kernels()["proj"][grid](
        x, weight.contiguous(), out, length, *x.stride(),
        D=din, C=c, BLOCK_L=PROJ_BLOCK_L, BLOCK_C=max(16, _pow2(c)), BLOCK_K=64, num_warps=4,
    )  # fmt: skip
    return out


def _autocast_dtype(device: torch.device, default: torch.dtype) -> torch.dtype:
    """Autocast's low-precision dtype where it is on for ``device``, else ``default``. Inference computes
    the low-rank delta in it: half the bytes written and read at the stages where the kernels read delta
    (H200, session 15: compiled bf16 inference 1,558.2 -> 1,574.4 img/s at batch 16)."""
    kind = device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else default


def _dt_proj_in_kernel(kind: str, rank: int | None, n_seg: int) -> bool:
    """Whether the forward applies SS2D's dt_proj per step itself: the step kernel, a low-rank input of rank
    at most :data:`ROW_LOW_RANK` and L not split (the split forward measured slower with it, session 11)."""
    return kind == "seq" and rank is not None and rank <= ROW_LOW_RANK and n_seg == 1


def _forward_seq(
    args: tuple,
    save: bool,
    chunk: int,
    softplus: bool,
    flags: dict[str, bool],
    fwd: tuple[str, int, int | None, int | None],
    segments: tuple[int, int],
    dt_weight: Tensor | None = None,
) -> None:
    """Launch the step forward (and its segments' pass 1) on the forward's argument tuple; ``fwd`` from
    :func:`_forward_config` (steps per block None: :data:`ROW_UNROLL`, split :data:`ROW_SPLIT_UNROLL`),
    ``segments`` (seg_len, n_seg) from :func:`_segments`. With ``dt_weight`` (K, D, R) the delta of ``args``
    is dt_proj's low-rank input, applied in the kernels (L is then not split, :func:`_dt_proj_in_kernel`)."""
    kern = _kernels()
    u, delta, A, B, C = args[:5]
    bsz, d, length = u.shape
    k, n = B.shape[1], A.shape[1]
    _, block_d, unroll, _ = fwd
    seg_len, n_seg = segments
    unroll = min(unroll or (ROW_SPLIT_UNROLL if n_seg > 1 else ROW_UNROLL), chunk)
    seg_h, seg_dt = _segment_buffers(bsz * k, n_seg, n, d, A)
    grid = (bsz * k, -(-d // block_d), n_seg)
    row_vec = _row_vec(B, C)
    launch = {"BLOCK_D": block_d, "BLOCK_N": _pow2(n), "UNROLL": unroll, "num_warps": max(1, block_d // 32)}
    if n_seg > 1:
        kern["fwd_seg"][(grid[0], grid[1], n_seg - 1)](
            u, delta, A, B, args[6], args[7], seg_h, seg_dt, k, d, length, n, seg_len, n_seg,
            *u.stride(), *delta.stride(), *B.stride(),
            HAS_BIAS=flags["HAS_BIAS"], SOFTPLUS=softplus, ROW_VEC=row_vec, **launch,
        )  # fmt: skip
    w, rank = (A, 0) if dt_weight is None else (dt_weight.contiguous(), dt_weight.shape[-1])
    kern["fwd_seq"][grid](
        *args[:10], seg_h, seg_dt, w, *args[10:15], seg_len, n_seg, *args[15:],
        **flags, SAVE_STATES=save, SAVE_EVERY=chunk, SPLIT=n_seg > 1, ROW_VEC=row_vec, RANK=rank, **launch,
    )  # fmt: skip


class _HybridScanFn(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Tensor | None,
        delta_bias: Tensor | None,
        orders: Tensor,
        delta_softplus: bool,
        block_d: int,
        chunk: int,
        num_warps: int,
        fwd: tuple[str, int, int | None, int | None],
        bwd_kind: str,
        grad_enabled: bool,
        dt_weight: Tensor | None,
    ) -> Tensor:
        kern = _kernels()
        # needs_input_grad is True for a Parameter (SS2D's D and delta_bias) even under no_grad, so without
        # autograd recording nothing is saved: until session 15 every inference wrote each chunk's states, ~2
        # GB per batch of 16 (H200, compiled TF32 inference 1,406.6 -> 1,442.4 img/s once skipped)
        save = grad_enabled and any(ctx.needs_input_grad[:7])
        # u is read in fp32 (the bf16 original is saved); the step kernels run slower on a bf16 u (H200,
        # session 15, bf16 inference: 16 forward calls 5.58 + 1.31 ms against 4.55 + 1.04 with an fp32 u)
        u_in, u = u, u.float()
        bsz, d, length = u.shape
        k, n = B.shape[1], A.shape[1]
        dts = None
        rank = None if dt_weight is None else dt_weight.shape[-1]
        segments = _segments(bsz, k, d, length, chunk, fwd[3], block_d=fwd[1])  # (seg_len, n_seg)
        in_kernel = _dt_proj_in_kernel(fwd[0], rank, segments[1])
        if in_kernel:  # the step kernels apply dt_proj to dts themselves: delta is never stored
            dts = delta
        elif dt_weight is not None:  # delta = dt_proj(dts): used here, recomputed in the backward, not saved
            dtype = delta.dtype if save else _autocast_dtype(u.device, delta.dtype)
            with torch.autocast(u.device.type, enabled=False):  # dts' dtype, as in the backward's recompute
                dts, delta = delta, low_rank_delta(delta.to(dtype), dt_weight)
        n_chunks = -(-length // chunk)
        A = A.contiguous()
        orders32 = orders.to(device=u.device, dtype=torch.int32).contiguous()
        # (B, D, L) view of (B, L, D) memory: the channels of one pixel are contiguous, so the
        # scattered (atomic) writes of a program's BLOCK_D channels at a pixel hit one segment
        out = torch.zeros(bsz, length, d, device=u.device, dtype=torch.float32).transpose(1, 2)
        states = torch.empty(bsz, k, n_chunks if save else 1, n, d, device=u.device, dtype=torch.float32)
        dummy = A  # never read when the HAS_* flag is off
        args = (
            u, delta, A, B, C, D if D is not None else dummy,
            delta_bias if delta_bias is not None else dummy, orders32, out, states,
            k, d, length, n, n_chunks,
            *u.stride(), *delta.stride(), *B.stride(), *C.stride(), *out.stride(),
        )  # fmt: skip
        flags = {"HAS_D": D is not None, "HAS_BIAS": delta_bias is not None, "SOFTPLUS": delta_softplus}
        if fwd[0] == "seq":
            _forward_seq(
                args, save, chunk, delta_softplus, flags, fwd, segments, dt_weight if in_kernel else None
            )
        else:
            if not save:  # inference: long chunks load more per step (the backward's chunk is irrelevant)
                block_d, chunk = _launch_config(d, n, length, None, 64, tile=4096)
                num_warps = 4
            grid = (bsz * k, -(-d // block_d))
            kern["fwd"][grid](
                *args, **flags, SAVE_STATES=save, BLOCK_D=block_d, BLOCK_N=_pow2(n), CHUNK=chunk,
                num_warps=num_warps,
            )  # fmt: skip
        if save:
            first = delta if dts is None else dts
            ctx.save_for_backward(u_in, first, A, B, C, D, delta_bias, orders32, states, dt_weight)
            ctx.cfg = (delta_softplus, block_d, chunk, num_warps, n_chunks, bwd_kind, fwd[3])
        return out

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors  # u, delta (or dts), A, B, C, D, delta_bias, orders32, states, dt_weight
        bwd_kind = ctx.cfg[5]  # cfg: (softplus, block_d, chunk, warps, n_chunks, bwd_kind, seg_len)
        backward = _backward_seq if bwd_kind == "seq" else _backward_chunk
        inputs, dt_weight = list(saved[:9]), saved[9]
        inputs[0] = inputs[0].float()
        if dt_weight is not None:
            inputs[1] = low_rank_delta(saved[1], dt_weight)
        grads = list(backward(dout, *inputs, ctx.cfg))
        d_weight = None
        if dt_weight is not None:
            need = (ctx.needs_input_grad[1], ctx.needs_input_grad[-1])
            grads[1], d_weight = low_rank_delta_grads(grads[1], saved[1], dt_weight, need)
        # each gradient in its input's dtype (fp32 in the kernels); none for the 8 non-tensor arguments
        casts = (None if g is None else g.to(x.dtype) for g, x in zip(grads, saved[:7]))
        return (*casts, *[None] * 8, d_weight)


def _backward_chunk(
    dout: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    orders32: Tensor,
    states: Tensor,
    cfg: tuple,
) -> tuple[Tensor | None, ...]:
    """fp32 gradients of the 7 inputs with the chunked backward kernel (``bwd_kernel``)."""
    delta_softplus, block_d, chunk, num_warps, n_chunks, _, _ = cfg
    kern = _kernels()
    bsz, d, length = u.shape
    k, n = B.shape[1], A.shape[1]
    f32 = {"device": u.device, "dtype": torch.float32}
    du = torch.zeros(bsz, d, length, **f32)
    ddelta = torch.empty(bsz, k, d, length, **f32)
    dA = torch.zeros(k * d, n, **f32)
    dB = torch.zeros(bsz, k, n, length, **f32)
    dC = torch.zeros(bsz, k, n, length, **f32)
    dD = torch.zeros(k * d, **f32)
    dbias = torch.zeros(k * d, **f32)
    dummy = A
    grid = (bsz * k, -(-d // block_d))
    kern["bwd"][grid](
        u, delta, A, B, C, D if D is not None else dummy,
        delta_bias if delta_bias is not None else dummy, orders32, dout, states,
        du, ddelta, dA, dB, dC, dD, dbias,
        k, d, length, n, n_chunks,
        *u.stride(), *delta.stride(), *B.stride(), *C.stride(), *dout.stride(),
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        BLOCK_D=block_d, BLOCK_N=_pow2(n), CHUNK=chunk, num_warps=num_warps,
    )  # fmt: skip
    return du, ddelta, dA, dB, dC, dD if D is not None else None, dbias if delta_bias is not None else None


def _backward_seq(
    dout: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    orders32: Tensor,
    states: Tensor,
    cfg: tuple,
) -> tuple[Tensor | None, ...]:
    """fp32 gradients of the 7 inputs with the step-layout backward kernel (``bwd_seq_kernel``), L cut
    into segments as in the forward (``bwd_seg_kernel`` first gives each segment's zero-start adjoint
    carry); views in the contract's shapes of buffers with the channels (or states) innermost."""
    delta_softplus, _, chunk, _, n_chunks, _, seg_len = cfg
    kern = _kernels()
    bsz, d, length = u.shape
    k, n = B.shape[1], A.shape[1]
    block_d, block_n = SEQ_BWD_BLOCK_D, _pow2(n)
    f32 = {"device": u.device, "dtype": torch.float32}
    seg_len, n_seg = _segments(bsz, k, d, length, chunk, seg_len, backward=True)
    at = A.t().contiguous()
    grid = (bsz * k, -(-d // block_d), n_seg)
    seg_g, seg_dt = _segment_buffers(bsz * k, n_seg, n, d, A)
    dummy = A
    if n_seg > 1:  # pass 1: the adjoint carry each segment hands on, from a zero start
        kern["bwd_seg"][(grid[0], grid[1], n_seg - 1)](
            delta, at, C, delta_bias if delta_bias is not None else dummy, orders32, dout, seg_g, seg_dt,
            k, d, length, n, seg_len, n_seg,
            *delta.stride(), *C.stride(), *dout.stride(),
            HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
            BLOCK_D=block_d, BLOCK_N=block_n, UNROLL=min(BWD_SEG_UNROLL, chunk), num_warps=max(1, block_d // 32),
            STAGES=PIPELINE_STAGES["bwd_seg"], ROW_VEC=_row_vec(C), GATHER=GATHER_MODE["bwd_seg"],
            **_maxnreg("bwd_seg"),
        )  # fmt: skip
    # channels (or states) innermost, like the step kernel's tiles; returned as views of the contract
    du = torch.zeros(bsz, length, d, **f32)
    ddelta = torch.empty(bsz, k, length, d, **f32)
    dat = torch.zeros(n, k * d, **f32)  # dA transposed
    dB = torch.zeros(bsz, k, length, n, **f32)
    dC = torch.zeros(bsz, k, length, n, **f32)
    dD = torch.zeros(k * d, **f32)
    dbias = torch.zeros(k * d, **f32)
    scratch = torch.empty(grid[0] * grid[1] * grid[2] * chunk * block_n * block_d, **f32)
    kern["bwd_seq"][grid](
        u, delta, at, B, C, D if D is not None else dummy,
        delta_bias if delta_bias is not None else dummy, orders32, dout, states, scratch, seg_g, seg_dt,
        du, ddelta, dat, dB, dC, dD, dbias,
        k, d, length, n, n_chunks, seg_len, n_seg,
        *u.stride(), *delta.stride(), *B.stride(), *C.stride(), *dout.stride(),
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=chunk, SPLIT=n_seg > 1, num_warps=max(1, block_d // 32),
        STAGES=PIPELINE_STAGES["bwd_seq"], ROW_VEC=_row_vec(B, C), **_maxnreg("bwd_seq"),
    )  # fmt: skip
    return (
        du.transpose(1, 2),
        ddelta.transpose(2, 3),
        dat.t(),
        dB.transpose(2, 3),
        dC.transpose(2, 3),
        dD if D is not None else None,
        dbias if delta_bias is not None else None,
    )


def hybrid_selective_scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    orders: Tensor,
    delta_softplus: bool = True,
    block_d: int | None = None,
    chunk: int | None = None,
    num_warps: int = 2,
    fwd_kernel: str = "auto",
    fwd_block_d: int | None = None,
    unroll: int | None = None,
    bwd_kernel: str | None = None,
    seg_len: int | None = None,
    dt_weight: Tensor | None = None,
) -> Tensor:
    """The fused Triton scan (forward and backward); see :func:`hybrid_selective_scan` for the contract.

    With ``dt_weight`` (K, D, R), ``delta`` is the low-rank (B, K, R, L) input of SS2D's dt projection, so
    that autograd keeps the R-wide input instead of the K x D-wide delta: the step forward applies dt_proj
    per step itself when R <= :data:`ROW_LOW_RANK` and L is not split; otherwise delta = dt_proj(delta) is
    computed before the kernels (``projections.low_rank_delta``); the backward always computes it first.

    Forward: ``fwd_kernel="seq"`` (or ``"auto"``, the default) keeps the N states of its channels in
    registers and walks L step by step, ``fwd_block_d`` channels per program (default
    :data:`ROW_BLOCK_D`; one warp per 32), ``unroll`` steps per gathered block (default
    :data:`ROW_UNROLL`, :data:`ROW_SPLIT_UNROLL` when split); ``"chunk"`` is the chunked associative scan.
    The forward saves the state entering every ``chunk`` steps.

    Backward: ``bwd_kernel="seq"`` walks the steps backwards, (N, 32-channel) tiles per program;
    ``"chunk"`` is the chunked reverse scan with ``block_d`` channels per program, ``chunk`` positions per
    parallel scan and ``num_warps`` (powers of two; None picks chunk 16 and block_d 4); None takes
    :data:`BWD_KERNEL` (``"seq"``).

    Both step kernels cut L into segments of ``seg_len`` steps run by separate programs (None: where
    programs are few, see ``_segments``; 0: no split).
    """
    if not triton_available():
        raise ConfigError("selective-scan backend 'triton' needs the triton package and a CUDA device")
    _check_shapes(u, delta, A, B, C, D, delta_bias, orders, dt_weight)
    block_d, chunk = _launch_config(u.shape[1], A.shape[1], u.shape[2], block_d, chunk)
    fwd = _forward_config(fwd_kernel, fwd_block_d, unroll, seg_len)
    bwd_kernel = bwd_kernel or BWD_KERNEL
    if bwd_kernel not in ("chunk", "seq"):
        raise ConfigError(f"triton scan bwd_kernel must be 'chunk' or 'seq', got {bwd_kernel!r}")
    return _HybridScanFn.apply(
        u, delta, A, B, C, D, delta_bias, orders, delta_softplus, block_d, chunk, num_warps, fwd, bwd_kernel,
        torch.is_grad_enabled(), dt_weight,
    )  # fmt: skip


def _check_shapes(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    orders: Tensor,
    dt_weight: Tensor | None = None,
) -> None:
    """Shape contract, checked once per call (cheap; the kernel trusts it). With ``dt_weight`` (K, D, R),
    delta is the low-rank (B, K, R, L) input of the dt projection."""
    if u.dim() != 3 or delta.dim() != 4 or B.dim() != 4 or C.dim() != 4 or orders.dim() != 2:
        raise ValueError(
            "hybrid scan expects u (B, D, L), delta (B, K, D, L), B/C (B, K, N, L), orders (K, L); got "
            f"{tuple(u.shape)}, {tuple(delta.shape)}, {tuple(B.shape)}, {tuple(C.shape)}, {tuple(orders.shape)}"
        )
    bsz, d, length = u.shape
    k, n = orders.shape[0], A.shape[-1]
    delta_name, delta_shape = "delta", (bsz, k, d, length)
    if dt_weight is not None:
        rank = dt_weight.shape[-1]
        if tuple(dt_weight.shape) != (k, d, rank):
            raise ValueError(
                f"hybrid scan: dt_weight has shape {tuple(dt_weight.shape)}, expected {(k, d, rank)}"
            )
        delta_name, delta_shape = "delta (low-rank, with dt_weight)", (bsz, k, rank, length)
    expected = {
        delta_name: (delta, delta_shape),
        "A": (A, (k * d, n)),
        "B": (B, (bsz, k, n, length)),
        "C": (C, (bsz, k, n, length)),
        "orders": (orders, (k, length)),
    }
    if D is not None:
        expected["D"] = (D, (k * d,))
    if delta_bias is not None:
        expected["delta_bias"] = (delta_bias, (k * d,))
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"hybrid scan: {name} has shape {tuple(t.shape)}, expected {shape}")


_FUSED_BACKENDS = ("triton", "numba", "torch")


def hybrid_selective_scan(
    u: Tensor,  # (B, D, L) raster
    delta: Tensor,  # (B, K, D, L) raster
    A: Tensor,  # (K*D, N)
    B: Tensor,  # (B, K, N, L) raster
    C: Tensor,  # (B, K, N, L) raster
    D: Tensor | None,  # (K*D,)
    delta_bias: Tensor | None,  # (K*D,)
    orders: Tensor,  # (K, L)
    delta_softplus: bool = True,
    backend: str = "triton",
    **kwargs: Any,
) -> Tensor:
    """Selective scan over the K hybrid-scan directions with encode, scan, decode and K-sum in one.

    Every input is in RASTER order (position = row * W + col of the (H, W) map). Direction k reads pixel
    ``orders[k, t]`` at step t; its outputs are written back to their pixels and the K maps summed.

    Args:
        u: (B, D, L) the conv output shared by all directions; fp32 or bf16.
        delta: (B, K, D, L) dt_proj output before bias and softplus, per direction; or, with the keyword
            ``dt_weight=`` (K, D, R) (``triton`` and ``numba``), dt_proj's low-rank input (B, K, R, L).
        A: (K*D, N) negative state matrix (``-exp(A_logs)``), channel c = k * D + d.
        B: (B, K, N, L) input projections per direction.
        C: (B, K, N, L) output projections per direction.
        D: (K*D,) skip weights or None.
        delta_bias: (K*D,) or None.
        orders: (K, L) int, each row a permutation of range(L) (``scan_orders``).
        delta_softplus: apply softplus to ``delta + delta_bias``.
        backend: ``triton`` (fused kernel, CUDA), ``numba`` (fused kernel, CPU, forward only; see
            ``mambaad.scan.numba_scan``) or ``torch`` (gathers + ``selective_scan``; any device; pass
            ``scan_backend=`` to pick the inner selective-scan backend).
        **kwargs: options of :func:`hybrid_selective_scan_triton` for ``triton`` (``block_d``, ``chunk``,
            ``num_warps``, ``fwd_kernel``, ``bwd_kernel``, ``seg_len``, ``dt_weight``, ...); ``threads`` and
            ``dt_weight`` for ``numba``.

    Returns:
        (B, D, L) float32, summed over the K directions.
    """
    if backend == "triton":
        return hybrid_selective_scan_triton(
            u, delta, A, B, C, D, delta_bias, orders, delta_softplus, **kwargs
        )
    if backend == "numba":
        from mambaad.scan.numba_scan import hybrid_selective_scan_numba

        return hybrid_selective_scan_numba(u, delta, A, B, C, D, delta_bias, orders, delta_softplus, **kwargs)
    if backend == "torch":
        inner = kwargs.pop("scan_backend", "reference")
        return hybrid_selective_scan_torch(u, delta, A, B, C, D, delta_bias, orders, delta_softplus, inner)
    raise ConfigError(f"unknown hybrid-scan backend {backend!r}; choose from {', '.join(_FUSED_BACKENDS)}")
