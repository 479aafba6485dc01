"""SS2D's per-direction projections x -> (dt, B, C) and dt -> delta, with fast weight gradients.

Both act on each position separately, so they commute with the scan orders: the fused scans compute them
on the raster map, channels-last. Two things differ from a plain einsum, never the values:

* a projection's weight gradient sums over B x L positions (65,536 at batch 16 and 64 x 64) into a small
  matrix; cuBLAS ran each as one skinny fp32 GEMM with few output tiles (11.5 ms per training step on an
  H200): :func:`weight_grad` sums partial products over pieces of ``WEIGHT_GRAD_ROWS`` positions instead;
* delta = dt_proj(dt) is K x D values per position (as large as the state saved per 16 steps):
  the Triton scan takes the low-rank dt and the weight (``dt_weight=``), saves those and recomputes delta
  in its backward (:func:`low_rank_delta`, :func:`low_rank_delta_grads`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

WEIGHT_GRAD_ROWS = 1024  # positions per partial product of a projection's weight gradient


def weight_grad(g: Tensor, x: Tensor) -> Tensor:
    """sum over positions of g^T x: (rows, P) x (rows, Q) -> (P, Q), the rows cut into pieces.

    g: (rows, P), x: (rows, Q) or batched (..., rows, P) / (..., rows, Q) -> (..., P, Q).
    """
    rows = g.shape[-2]
    pieces = max(1, rows // WEIGHT_GRAD_ROWS)
    while rows % pieces:
        pieces -= 1
    g = g.reshape(*g.shape[:-2], pieces, rows // pieces, g.shape[-1])
    x = x.reshape(*x.shape[:-2], pieces, rows // pieces, x.shape[-1])
    return (g.transpose(-1, -2) @ x).sum(-3)


def _common_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


class DirectionProjection(torch.autograd.Function):
    """SS2D's x_proj: x (B, L, Din) shared by the K directions, w (K, Dout, Din) -> (B, K, L, Dout).

    Same values as the einsum; only the weight gradient is computed differently (:func:`weight_grad`).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)
        return torch.einsum("bld,kcd->bklc", x, w)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        # backward runs outside autocast: under bf16 autocast g is bf16 while x / w were saved in fp32
        dtype = _common_dtype(g, x, w)
        g, x, w = g.to(dtype), x.to(dtype), w.to(dtype)
        dx = dw = None
        k, dout, din = w.shape
        if ctx.needs_input_grad[0]:
            dx = torch.einsum("bklc,kcd->bld", g, w)
        if ctx.needs_input_grad[1]:  # one (B*L, K*Dout) x (B*L, Din) product
            gl = g.permute(0, 2, 1, 3).reshape(-1, k * dout)  # (B*L, K*Dout)
            dw = weight_grad(gl, x.reshape(-1, din)).view(k, dout, din)
        return dx, dw


def low_rank_delta(dts: Tensor, weight: Tensor) -> Tensor:
    """dt_proj: dts (B, K, R, L) and weight (K, D, R) -> delta (B, K, D, L), a view of (B, K, L, D) memory.

    Computed in dts' dtype when called outside autocast (the Triton scan calls it so in its forward and in
    its backward), so the backward's recomputation gives the forward's values.
    """
    return torch.einsum("bkrl,kdr->bkld", dts, weight.to(dts.dtype)).transpose(2, 3)


def low_rank_delta_grads(
    ddelta: Tensor, dts: Tensor, weight: Tensor, need: tuple[bool, bool] = (True, True)
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`low_rank_delta` for ddelta (B, K, D, L): d dts (B, K, R, L) and d weight (K, D, R)."""
    dtype = _common_dtype(ddelta, dts, weight)
    g = ddelta.transpose(2, 3).to(dtype)  # (B, K, L, D)
    x = dts.transpose(2, 3).to(dtype)  # (B, K, L, R)
    d_dts = torch.einsum("bkld,kdr->bkrl", g, weight.to(dtype)) if need[0] else None
    d_weight = weight_grad(g, x).sum(0) if need[1] else None  # (B, K, D, R) summed over the batch
    return d_dts, d_weight


__all__ = ["DirectionProjection", "low_rank_delta", "low_rank_delta_grads", "weight_grad"]
