"""numba kernels of the CPU hybrid scan (imported only when numba is installed; see numba_scan.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

BLOCK = 16  # channels per job and per inner vector loop; the wrapper pads D to a multiple of it
LOG2E = 1.4426950408889634

# float32 constants: numba freezes module globals by value, np.float32 keeps the arithmetic in fp32
_Y_MIN = np.float32(-126.0)  # keeps 2^n a normal float; 2^-126 ~ 1.2e-38 stands for 0
# 2^f on |f| <= 1/2: degree-5 Chebyshev fit (max relative error 2.5e-7 evaluated in fp32)
_C0 = np.float32(1.0000001192092896)
_ONE = np.float32(1.0)
_C1 = np.float32(0.6931471824645996)
_C2 = np.float32(0.2402210682630539)
_C3 = np.float32(0.05550327152013779)
_C4 = np.float32(0.009676037356257439)
_C5 = np.float32(0.0013400432653725147)
_LOG2E32 = np.float32(LOG2E)
_ZERO = np.float32(0.0)
# 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...): the series of log1p through s = z / (2 + z)
_S3, _S5, _S7, _S9, _S11 = (np.float32(1 / i) for i in (3, 5, 7, 9, 11))
_TWO = np.float32(2.0)


@intrinsic
def _int_bits_as_float(typingctx: Any, x: Any) -> Any:
    """Reinterpret the low 32 bits of an integer as a float32 (LLVM bitcast; vectorises, unlike ldexp)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        bits = args[0] if x.bitwidth == 32 else builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(x), codegen


@njit(fastmath=True, cache=True, error_model="numpy")
def exp2_nonpos(y: float) -> float:
    """2^y for float32 y <= 0 in straight-line arithmetic, so the channel loop vectorises.

    numba's ``math.exp`` is a scalar libm call unless llvmlite was built with Intel SVML (the PyPI wheels
    are not). Split y = n + f with n = rint(y), |f| <= 1/2; 2^f from a polynomial; 2^n from its bits.
    """
    y = max(y, _Y_MIN)
    n = np.rint(y)
    f = y - n
    p = ((((_C5 * f + _C4) * f + _C3) * f + _C2) * f + _C1) * f + _C0
    return p * _int_bits_as_float((np.int32(n) + 127) << 23)


