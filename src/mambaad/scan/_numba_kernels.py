"""numba kernels of the CPU hybrid scan (imported only when numba is installed; see numba_scan.py)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

BLOCK = 16  # channels per job and per inner vector loop; the wrapper pads D to a multiple of it
LOG2E = 1.4426950408889634

# float32 constants: numba freezes module globals by value, np.float32 keeps the arithmetic in fp32
_Y_MIN = np.float32(-126.0)  # keeps 2^n a normal float; 2^-126 ~ 1.2e-38 stands for 0
# 2^f on |f| <= 1/2: degree-6 fit with p(0) = 1 exactly (max relative error 1.0e-7 in fp32, mean 9e-10).
# The bias matters more than the maximum: the decay exp(delta A) is multiplied over hundreds of steps, and
# the earlier degree-5 fit (p(0) = 1 + 1 ulp, mean bias +5e-8) moved the official parity fixture's mse0 by
# 1.6e-5 (tolerance 6e-6).
_C0 = np.float32(1.0)
_ONE = np.float32(1.0)
_C1 = np.float32(0.6931471824645996)
_C2 = np.float32(0.24022647738456726)
_C3 = np.float32(0.055503327399492264)
_C4 = np.float32(0.009618434123694897)
_C5 = np.float32(0.001339873531833291)
_C6 = np.float32(0.00015353884373325855)
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
    p = (((((_C6 * f + _C5) * f + _C4) * f + _C3) * f + _C2) * f + _C1) * f + _C0
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
def _scatter_blocks(row: np.ndarray, out: np.ndarray, t: int) -> None:
    """Copy one pixel's Dp channels (a flat row) to step t of the blocked (nblk, L, BLOCK) layout."""
    for blk in range(out.shape[0]):
        for j in range(BLOCK):
            out[blk, t, j] = row[blk * BLOCK + j]


@njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
def bias_softplus(
    dt: np.ndarray,  # (B, K, L, Dp) fp32 raw delta
    bias: np.ndarray,  # (K, Dp) fp32
    out: np.ndarray,  # (B, K, Dp / BLOCK, L, BLOCK) fp32, blocked (see ``hybrid_scan_fwd``)
    delta_softplus: bool,
    job_start: int,
    job_stop: int,
) -> None:
    """out = softplus(dt + bias) for the (b, k) rows ``job_start:job_stop``, written in blocked layout.

    A separate pass that vectorises; inside the scan's step loop it was slower.
    """
    k_dirs, length, d = dt.shape[1], dt.shape[2], dt.shape[3]
    row = np.empty(d, np.float32)
    for job in range(job_start, job_stop):
        b = job // k_dirs
        k = job % k_dirs
        bias_k = bias[k]
        for t in range(length):
            row_in = dt[b, k, t]
            if delta_softplus:
                for j in range(d):
                    row[j] = softplus(row_in[j] + bias_k[j])
            else:
                for j in range(d):
                    row[j] = row_in[j] + bias_k[j]
            _scatter_blocks(row, out[b, k], t)


@njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
def project_bias_softplus(
    dtr: np.ndarray,  # (B, K, L, R) fp32 low-rank dt (x_proj output)
    w: np.ndarray,  # (K, R, Dp) fp32 dt_proj weight
    bias: np.ndarray,  # (K, Dp) fp32
    out: np.ndarray,  # (B, K, Dp / BLOCK, L, BLOCK) fp32, blocked (see ``hybrid_scan_fwd``)
    delta_softplus: bool,
    job_start: int,
    job_stop: int,
) -> None:
    """out = softplus(dtr @ w + bias) for the (b, k) rows ``job_start:job_stop``, in blocked layout.

    SS2D's dt projection has rank R = C/16 (4 to 32): as a torch bmm with such a short inner dimension it
    ran at ~1-2 GFLOP/s; here it is R vectorised multiply-adds per output, fused with bias and softplus.
    """
    k_dirs, length, rank = dtr.shape[1], dtr.shape[2], dtr.shape[3]
    d = w.shape[2]
    row = np.empty(d, np.float32)
    for job in range(job_start, job_stop):
        b = job // k_dirs
        k = job % k_dirs
        bias_k = bias[k]
        for t in range(length):
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
            _scatter_blocks(row, out[b, k], t)


def _has_avx512() -> bool:
    """Whether numba compiles for a CPU with AVX-512 F and DQ (vscalefps, vreduceps).

    Follows ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` when set (e.g. ``generic`` for a portable cache).
    """
    import llvmlite.binding as llvm

    if numba.config.CPU_FEATURES is not None:
        features = numba.config.CPU_FEATURES
    elif numba.config.CPU_NAME not in (None, "host"):
        return False
    else:
        features = llvm.get_host_cpu_features().flatten()
    flags = set(features.split(","))
    return {"+avx512f", "+avx512dq"} <= flags


