"""Fused hybrid selective scan for the CPU, compiled with numba (inference only).

Same contract as :func:`mambaad.scan.triton_scan.hybrid_selective_scan`: every tensor in RASTER order,
direction k walks pixel ``orders[k, t]`` at step t, outputs written back to their pixels and summed over
the K directions. No permuted copies are made.

Why a compiled kernel: at batch 1 the official configuration runs 31 M (channel, step) updates per image,
each with N=16 exponentials. The torch backends loop over positions in Python (19,648 steps per image), so
op overhead dominates. Here one compiled loop walks L per block of channels.

Layout: u, delta and the output blocked as (B, D/16, L, 16), so the 16 channels of a job are one vector
and one job's rows are contiguous (the permuted walk stays in L2 and few pages); A (K, N, D); B/C
(B, K, L, N) rows, read in place from x_proj's output. The step itself is LLVM IR on 16-float vectors
(``_numba_kernels._scan_step``): with AVX-512, 2^y = vscalefps(poly(f), n) with f = vreduceps(y);
elsewhere rint and the exponent bits. Relative error < 3e-7 for the decays exp(delta * A) <= 1.

numba is optional (``pip install mambaad[cpu]``); importing this module never needs it.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mambaad.errors import ConfigError

__all__ = ["hybrid_selective_scan_numba", "numba_available"]


def numba_available() -> bool:
    """Whether numba imports here (the ``numba`` backend can run)."""
    return _kernel() is not None


@functools.cache
def _kernel() -> Any:
    """The compiled forward kernel, or None without numba. Built once; numba caches it on disk."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return None
    from mambaad.scan import _numba_kernels

    return _numba_kernels


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    """Idle workers block (no spinning), so the pool costs nothing between scans."""
    return ThreadPoolExecutor(max(1, workers), thread_name_prefix="mambaad-scan")


def _run_jobs(kernel: Any, arrays: list[Any], jobs: int, threads: int | None) -> None:
    """Split the job grid into one contiguous range per thread; each range runs without the GIL.

    The calling thread runs the first range itself, the pool the others.
    """
    workers = max(1, min(threads or torch.get_num_threads(), jobs))
    bounds = [jobs * i // workers for i in range(workers + 1)]
    futures = [
        _pool(workers - 1).submit(kernel, *arrays, bounds[i], bounds[i + 1]) for i in range(1, workers)
    ]
    kernel(*arrays, bounds[0], bounds[1])
    for future in futures:
        future.result()


def _unit_inner_stride(t: Tensor) -> Tensor:
    """``t`` itself when its last dim is contiguous (the kernel reads rows by pointer), else a copy.

    SS2D's B and C are column slices of x_proj's (B, K, L, R + 2N) output: read in place, no copy.
    """
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def _check_no_grad(*tensors: Tensor | None) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise ConfigError(
            "selective-scan backend 'numba' is inference-only (no backward); train with 'sequential', "
            "or run under torch.no_grad()"
        )


def hybrid_selective_scan_numba(
    u: Tensor,  # (B, D, L) raster
    delta: Tensor,  # (B, K, D, L) raster
    A: Tensor,  # (K*D, N)
    B: Tensor,  # (B, K, N, L) raster
    C: Tensor,  # (B, K, N, L) raster
    D: Tensor | None,  # (K*D,)
    delta_bias: Tensor | None,  # (K*D,)
    orders: Tensor,  # (K, L) int
    delta_softplus: bool = True,
    threads: int | None = None,
    dt_weight: Tensor | None = None,
) -> Tensor:
    """The fused scan on CPU tensors, forward only; see ``hybrid_selective_scan`` for the contract.

    Inputs that are transposed views of channels-last memory (as SS2D passes them) are used without a
    copy; delta's bias and softplus are applied by a compiled pass too. ``threads`` (default
    ``torch.get_num_threads()``, so ``OMP_NUM_THREADS`` limits both) split the channel blocks.

    With ``dt_weight`` (K, D, R), ``delta`` is the low-rank (B, K, R, L) input of SS2D's dt projection and
    the kernel computes ``delta = dt_weight @ delta`` itself (a torch bmm with inner size R is slow).

    Returns:
        (B, D, L) float32, a view of (B, L, D) memory, summed over the K directions.
    """
    kern = _kernel()
    if kern is None:
        raise ConfigError("selective-scan backend 'numba' needs the numba package (pip install mambaad[cpu])")
    if u.device.type != "cpu":
        raise ConfigError(f"selective-scan backend 'numba' needs CPU tensors, got device {u.device}")
    from mambaad.scan.triton_scan import _check_shapes

    bsz, d, length = u.shape
    k, n = orders.shape[0], A.shape[1]
    _check_shapes(u, delta, A, B, C, D, delta_bias, orders, dt_weight)
    _check_no_grad(u, delta, A, B, C, D, delta_bias, dt_weight)
    pad = -d % kern.BLOCK  # zero channels: u = 0 keeps their state 0; their outputs are dropped
    f32 = torch.float32

    def channels_last(t: Tensor) -> Tensor:  # pad D (the last dim) to a multiple of BLOCK
        return (F.pad(t, (0, pad)) if pad else t).contiguous()

    with torch.no_grad():
        nblk = (d + pad) // kern.BLOCK
        u_cl = channels_last(u.to(f32).transpose(1, 2))  # (B, L, Dp); no copy for SS2D's views
        u_blk = u_cl.view(bsz, length, nblk, kern.BLOCK).transpose(1, 2).contiguous()  # (B, nblk, L, 16)
        bias = delta_bias.to(f32).view(k, d) if delta_bias is not None else torch.zeros(k, d, dtype=f32)
        bias = channels_last(bias)  # (K, Dp)
        a2 = channels_last(A.to(f32).view(k, d, n).transpose(1, 2) * kern.LOG2E)  # (K, N, Dp)
        b_cl, c_cl = (_unit_inner_stride(t.to(f32).transpose(2, 3)) for t in (B, C))  # (B, K, L, N)
        skip = channels_last(D.to(f32).view(k, d) if D is not None else torch.zeros(k, d, dtype=f32))
        idx = orders.to(device="cpu", dtype=torch.int64).contiguous()
        out = torch.empty(bsz, nblk, length, kern.BLOCK, dtype=f32)  # (B, nblk, L, 16)
        dt_sp = torch.empty(bsz, k, nblk, length, kern.BLOCK, dtype=f32)  # softplus(delta + bias), blocked
        if dt_weight is None:
            dt = channels_last(delta.to(f32).transpose(2, 3))  # (B, K, L, Dp); no copy for SS2D's views
            arrays = [dt.numpy(), bias.numpy(), dt_sp.numpy(), delta_softplus]
            _run_jobs(kern.bias_softplus, arrays, bsz * k, threads)
        else:
            dtr = delta.to(f32).transpose(2, 3).contiguous()  # (B, K, L, R)
            w = channels_last(dt_weight.to(f32).transpose(1, 2))  # (K, R, Dp)
            arrays = [dtr.numpy(), w.numpy(), bias.numpy(), dt_sp.numpy(), delta_softplus]
            _run_jobs(kern.project_bias_softplus, arrays, bsz * k, threads)
        arrays = [t.numpy() for t in (u_blk, dt_sp, a2, b_cl, c_cl, skip, idx, out)]
        _run_jobs(kern.hybrid_scan_fwd, arrays, bsz * nblk, threads)
        out = out.transpose(1, 2).reshape(bsz, length, d + pad)  # (B, L, Dp)
    return out[:, :, :d].transpose(1, 2)  # (B, D, L) view
