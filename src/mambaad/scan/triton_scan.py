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

Kernel shape: one program per (b, k, block of channels) walks L in chunks of ``chunk`` positions; inside a
chunk the recurrence is a parallel ``tl.associative_scan`` (state (BLOCK_D, N, chunk) in registers), across
chunks the (BLOCK_D, N) state is carried in registers. The K-direction sum is an fp32 atomic add into the
raster output (each raster pixel receives K adds). The forward saves the state entering every chunk
(B, K*D, n_chunks, N) fp32 for the backward, which walks the chunks in reverse, recomputes the states of a
chunk from its saved start state, and runs the adjoint recurrence as a reverse associative scan.

Triton is imported lazily: importing this module never needs it (CPU-only and Windows installs).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import Tensor

from mambaad.errors import ConfigError

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

    return {"fwd": kern.fwd_kernel, "bwd": kern.bwd_kernel}


# ---------------------------------------------------------------- launch helpers


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _launch_config(d: int, n: int, length: int, block_d: int | None, chunk: int | None) -> tuple[int, int]:
    """(BLOCK_D, CHUNK): keep BLOCK_D * N * CHUNK around 4096 fp32 per live (BD, N, T) tensor."""
    chunk = chunk or min(64, max(16, _pow2(length)))
    block_d = block_d or max(1, min(_pow2(d), 4096 // (_pow2(n) * chunk)))
    for name, value in (("block_d", block_d), ("chunk", chunk)):
        if value & (value - 1):
            raise ConfigError(f"triton scan {name} must be a power of two, got {value}")
    return block_d, chunk


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
    ) -> Tensor:
        kern = _kernels()
        bsz, d, length = u.shape
        k, n = B.shape[1], A.shape[1]
        n_chunks = -(-length // chunk)
        A = A.contiguous()
        orders32 = orders.to(device=u.device, dtype=torch.int32).contiguous()
        save = any(ctx.needs_input_grad[:7])
        # (B, D, L) view of (B, L, D) memory: the channels of one pixel are contiguous, so the
        # scattered (atomic) writes of a program's BLOCK_D channels at a pixel hit one segment
        out = torch.zeros(bsz, length, d, device=u.device, dtype=torch.float32).transpose(1, 2)
        states = torch.empty(bsz, k * d, n_chunks if save else 1, n, device=u.device, dtype=torch.float32)
        dummy = A  # never read when the HAS_* flag is off
        grid = (bsz * k, -(-d // block_d))
        kern["fwd"][grid](
            u, delta, A, B, C, D if D is not None else dummy,
            delta_bias if delta_bias is not None else dummy, orders32, out, states,
            k, d, length, n, n_chunks,
            *u.stride(), *delta.stride(), *B.stride(), *C.stride(), *out.stride(),
            HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
            SAVE_STATES=save, BLOCK_D=block_d, BLOCK_N=_pow2(n), CHUNK=chunk, num_warps=num_warps,
        )  # fmt: skip
        if save:
            ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, orders32, states)
            ctx.cfg = (delta_softplus, block_d, chunk, num_warps, n_chunks)
        return out

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        u, delta, A, B, C, D, delta_bias, orders32, states = ctx.saved_tensors
        delta_softplus, block_d, chunk, num_warps, n_chunks = ctx.cfg
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
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dA.to(A.dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            dD.to(D.dtype) if D is not None else None,
            dbias.to(delta_bias.dtype) if delta_bias is not None else None,
            None,
            None,
            None,
            None,
            None,
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
    num_warps: int = 4,
) -> Tensor:
    """The fused Triton scan (forward and backward); see :func:`hybrid_selective_scan` for the contract.

    ``block_d`` (channels per program) and ``chunk`` (positions per parallel scan) are powers of two;
    None picks ``chunk = min(64, L)`` and ``block_d`` so that block_d * N * chunk ~ 4096.
    """
    if not triton_available():
        raise ConfigError("selective-scan backend 'triton' needs the triton package and a CUDA device")
    _check_shapes(u, delta, A, B, C, D, delta_bias, orders)
    block_d, chunk = _launch_config(u.shape[1], A.shape[1], u.shape[2], block_d, chunk)
    return _HybridScanFn.apply(
        u, delta, A, B, C, D, delta_bias, orders, delta_softplus, block_d, chunk, num_warps
    )


def _check_shapes(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    orders: Tensor,
) -> None:
    """Shape contract, checked once per call (cheap; the kernel trusts it)."""
    if u.dim() != 3 or delta.dim() != 4 or B.dim() != 4 or C.dim() != 4 or orders.dim() != 2:
        raise ValueError(
            "hybrid scan expects u (B, D, L), delta (B, K, D, L), B/C (B, K, N, L), orders (K, L); got "
            f"{tuple(u.shape)}, {tuple(delta.shape)}, {tuple(B.shape)}, {tuple(C.shape)}, {tuple(orders.shape)}"
        )
    bsz, d, length = u.shape
    k, n = orders.shape[0], A.shape[-1]
    expected = {
        "delta": (delta, (bsz, k, d, length)),
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
        delta: (B, K, D, L) dt_proj output before bias and softplus, per direction.
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
        **kwargs: launch options for ``triton`` (``block_d``, ``chunk``, ``num_warps``); ``threads`` for
            ``numba``.

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