USE_AVX512 = _has_avx512()  # read when the step below is compiled; tests flip it to check the other path
_V16 = ir.VectorType(ir.FloatType(), BLOCK)


@intrinsic
def _scan_step(
    typingctx: Any, h: Any, a_k: Any, skip: Any, x: Any, u: Any, out: Any, b_p: Any, c_p: Any
) -> Any:
    """One recurrence step of BLOCK = 16 channels as explicit 16-float vectors (LLVM IR):

        h_n = 2^(x a_n) h_n + x u B_n  (n < N);   out += skip u + sum_n C_n h_n

    All arguments are 1-D contiguous float32 arrays: h and a_k (N * 16), skip, x, u, out (16), b_p, c_p (N).
    Why IR and not a numba loop: numba's loops kept the step's inputs in small buffers written lane by lane
    and read back as vectors (store-forwarding stalls, ~60 ns per step), LLVM chose 256-bit vectors on
    this CPU, and the sum over n ran as one dependent chain. Here the 16 lanes are one vector (one zmm
    with AVX-512, split by LLVM into 2 ymm / 4 xmm elsewhere), the sum over n uses two accumulators, and
    with AVX-512 2^y costs vreduceps (f = y - rint(y)) + the degree-5 polynomial + vscalefps (2^n exactly,
    0 on underflow). Without AVX-512: rint, and 2^n built from its bits with the exponent clamped.
    """
    sig = types.void(h, a_k, skip, x, u, out, b_p, c_p)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i32, i16, i64 = ir.IntType(32), ir.IntType(16), ir.IntType(64)
        arrays = [context.make_array(t)(context, builder, v) for t, v in zip(signature.args, args)]
        hp, ap, skp, xp, up, op, bp, cp = (a.data for a in arrays)
        n_state = builder.extract_value(arrays[6].shape, 0)
        mod = builder.module
        v16 = ir.PointerType(_V16)
        undef = ir.Constant(_V16, ir.Undefined)
        zero, one, two = (ir.Constant(i64, c) for c in (0, 1, 2))

        def vconst(c: float) -> Any:
            return ir.Constant(_V16, [float(c)] * BLOCK)

        def fn(name: str, n_args: int, extra: list[Any] | None = None) -> Any:
            return cgutils.get_or_insert_function(
                mod, ir.FunctionType(_V16, [_V16] * n_args + (extra or [])), name
            )

        fma = fn("llvm.fma.v16f32", 3)

        def vload(ptr: Any, off: Any = zero) -> Any:
            return builder.load(builder.bitcast(builder.gep(ptr, [off]), v16), align=4)

        def vstore(v: Any, ptr: Any, off: Any = zero) -> None:
            builder.store(v, builder.bitcast(builder.gep(ptr, [off]), v16), align=4)

        def splat(scalar: Any) -> Any:
            v = builder.insert_element(undef, scalar, ir.Constant(i32, 0))
            return builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(i32, BLOCK), [0] * BLOCK))

        def exp2(y: Any) -> Any:  # y <= 0
            if USE_AVX512:
                mask, cur = ir.Constant(i16, -1), ir.Constant(i32, 4)
                reduce = fn("llvm.x86.avx512.mask.reduce.ps.512", 1, [i32, _V16, i16, i32])
                f = builder.call(reduce, [y, ir.Constant(i32, 8), undef, mask, cur])  # y - rint(y)
                n = builder.fsub(y, f)
            else:
                y = builder.call(fn("llvm.maxnum.v16f32", 2), [y, vconst(_Y_MIN)])
                n = builder.call(fn("llvm.rint.v16f32", 1), [y])
                f = builder.fsub(y, n)
            p = vconst(_C6)
            for c in (_C5, _C4, _C3, _C2, _C1, _C0):
                p = builder.call(fma, [p, f, vconst(c)])
            if USE_AVX512:
                scalef = fn("llvm.x86.avx512.mask.scalef.ps.512", 3, [i16, i32])
                return builder.call(scalef, [p, n, undef, ir.Constant(i16, -1), ir.Constant(i32, 4)])
            vi32 = ir.VectorType(i32, BLOCK)
            bits = builder.add(builder.fptosi(n, vi32), ir.Constant(vi32, [127] * BLOCK))
            bits = builder.shl(bits, ir.Constant(vi32, [23] * BLOCK))
            return builder.fmul(p, builder.bitcast(bits, _V16))

        xv, uv = vload(xp), vload(up)
        xu = builder.fmul(xv, uv)

        def update(n: Any, acc: Any) -> Any:
            off = builder.mul(n, ir.Constant(i64, BLOCK))
            decay = exp2(builder.fmul(xv, vload(ap, off)))
            b_n = splat(builder.load(builder.gep(bp, [n])))
            c_n = splat(builder.load(builder.gep(cp, [n])))
            h_new = builder.call(fma, [decay, vload(hp, off), builder.fmul(xu, b_n)])
            vstore(h_new, hp, off)
            return builder.call(fma, [c_n, h_new, acc])

        y0 = builder.fmul(vload(skp), uv)
        zero_v = vconst(0.0)
        pairs = builder.sdiv(n_state, two)
        entry = builder.block
        loop = builder.append_basic_block("step.pairs")
        after = builder.append_basic_block("step.after")
        builder.cbranch(builder.icmp_signed(">", pairs, zero), loop, after)
        builder.position_at_end(loop)  # two n per iteration, two accumulators: halves the dependent chain
        i = builder.phi(i64)
        acc_a, acc_b = builder.phi(_V16), builder.phi(_V16)
        n0 = builder.mul(i, two)
        new_a, new_b = update(n0, acc_a), update(builder.add(n0, one), acc_b)
        i_next = builder.add(i, one)
        for phi, first, nxt in ((i, zero, i_next), (acc_a, y0, new_a), (acc_b, zero_v, new_b)):
            phi.add_incoming(first, entry)
            phi.add_incoming(nxt, builder.block)
        builder.cbranch(builder.icmp_signed("<", i_next, pairs), loop, after)
        builder.position_at_end(after)
        sum_a, sum_b = builder.phi(_V16), builder.phi(_V16)
        for phi, first, last in ((sum_a, y0, new_a), (sum_b, zero_v, new_b)):
            phi.add_incoming(first, entry)
            phi.add_incoming(last, loop)
        total = builder.fadd(sum_a, sum_b)
        before_odd = builder.block
        with builder.if_then(builder.icmp_signed("!=", builder.mul(pairs, two), n_state)):
            with_odd = update(builder.sub(n_state, one), total)
            odd_block = builder.block
        y = builder.phi(_V16)
        y.add_incoming(total, before_odd)
        y.add_incoming(with_odd, odd_block)
        vstore(builder.fadd(vload(op), y), op)
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, fastmath=True, cache=True, error_model="numpy")
def hybrid_scan_fwd(
    u: np.ndarray,  # (B, nblk, L, BLOCK) fp32 blocked: channel d0 + j of block d0 / BLOCK at [.., j]
    dt: np.ndarray,  # (B, K, nblk, L, BLOCK) fp32, softplus(delta + bias) (``project_bias_softplus``)
    a2: np.ndarray,  # (K, N, Dp) fp32, A * log2(e) (negative)
    bm: np.ndarray,  # (B, K, L, N) fp32
    cm: np.ndarray,  # (B, K, L, N) fp32
    skip: np.ndarray,  # (K, Dp) fp32
    orders: np.ndarray,  # (K, L) int64
    out: np.ndarray,  # (B, nblk, L, BLOCK) fp32, overwritten
    job_start: int,
    job_stop: int,
) -> None:
    """Jobs ``job_start:job_stop`` of the (batch, block of BLOCK channels) grid; each walks its K directions
    and L steps in order.

    Jobs own disjoint channel blocks of ``out``, so the K-direction sum needs no atomics, and threads can
    run disjoint job ranges at once (``nogil``). Threads come from the caller, not from numba's OpenMP
    layer: its workers spin after each parallel region and starve torch's own OpenMP threads. The blocked
    layout keeps one job's u, delta and out rows contiguous (L x 64 bytes), so the permuted walk stays in
    L2 and few pages; the state lives in a small local buffer (L1).
    """
    n_blocks, length = u.shape[1], u.shape[2]
    k_dirs, n_state = a2.shape[0], a2.shape[1]
    h = np.empty(n_state * BLOCK, np.float32)
    a_k = np.empty(n_state * BLOCK, np.float32)
    for job in range(job_start, job_stop):
        b = job // n_blocks
        blk = job % n_blocks
        d0 = blk * BLOCK
        u_blk = u[b, blk]
        out_blk = out[b, blk]
        out_blk[:] = 0.0
        for k in range(k_dirs):
            for n in range(n_state):
                for j in range(BLOCK):
                    a_k[n * BLOCK + j] = a2[k, n, d0 + j]
                    h[n * BLOCK + j] = 0.0
            skip_k = skip[k, d0 : d0 + BLOCK]
            dt_blk = dt[b, k, blk]
            b_k = bm[b, k]
            c_k = cm[b, k]
            order = orders[k]
            for t in range(length):
                p = order[t]
                _scan_step(h, a_k, skip_k, dt_blk[p], u_blk[p], out_blk[p], b_k[p], c_k[p])