@njit(fastmath=True, cache=True, error_model="numpy")
def softplus(x: float) -> float:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), vectorisable (relative error ~2e-7).

    log1p(z) for z in (0, 1] from 2 atanh(s), s = z / (2 + z) <= 1/3: the odd series to s^11.
    """
    z = exp2_nonpos(-abs(x) * _LOG2E32)
    s = z / (_TWO + z)
    s2 = s * s
    series = ((((_S11 * s2 + _S9) * s2 + _S7) * s2 + _S5) * s2 + _S3) * s2
    return max(x, _ZERO) + _TWO * s * (_ONE + series)


@njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
def bias_softplus(
    dt: np.ndarray,  # (B, K, L, Dp) fp32 raw delta
    bias: np.ndarray,  # (K, Dp) fp32
    out: np.ndarray,  # (B, K, L, Dp) fp32
    delta_softplus: bool,
    job_start: int,
    job_stop: int,
) -> None:
    """out = softplus(dt + bias) for the (b, k) rows ``job_start:job_stop``.

    A flat pass over contiguous rows, which vectorises; inside the scan's step loop it was slower.
    """
    k_dirs, length, d = dt.shape[1], dt.shape[2], dt.shape[3]
    for job in range(job_start, job_stop):
        b = job // k_dirs
        k = job % k_dirs
        bias_k = bias[k]
        for t in range(length):
            row_in = dt[b, k, t]
            row_out = out[b, k, t]
            if delta_softplus:
                for j in range(d):
                    row_out[j] = softplus(row_in[j] + bias_k[j])
            else:
                for j in range(d):
                    row_out[j] = row_in[j] + bias_k[j]


@njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
def project_bias_softplus(
    dtr: np.ndarray,  # (B, K, L, R) fp32 low-rank dt (x_proj output)
    w: np.ndarray,  # (K, R, Dp) fp32 dt_proj weight
    bias: np.ndarray,  # (K, Dp) fp32
    out: np.ndarray,  # (B, K, L, Dp) fp32
    delta_softplus: bool,
    job_start: int,
    job_stop: int,
) -> None:
    """out = softplus(dtr @ w + bias) for the (b, k) rows ``job_start:job_stop``.

    SS2D's dt projection has rank R = C/16 (4 to 32): as a torch bmm with such a short inner dimension it
    ran at ~1-2 GFLOP/s; here it is R vectorised multiply-adds per output, fused with bias and softplus.
    """
    k_dirs, length, rank = dtr.shape[1], dtr.shape[2], dtr.shape[3]
    d = w.shape[2]
    for job in range(job_start, job_stop):
        b = job // k_dirs
        k = job % k_dirs
        bias_k = bias[k]
        for t in range(length):
            row = out[b, k, t]
            for j in range(d):
                row[j] = bias_k[j]
            for r in range(rank):
                coef = dtr[b, k, t, r]
                w_r = w[k, r]
                for j in range(d):
                    row[j] += coef * w_r[j]
            if delta_softplus:
                for j in range(d):
                    row[j] = softplus(row[j])


@njit(fastmath=True, cache=True, error_model="numpy")
def _scan_step(
    h: np.ndarray,  # (N * BLOCK,) state, updated
    a_k: np.ndarray,  # (N * BLOCK,) A * log2(e) of the block's channels
    x: np.ndarray,  # (BLOCK,) delta at the step
    xu: np.ndarray,  # (BLOCK,) delta * u
    y: np.ndarray,  # (BLOCK,) output, accumulated into
    b_p: np.ndarray,  # (N,) B at the step's pixel
    c_p: np.ndarray,  # (N,) C at the step's pixel
) -> None:
    """One recurrence step for BLOCK channels: h = 2^(x a) h + x u B;  y += <C, h>.

    Flat 1-D buffers and a constant trip count: the form in which LLVM vectorises the channel loop.
    """
    for n in range(b_p.shape[0]):
        bn = b_p[n]
        cn = c_p[n]
        for j in range(BLOCK):
            i = n * BLOCK + j
            hv = exp2_nonpos(x[j] * a_k[i]) * h[i] + xu[j] * bn
            h[i] = hv
            y[j] += cn * hv


@njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
def hybrid_scan_fwd(
    u: np.ndarray,  # (B, L, Dp) fp32, Dp a multiple of BLOCK
    dt: np.ndarray,  # (B, K, L, Dp) fp32, softplus(delta + bias) (``bias_softplus``)
    a2: np.ndarray,  # (K, N, Dp) fp32, A * log2(e) (negative)
    bm: np.ndarray,  # (B, K, L, N) fp32
    cm: np.ndarray,  # (B, K, L, N) fp32
    skip: np.ndarray,  # (K, Dp) fp32
    orders: np.ndarray,  # (K, L) int64
    out: np.ndarray,  # (B, L, Dp) fp32, overwritten
    job_start: int,
    job_stop: int,
) -> None:
    """Jobs ``job_start:job_stop`` of the (batch, block of BLOCK channels) grid; each walks its K directions
    and L steps in order.

    Jobs own disjoint channel columns of ``out``, so the K-direction sum needs no atomics, and threads can
    run disjoint job ranges at once (``nogil``). Threads come from the caller, not from numba's OpenMP
    layer: its workers spin after each parallel region and starve torch's own OpenMP threads. The block's
    state lives in small local buffers (L1); all BLOCK channels read the same pixel at a step, so their
    loads are contiguous.
    """
    length, d = u.shape[1], u.shape[2]
    k_dirs, n_state = a2.shape[0], a2.shape[1]
    n_blocks = d // BLOCK
    h = np.empty(n_state * BLOCK, np.float32)
    a_k = np.empty(n_state * BLOCK, np.float32)
    x = np.empty(BLOCK, np.float32)
    xu = np.empty(BLOCK, np.float32)
    y = np.empty(BLOCK, np.float32)
    for job in range(job_start, job_stop):
        b = job // n_blocks
        d0 = (job % n_blocks) * BLOCK
        for p in range(length):
            for j in range(BLOCK):
                out[b, p, d0 + j] = 0.0
        for k in range(k_dirs):
            for n in range(n_state):
                for j in range(BLOCK):
                    a_k[n * BLOCK + j] = a2[k, n, d0 + j]
                    h[n * BLOCK + j] = 0.0
            for t in range(length):
                p = orders[k, t]
                for j in range(BLOCK):
                    x[j] = dt[b, k, p, d0 + j]
                    xu[j] = x[j] * u[b, p, d0 + j]
                    y[j] = skip[k, d0 + j] * u[b, p, d0 + j]
                _scan_step(h, a_k, x, xu, y, bm[b, k, p], cm[b, k, p])
                for j in range(BLOCK):
                    out[b, p, d0 + j] += y[j]
