"""Triton kernels of the fused hybrid selective scan (imported only by ``triton_scan._kernels``).

Kept apart so that ``import mambaad`` never imports triton; see ``triton_scan`` for the algorithm.
"""

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _lin_combine(a1, b1, a2, b2):
    # (a1, b1) is the earlier segment: x -> a2 (a1 x + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), the log1p as 2 atanh(s) with s = e / (2 + e) <= 1/3,
    summed to s^15: ~1e-7 relative error apart from exp's own, where log(1 + exp(x)) loses e^x below
    x ~ -17, in half the instructions of libdevice's log (one exp2 and an approximate division)."""
    e = tl.exp2(-tl.abs(x) * LOG2E)  # (0, 1]
    s = e / (2.0 + e)
    z = s * s
    p = z * (1.0 / 15.0) + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return tl.maximum(x, 0.0) + 2.0 * s * p


@triton.jit
def _load_bias(bias_ptr, ch, mask_d, HAS_BIAS: tl.constexpr, COLUMN: tl.constexpr):
    """delta_bias of the channels ``ch`` in fp32, (BD,) or as a (BD, 1) column; 0.0 without a bias."""
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=mask_d, other=0.0).to(tl.float32)
        if COLUMN:
            bias = bias[:, None]
    return bias


@triton.jit
def _delta(raw, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(dt_proj output + bias, delta = softplus of it): each step only where switched on."""
    if HAS_BIAS:
        raw = raw + bias
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return raw, dt


@triton.jit
def _program_block(K, D, N, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's (b, k), its channels and states with their masks, and channel index k * D + d.

    Every kernel runs on the grid (B * K, cdiv(D, BLOCK_D)).
    """
    pid_bk = tl.program_id(0)
    b = pid_bk // K
    k = pid_bk % K
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    return b, k, offs_d, offs_n, offs_d < D, offs_n < N, k * D + offs_d


@triton.jit
def _chunk_inputs(
    ord_base, offs_t, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n, bias,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):  # fmt: skip
    """Steps ``offs_t`` of the chunked kernels as tiles (``bias`` a (BD, 1) column): pixels p, (BD, T)
    mask, u, biased dt_proj output and delta (BD, T), B and C (BN, T). Steps past the end read nothing and give delta = 0 (identities).
    """
    mask_t = offs_t < L
    p = tl.load(ord_base + offs_t, mask=mask_t, other=0)  # (T,) raster positions
    m_dt = mask_d[:, None] & mask_t[None, :]
    m_nt = mask_n[:, None] & mask_t[None, :]
    u = tl.load(u_base + p[None, :] * su_l, mask=m_dt, other=0.0).to(tl.float32)  # (BD, T)
    raw = tl.load(d_base + p[None, :] * sd_l, mask=m_dt, other=0.0).to(tl.float32)
    raw, dt = _delta(raw, bias, HAS_BIAS, SOFTPLUS)
    dt = tl.where(m_dt, dt, 0.0)
    bt = tl.load(b_base + p[None, :] * sb_l, mask=m_nt, other=0.0).to(tl.float32)  # (BN, T)
    ct = tl.load(c_base + p[None, :] * sc_l, mask=m_nt, other=0.0).to(tl.float32)
    return p, m_dt, m_nt, u, raw, dt, bt, ct


@triton.jit
def fwd_kernel(
    u_ptr, dl_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, bias_ptr, ord_ptr, out_ptr, hs_ptr,
    K, D, L, N, n_chunks,
    su_b, su_d, su_l,
    sd_b, sd_k, sd_d, sd_l,
    sb_b, sb_k, sb_n, sb_l,
    sc_b, sc_k, sc_n, sc_l,
    so_b, so_d, so_l,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, SAVE_STATES: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    b, k, offs_d, offs_n, mask_d, mask_n, ch = _program_block(K, D, N, BLOCK_D, BLOCK_N)
    offs_c = tl.arange(0, CHUNK)
    mask_dn = mask_d[:, None] & mask_n[None, :]
    a_mat = tl.load(a_ptr + ch[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    if HAS_D:
        dskip = tl.load(dskip_ptr + ch, mask=mask_d, other=0.0).to(tl.float32)
    bias = _load_bias(bias_ptr, ch, mask_d, HAS_BIAS, True)  # (BD, 1)
    u_base = u_ptr + b * su_b + offs_d[:, None] * su_d
    d_base = dl_ptr + b * sd_b + k * sd_k + offs_d[:, None] * sd_d
    b_base = b_ptr + b * sb_b + k * sb_k + offs_n[:, None] * sb_n
    c_base = c_ptr + b * sc_b + k * sc_k + offs_n[:, None] * sc_n
    o_base = out_ptr + b * so_b + offs_d[:, None] * so_d
    hs_base = hs_ptr + (b * K + k) * n_chunks * N * D + offs_n[None, :] * D + offs_d[:, None]  # (B,K,nc,N,D)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(n_chunks):
        if SAVE_STATES:
            tl.store(hs_base + c * N * D, h, mask=mask_dn)
        p, m_dt, _, u, _, dt, bt, ct = _chunk_inputs(
            ord_ptr + k * L, c * CHUNK + offs_c, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l,
            mask_d, mask_n, bias, HAS_BIAS, SOFTPLUS,
        )  # fmt: skip
        decay = tl.exp(dt[:, None, :] * a_mat[:, :, None])  # (BD, BN, T)
        drive = (dt * u)[:, None, :] * bt[None, :, :]
        acc_a, acc_b = tl.associative_scan((decay, drive), 2, _lin_combine)
        hh = acc_a * h[:, :, None] + acc_b  # (BD, BN, T): h_t
        y = tl.sum(hh * ct[None, :, :], axis=1)  # (BD, T)
        if HAS_D:
            y += dskip[:, None] * u
        tl.atomic_add(o_base + p[None, :] * so_l, y, mask=m_dt, sem="relaxed")
        h = tl.sum(tl.where((offs_c == CHUNK - 1)[None, None, :], hh, 0.0), axis=2)


@triton.jit
def bwd_kernel(
    u_ptr, dl_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, bias_ptr, ord_ptr, dout_ptr, hs_ptr,
    du_ptr, ddl_ptr, da_ptr, db_ptr, dc_ptr, dd_ptr, dbias_ptr,
    K, D, L, N, n_chunks,
    su_b, su_d, su_l,
    sd_b, sd_k, sd_d, sd_l,
    sb_b, sb_k, sb_n, sb_l,
    sc_b, sc_k, sc_n, sc_l,
    so_b, so_d, so_l,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    # Gradient buffers are fp32 and contiguous: du (B, D, L), ddelta (B, K, D, L), dA (K*D, N),
    # dB/dC (B, K, N, L), dD/dbias (K*D,). dout has the strides so_*.
    b, k, offs_d, offs_n, mask_d, mask_n, ch = _program_block(K, D, N, BLOCK_D, BLOCK_N)
    offs_c = tl.arange(0, CHUNK)
    mask_dn = mask_d[:, None] & mask_n[None, :]
    a_mat = tl.load(a_ptr + ch[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    if HAS_D:
        dskip = tl.load(dskip_ptr + ch, mask=mask_d, other=0.0).to(tl.float32)
    bias = _load_bias(bias_ptr, ch, mask_d, HAS_BIAS, True)  # (BD, 1)
    u_base = u_ptr + b * su_b + offs_d[:, None] * su_d
    d_base = dl_ptr + b * sd_b + k * sd_k + offs_d[:, None] * sd_d
    b_base = b_ptr + b * sb_b + k * sb_k + offs_n[:, None] * sb_n
    c_base = c_ptr + b * sc_b + k * sc_k + offs_n[:, None] * sc_n
    g_base = dout_ptr + b * so_b + offs_d[:, None] * so_d
    hs_base = hs_ptr + (b * K + k) * n_chunks * N * D + offs_n[None, :] * D + offs_d[:, None]  # (B,K,nc,N,D)
    du_base = du_ptr + (b * D + offs_d[:, None]) * L
    ddl_base = ddl_ptr + ((b * K + k) * D + offs_d[:, None]) * L
    db_base = db_ptr + ((b * K + k) * N + offs_n[:, None]) * L
    dc_base = dc_ptr + ((b * K + k) * N + offs_n[:, None]) * L
    g_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # dL/dh at the next chunk's first step
    da_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dd_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        h0 = tl.load(hs_base + c * N * D, mask=mask_dn, other=0.0)
        offs_t = c * CHUNK + offs_c
        p, m_dt, m_nt, u, raw, dt, bt, ct = _chunk_inputs(
            ord_ptr + k * L, offs_t, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l,
            mask_d, mask_n, bias, HAS_BIAS, SOFTPLUS,
        )  # fmt: skip
        mask_t1 = offs_t + 1 < L
        p1 = tl.load(ord_ptr + k * L + offs_t + 1, mask=mask_t1, other=0)  # next step's pixel
        m_dt1 = mask_d[:, None] & mask_t1[None, :]
        raw1 = tl.load(d_base + p1[None, :] * sd_l, mask=m_dt1, other=0.0).to(tl.float32)
        _, dt1 = _delta(raw1, bias, HAS_BIAS, SOFTPLUS)
        dy = tl.load(g_base + p[None, :] * so_l, mask=m_dt, other=0.0).to(tl.float32)  # (BD, T)
        # recompute the chunk's states from its saved start state
        decay = tl.exp(dt[:, None, :] * a_mat[:, :, None])  # (BD, BN, T)
        dtu = dt * u
        drive = dtu[:, None, :] * bt[None, :, :]
        acc_a, acc_b = tl.associative_scan((decay, drive), 2, _lin_combine)
        hh = acc_a * h0[:, :, None] + acc_b  # h_t
        # adjoint: g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}, as a reverse scan
        alpha = tl.exp(dt1[:, None, :] * a_mat[:, :, None])
        alpha = tl.where(m_dt1[:, None, :], alpha, 0.0)
        emit = dy[:, None, :] * ct[None, :, :]
        g_a, g_b = tl.associative_scan((alpha, emit), 2, _lin_combine, reverse=True)
        g = g_b + g_a * g_carry[:, :, None]  # (BD, BN, T)
        g_carry = tl.sum(tl.where((offs_c == 0)[None, None, :], g, 0.0), axis=2)
        prev = hh - drive  # exp(delta_t A) h_{t-1}
        gb = tl.sum(g * bt[None, :, :], axis=1)  # (BD, T)
        ddt = tl.sum(g * prev * a_mat[:, :, None], axis=1) + gb * u
        da_acc += tl.sum(g * prev * dt[:, None, :], axis=2)
        du = gb * dt
        if HAS_D:
            du += dskip[:, None] * dy
            dd_acc += tl.sum(dy * u, axis=1)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(m_dt, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(ddl_base + p[None, :], ddt, mask=m_dt)
        tl.atomic_add(du_base + p[None, :], du, mask=m_dt, sem="relaxed")
        dbt = tl.sum(g * dtu[:, None, :], axis=0)  # (BN, T): sum over this block's channels
        dct = tl.sum(hh * dy[:, None, :], axis=0)
        tl.atomic_add(db_base + p[None, :], dbt, mask=m_nt, sem="relaxed")
        tl.atomic_add(dc_base + p[None, :], dct, mask=m_nt, sem="relaxed")
    tl.atomic_add(da_ptr + ch[:, None] * N + offs_n[None, :], da_acc, mask=mask_dn, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dd_ptr + ch, dd_acc, mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + ch, dbias_acc, mask=mask_d, sem="relaxed")


@triton.jit
def _step_gathers(
    ord_base, t, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n,
    ROW_VEC: tl.constexpr,
):  # fmt: skip
    """Step t's loads, nothing computed on them: its pixel p, channel mask, u, dt_proj output, B, C.

    Steps past the end (t >= L) read nothing. ``ROW_VEC``: the B and C row strides are multiples of 4 (the
    launcher checked it), so rows whose start Triton knows to be 16-byte aligned load as 4-wide vectors.
    """
    valid = t < L
    p = tl.load(ord_base + t, mask=valid, other=0)  # this step's raster pixel
    m = mask_d & valid
    u = tl.load(u_base + p * su_l, mask=m, other=0.0).to(tl.float32)  # (BD,)
    raw = tl.load(d_base + p * sd_l, mask=m, other=0.0).to(tl.float32)
    pb, pc = p * sb_l, p * sc_l
    if ROW_VEC:
        pb, pc = tl.multiple_of(pb, 4), tl.multiple_of(pc, 4)
    bt = tl.load(b_base + pb, mask=mask_n & valid, other=0.0).to(tl.float32)  # (BN,)
    ct = tl.load(c_base + pc, mask=mask_n & valid, other=0.0).to(tl.float32)
    return p, m, u, raw, bt, ct


@triton.jit
def _gathered_inputs(loads, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """``_step_gathers``' tuple -> (p, mask, u, biased dt_proj output, delta, B, C); delta = 0 past the end."""
    p, m, u, raw, bt, ct = loads
    raw, dt = _delta(raw, bias, HAS_BIAS, SOFTPLUS)
    return p, m, u, raw, tl.where(m, dt, 0.0), bt, ct


@triton.jit
def _step_inputs(
    ord_base, t, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n, bias,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ROW_VEC: tl.constexpr,
):  # fmt: skip
    """Step t of the step kernels: its pixel p, channel mask, u, biased dt_proj output, delta, B, C."""
    loads = _step_gathers(
        ord_base, t, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n, ROW_VEC
    )
    return _gathered_inputs(loads, bias, HAS_BIAS, SOFTPLUS)


@triton.jit
def _block_gathers(
    ord_base, t0, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n,
    UNROLL: tl.constexpr, ROW_VEC: tl.constexpr,
):  # fmt: skip
    """The gathers of steps t0 .. t0 + UNROLL - 1 (``_step_gathers``), a tuple of tuples. Issued together,
    before any of the steps computes: the layout conversions of a step's arithmetic are barriers no load
    crosses, so gathers issued step by step make every step wait for memory (twice: its pixel, then its
    rows)."""
    out = ()
    for j in tl.static_range(UNROLL):
        args = (ord_base, t0 + j, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n)
        out = out + (_step_gathers(*args, ROW_VEC),)  # noqa: RUF005 (Triton builds tuples by concatenation)
    return out


@triton.jit
def _blocks(
    ahead, ord_base, t0, t_next, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n,
    UNROLL: tl.constexpr, ROW_VEC: tl.constexpr, GATHER: tl.constexpr,
):  # fmt: skip
    """(the gathers of the block at t0, the gathers carried into the next iteration) for GATHER 1 (gather
    the block now; ``ahead`` is passed on) and 2 (``ahead`` is this block; gather the one at t_next).
    Before the loop, :func:`_ahead` gives the first ``ahead``."""
    gathers = (L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n)
    if GATHER == 1:
        block = _block_gathers(ord_base, t0, *gathers, UNROLL, ROW_VEC)
    else:
        block = ahead
        ahead = _block_gathers(ord_base, t_next, *gathers, UNROLL, ROW_VEC)
    return block, ahead


@triton.jit
def _ahead(
    ord_base, t0, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n,
    UNROLL: tl.constexpr, ROW_VEC: tl.constexpr, GATHER: tl.constexpr,
):  # fmt: skip
    """What :func:`_blocks` carries into the first block at t0: its gathers with GATHER 2, else nothing."""
    ahead = 0
    if GATHER == 2:
        ahead = _block_gathers(
            ord_base, t0, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n, UNROLL,
            ROW_VEC,
        )  # fmt: skip
    return ahead


@triton.jit
def _combine_segments(
    h, seg_h_ptr, seg_dt_ptr, bk, first, count, step, n_seg, N, D, offs_n, offs_d, mask_nd, mask_d, a2,
):  # fmt: skip
    """Fold ``count`` segments first, first + step, ... into h, in that order: h <- exp(A sum(delta_s)) h + h_s.

    The backward's adjoint carry entering a segment, from the later segments' values computed from a zero
    carry: seg_h (B*K, n_seg, N, D), seg_dt (B*K, n_seg, D). (The row forward folds (D, N) rows inline.)
    """
    for i in range(count):
        base = bk * n_seg + first + i * step
        hs = tl.load(
            seg_h_ptr + base * N * D + offs_n[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0
        )
        dts = tl.load(seg_dt_ptr + base * D + offs_d, mask=mask_d, other=0.0)
        h = tl.exp2(dts[None, :] * a2) * h + hs
    return h


@triton.jit
def _step_program(
    a_ptr, bias_ptr, K, D, N, HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """The backward's pass-1 program: ``_program_block`` plus the (N, D) mask, A * log2(e) (exp(x A) =
    exp2(x A log2 e)) from A transposed to (N, K*D) (the channels of one state contiguous, like every
    (N, BLOCK_D) tile), and the delta bias of its channels (0.0 without bias)."""
    b, k, offs_d, offs_n, mask_d, mask_n, ch = _program_block(K, D, N, BLOCK_D, BLOCK_N)
    mask_nd = mask_n[:, None] & mask_d[None, :]
    a2 = tl.load(a_ptr + offs_n[:, None] * (K * D) + ch[None, :], mask=mask_nd, other=0.0).to(tl.float32)
    bias = _load_bias(bias_ptr, ch, mask_d, HAS_BIAS, False)
    return b, k, offs_d, offs_n, mask_d, mask_n, mask_nd, ch, a2 * LOG2E, bias


@triton.jit
def _store_segment(h_ptr, dt_ptr, base, h, dt_sum, N, D, offs_n, offs_d, mask_nd, mask_d):
    """Store a segment's zero-start result (N, BD) and its sum of delta (BD,) at row ``base`` of
    (B*K*n_seg, N, D) / (B*K*n_seg, D)."""
    tl.store(h_ptr + base * N * D + offs_n[:, None] * D + offs_d[None, :], h, mask=mask_nd)
    tl.store(dt_ptr + base * D + offs_d, dt_sum, mask=mask_d)


@triton.jit
def bwd_seg_kernel(
    dl_ptr, a_ptr, c_ptr, bias_ptr, ord_ptr, dout_ptr, seg_g_ptr, seg_dt_ptr,
    K, D, L, N, seg_len, n_seg,
    sd_b, sd_k, sd_d, sd_l,
    sc_b, sc_k, sc_n, sc_l,
    so_b, so_d, so_l,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, UNROLL: tl.constexpr, STAGES: tl.constexpr,
    ROW_VEC: tl.constexpr, GATHER: tl.constexpr,
):  # fmt: skip
    # Pass 1 of the split backward: segment s = program_id(2) + 1 (every segment but the first) runs the
    # adjoint g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1} backwards from a zero carry and stores the
    # carry it hands to the segment before it, exp(delta_t0 A) g_t0, and its sum of delta.
    b, k, offs_d, offs_n, mask_d, mask_n, mask_nd, _ch, a2, bias = _step_program(
        a_ptr, bias_ptr, K, D, N, HAS_BIAS, BLOCK_D, BLOCK_N
    )
    d_base = dl_ptr + b * sd_b + k * sd_k + offs_d * sd_d
    c_base = c_ptr + b * sc_b + k * sc_k + offs_n * sc_n
    g_base = dout_ptr + b * so_b + offs_d * so_d
    ord_base = ord_ptr + k * L
    seg = tl.program_id(2) + 1
    carry = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dt_sum = tl.zeros((BLOCK_D,), dtype=tl.float32)
    # dy is gathered where the forward kernels gather u; no B
    gathers = (L, g_base, d_base, c_base, c_base, so_l, sd_l, sc_l, sc_l, mask_d, mask_n)
    last = (seg + 1) * seg_len - UNROLL  # the first block visited
    ahead = _ahead(ord_base, last, *gathers, UNROLL, ROW_VEC, GATHER)
    for i in tl.range(0, seg_len, UNROLL, num_stages=STAGES):
        t0 = last - i
        if GATHER:
            block, ahead = _blocks(ahead, ord_base, t0, t0 - UNROLL, *gathers, UNROLL, ROW_VEC, GATHER)
        for jj in tl.static_range(UNROLL):
            if GATHER:
                _, _, dy, _, dt, _, ct = _gathered_inputs(block[UNROLL - 1 - jj], bias, HAS_BIAS, SOFTPLUS)
            else:
                _, _, dy, _, dt, _, ct = _step_inputs(
                    ord_base, t0 + UNROLL - 1 - jj, *gathers, bias, HAS_BIAS, SOFTPLUS, ROW_VEC
                )
            carry = tl.exp2(dt[None, :] * a2) * (carry + ct[:, None] * dy[None, :])
            dt_sum += dt
    _store_segment(
        seg_g_ptr, seg_dt_ptr, (b * K + k) * n_seg + seg, carry, dt_sum, N, D, offs_n, offs_d, mask_nd, mask_d
    )


@triton.jit
def bwd_seq_kernel(
    u_ptr, dl_ptr, at_ptr, b_ptr, c_ptr, dskip_ptr, bias_ptr, ord_ptr, dout_ptr, hs_ptr, scratch_ptr,
    seg_g_ptr, seg_dt_ptr,
    du_ptr, ddl_ptr, dat_ptr, db_ptr, dc_ptr, dd_ptr, dbias_ptr,
    K, D, L, N, n_chunks, seg_len, n_seg,
    su_b, su_d, su_l,
    sd_b, sd_k, sd_d, sd_l,
    sb_b, sb_k, sb_n, sb_l,
    sc_b, sc_k, sc_n, sc_l,
    so_b, so_d, so_l,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, SPLIT: tl.constexpr,
    STAGES: tl.constexpr, ROW_VEC: tl.constexpr,
):  # fmt: skip
    # The program's (N, BLOCK_D) states in registers (the forward's layout before session 10), run backwards.
    # Chunks are visited in reverse; a chunk's states are first recomputed forward from the saved chunk
    # state into this program's scratch (slot j holds the state entering step j), then the adjoint
    #     g_t = exp(delta_{t+1} A) g_{t+1} + C_t dy_t
    # walks the chunk backwards, one step at a time. dB / dC are summed over this program's channels in
    # registers and added once per step and program. Gradient buffers are fp32 with the channels (or
    # states) innermost: du (B, L, D), ddelta (B, K, L, D), dA^T (N, K*D), dB / dC (B, K, L, N).
    # SPLIT: one program per segment of seg_len steps (grid axis 2, seg_len a multiple of CHUNK); its
    # adjoint carry from the segments after it is combined from ``bwd_seg_kernel``'s zero-start carries.
    b, k, offs_d, offs_n, mask_d, mask_n, ch = _program_block(K, D, N, BLOCK_D, BLOCK_N)
    mask_nd = mask_n[:, None] & mask_d[None, :]
    a_mat = tl.load(at_ptr + offs_n[:, None] * (K * D) + ch[None, :], mask=mask_nd, other=0.0).to(tl.float32)
    a2 = a_mat * LOG2E  # (BN, BD)
    if HAS_D:
        dskip = tl.load(dskip_ptr + ch, mask=mask_d, other=0.0).to(tl.float32)
    bias = _load_bias(bias_ptr, ch, mask_d, HAS_BIAS, False)  # (BD,)
    u_base = u_ptr + b * su_b + offs_d * su_d  # (BD,)
    d_base = dl_ptr + b * sd_b + k * sd_k + offs_d * sd_d
    g_base = dout_ptr + b * so_b + offs_d * so_d
    b_base = b_ptr + b * sb_b + k * sb_k + offs_n * sb_n  # (BN,)
    c_base = c_ptr + b * sc_b + k * sc_k + offs_n * sc_n
    hs_base = hs_ptr + (b * K + k) * n_chunks * N * D + offs_n[:, None] * D + offs_d[None, :]  # (BN, BD)
    program = (tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)) * tl.num_programs(2) + tl.program_id(
        2
    )
    scr_base = scratch_ptr + program * (CHUNK * BLOCK_N * BLOCK_D)
    scr_base = scr_base + offs_n[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]  # slot j: + j * BN * BD
    du_base = du_ptr + b * L * D + offs_d  # (B, L, D)
    ddl_base = ddl_ptr + (b * K + k) * L * D + offs_d  # (B, K, L, D)
    db_base = db_ptr + (b * K + k) * L * N + offs_n  # (B, K, L, N)
    dc_base = dc_ptr + (b * K + k) * L * N + offs_n
    ord_base = ord_ptr + k * L
    g_carry = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)  # exp(delta_{t+1} A) g_{t+1}
    da_acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dd_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    c_first = 0
    c_last = n_chunks
    if SPLIT:
        seg = tl.program_id(2)
        c_first = seg * (seg_len // CHUNK)
        c_last = tl.minimum(n_chunks, c_first + seg_len // CHUNK)
        g_carry = _combine_segments(
            g_carry, seg_g_ptr, seg_dt_ptr, b * K + k, n_seg - 1, n_seg - 1 - seg, -1, n_seg, N, D, offs_n,
            offs_d, mask_nd, mask_d, a2,
        )  # fmt: skip
    for i in range(c_last - c_first):
        c = c_last - 1 - i
        t0 = c * CHUNK
        h = tl.load(hs_base + c * N * D, mask=mask_nd, other=0.0)
        for j in tl.range(0, CHUNK, num_stages=STAGES):  # recompute the chunk's states
            tl.store(scr_base + j * (BLOCK_N * BLOCK_D), h)
            _, _, u, _, dt, bt, _ = _step_inputs(
                ord_base, t0 + j, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n,
                bias, HAS_BIAS, SOFTPLUS, ROW_VEC,
            )  # fmt: skip
            h = tl.exp2(dt[None, :] * a2) * h + (dt * u)[None, :] * bt[:, None]
        tl.debug_barrier()
        for jj in tl.range(0, CHUNK, num_stages=STAGES):  # the adjoint, backwards through the chunk
            j = CHUNK - 1 - jj
            valid = t0 + j < L
            hp = tl.load(scr_base + j * (BLOCK_N * BLOCK_D))  # state entering step t
            p, m, u, raw, dt, bt, ct = _step_inputs(
                ord_base, t0 + j, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, mask_d, mask_n,
                bias, HAS_BIAS, SOFTPLUS, ROW_VEC,
            )  # fmt: skip
            mn = mask_n & valid
            dy = tl.load(g_base + p * so_l, mask=m, other=0.0).to(tl.float32)  # (BD,)
            decay = tl.exp2(dt[None, :] * a2)  # (BN, BD)
            dtu = dt * u
            h_t = decay * hp + dtu[None, :] * bt[:, None]
            g = g_carry + ct[:, None] * dy[None, :]  # dL/dh_t
            gh = g * decay * hp
            da_acc += gh * dt[None, :]
            gb = tl.sum(g * bt[:, None], axis=0)  # (BD,)
            ddt = tl.sum(gh * a_mat, axis=0) + gb * u
            du = gb * dt
            if HAS_D:
                du += dskip * dy
                dd_acc += dy * u
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            ddt = tl.where(m, ddt, 0.0)
            dbias_acc += ddt
            tl.store(ddl_base + p * D, ddt, mask=m)
            tl.atomic_add(du_base + p * D, du, mask=m, sem="relaxed")
            dbt = tl.sum(g * dtu[None, :], axis=1)  # (BN,): over this program's channels
            dct = tl.sum(h_t * dy[None, :], axis=1)
            tl.atomic_add(db_base + p * N, dbt, mask=mn, sem="relaxed")
            tl.atomic_add(dc_base + p * N, dct, mask=mn, sem="relaxed")
            g_carry = decay * g
        tl.debug_barrier()  # the next chunk overwrites the scratch
    tl.atomic_add(dat_ptr + offs_n[:, None] * (K * D) + ch[None, :], da_acc, mask=mask_nd, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dd_ptr + ch, dd_acc, mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + ch, dbias_acc, mask=mask_d, sem="relaxed")


# ---------------------------------------------------------------- the forward step kernels: row layout
# Unlike the backward's (N, BLOCK_D) tiles, the forward step kernels hold their state as a (BLOCK_D,
# BLOCK_N) tile, the N states of a channel innermost, as A (K*D, N) and the B / C rows lie in memory. For
# that tile Triton (3.6, sm_90) gives each thread 4 contiguous states of a channel: B and C load as one
# 16-byte vector per thread, u and delta straight into the layout the states broadcast them from, the
# sum over N takes 2 shuffle rounds, and the only layout conversion per step is the output's, for its
# atomic add (the (N, BLOCK_D) layout converted three times per step). Each block's loads are issued a
# block ahead (two blocks per loop iteration, so the carried loads need no register moves). Compile-time
# flags are passed one by one, never inside a tuple: Triton 3.6 turns a tuple's constexprs into tensors.


@triton.jit
def _row_gather(ord_base, t, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, sd_d, mask_d, mask_n,
                ROW_VEC: tl.constexpr, RANK: tl.constexpr):  # fmt: skip
    """Step t's loads: (pixel, u (BD,), delta's input, B, C (BN,)); delta's input is the dt_proj output (BD,),
    or with RANK its low-rank input, a tuple of RANK scalars. Past the end (t >= L) it reads the last
    step again (the caller masks the step out), so that blocks can run ahead of the sequence's end."""
    p = tl.load(ord_base + tl.minimum(t, L - 1))
    u = tl.load(u_base + p * su_l, mask=mask_d, other=0.0).to(tl.float32)
    if RANK > 0:  # the R scalars of dt_proj's low-rank input at p
        raw = ()
        for r in tl.static_range(RANK):
            raw = raw + (tl.load(d_base + p * sd_l + r * sd_d).to(tl.float32),)  # noqa: RUF005
    else:
        raw = tl.load(d_base + p * sd_l, mask=mask_d, other=0.0).to(tl.float32)
    pb, pc = p * sb_l, p * sc_l
    if ROW_VEC:
        pb, pc = tl.multiple_of(pb, 4), tl.multiple_of(pc, 4)
    bt = tl.load(b_base + pb, mask=mask_n, other=0.0).to(tl.float32)
    ct = tl.load(c_base + pc, mask=mask_n, other=0.0).to(tl.float32)
    return p, u, raw, bt, ct


@triton.jit
def _row_block(ord_base, t0, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, sd_d, mask_d, mask_n,
               UNROLL: tl.constexpr, ROW_VEC: tl.constexpr, RANK: tl.constexpr):  # fmt: skip
    """The gathers of steps t0 .. t0 + UNROLL - 1 (``_row_gather``), issued together before any computes."""
    out = ()
    for j in tl.static_range(UNROLL):
        step = _row_gather(
            ord_base, t0 + j, L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, sd_d, mask_d, mask_n,
            ROW_VEC, RANK,
        )  # fmt: skip
        out = out + (step,)  # noqa: RUF005 (Triton builds tuples by concatenation, not unpacking)
    return out


@triton.jit
def _row_steps(
    block, t0, t_end, h, dt_sum, a2, w, bias, dskip, o_base, so_l, mask_d,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, OUTPUT: tl.constexpr,
    UNROLL: tl.constexpr, RANK: tl.constexpr,
):  # fmt: skip
    """Run the recurrence over a gathered block (steps t0 ..; those at or past t_end leave h as it is).
    With RANK, delta's input is dt_proj's low-rank input and w its weight, RANK columns (BD,). OUTPUT: add each
    step's <C, h> (+ D u) into its pixel; else sum delta (the segments' pass 1)."""
    for j in tl.static_range(UNROLL):
        p, u, raw, bt, ct = block[j]
        m = mask_d & (t0 + j < t_end)
        if RANK > 0:
            raw = _dt_proj(w, raw, RANK)
        _, dt = _delta(raw, bias, HAS_BIAS, SOFTPLUS)
        dt = tl.where(m, dt, 0.0)  # (BD,)
        h = tl.exp2(dt[:, None] * a2) * h + (dt * u)[:, None] * bt[None, :]  # (BD, BN)
        if OUTPUT:
            y = tl.sum(h * ct[None, :], axis=1)  # (BD,)
            if HAS_D:
                y += dskip * u
            tl.atomic_add(o_base + p * so_l, y, mask=m, sem="relaxed")
        else:
            dt_sum += dt
    return h, dt_sum


@triton.jit
def _dt_proj(w, x, RANK: tl.constexpr):
    """dt_proj of one step: sum over r of the weight column w[r] (BD,) times the low-rank input x[r]."""
    raw = w[0] * x[0]
    for r in tl.static_range(1, RANK):
        raw += w[r] * x[r]
    return raw


@triton.jit
def _row_program(a_ptr, bias_ptr, dskip_ptr, w_ptr, K, D, N, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                 BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, RANK: tl.constexpr):  # fmt: skip
    """The row kernels' program: ``_program_block``, A log2(e) (BD, BN) from A (K*D, N), bias and D (BD,)
    (0.0 where switched off), and with RANK the dt_proj weight from w (K*D, RANK), a tuple of its RANK
    columns (BD,) (() for RANK 0)."""
    b, k, offs_d, offs_n, mask_d, mask_n, ch = _program_block(K, D, N, BLOCK_D, BLOCK_N)
    mask_dn = mask_d[:, None] & mask_n[None, :]
    a2 = tl.load(a_ptr + ch[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32) * LOG2E
    dskip = 0.0
    if HAS_D:
        dskip = tl.load(dskip_ptr + ch, mask=mask_d, other=0.0).to(tl.float32)
    bias = _load_bias(bias_ptr, ch, mask_d, HAS_BIAS, False)
    w = ()
    for r in tl.static_range(RANK):
        w = w + (tl.load(w_ptr + ch * RANK + r, mask=mask_d, other=0.0).to(tl.float32),)  # noqa: RUF005
    return b, k, offs_d, offs_n, mask_d, mask_dn, a2, bias, dskip, w


@triton.jit
def _row_delta_base(dl_ptr, b, k, offs_d, sd_b, sd_k, sd_d, RANK: tl.constexpr):
    """Where this program's delta input lies at position 0: its channels of dt_proj's output (BD,), or
    with RANK the first of its low-rank input's RANK entries (a scalar; sd_d is then the stride over R)."""
    base = dl_ptr + b * sd_b + k * sd_k
    if RANK == 0:
        base = base + offs_d * sd_d
    return base


@triton.jit
def fwd_seq_kernel(
    u_ptr, dl_ptr, a_ptr, b_ptr, c_ptr, dskip_ptr, bias_ptr, ord_ptr, out_ptr, hs_ptr, seg_h_ptr, seg_dt_ptr,
    w_ptr, K, D, L, N, n_chunks, seg_len, n_seg,
    su_b, su_d, su_l,
    sd_b, sd_k, sd_d, sd_l,
    sb_b, sb_k, sb_n, sb_l,
    sc_b, sc_k, sc_n, sc_l,
    so_b, so_d, so_l,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, SAVE_STATES: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, UNROLL: tl.constexpr, SAVE_EVERY: tl.constexpr,
    SPLIT: tl.constexpr, ROW_VEC: tl.constexpr, RANK: tl.constexpr,
):  # fmt: skip
    # The forward step kernel in the row layout: the program's (BLOCK_D, N) states stay in registers while
    # it walks its steps (all of L, or segment program_id(2) of seg_len steps with SPLIT, its start state
    # combined from ``fwd_seg_kernel``'s), two blocks of UNROLL steps per iteration, each block's loads
    # issued while the one before computes. The state entering every SAVE_EVERY steps is saved for the
    # backward in its (B, K, n_chunks, N, D) layout; SAVE_EVERY is a multiple of UNROLL. RANK > 0:
    # dl_ptr is dt_proj's low-rank input (B, K, R, L) and w_ptr its weight (K, D, R), applied per step.
    b, k, offs_d, offs_n, mask_d, mask_dn, a2, bias, dskip, w = _row_program(
        a_ptr, bias_ptr, dskip_ptr, w_ptr, K, D, N, HAS_D, HAS_BIAS, BLOCK_D, BLOCK_N, RANK
    )
    u_base = u_ptr + b * su_b + offs_d * su_d  # (BD,)
    d_base = _row_delta_base(dl_ptr, b, k, offs_d, sd_b, sd_k, sd_d, RANK)  # (BD,), or a scalar with RANK
    b_base = b_ptr + b * sb_b + k * sb_k + offs_n * sb_n  # (BN,)
    c_base = c_ptr + b * sc_b + k * sc_k + offs_n * sc_n
    o_base = out_ptr + b * so_b + offs_d * so_d
    hs_base = hs_ptr + (b * K + k) * n_chunks * N * D + offs_n[None, :] * D + offs_d[:, None]  # (BD, BN)
    ord_base = ord_ptr + k * L
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    t_start = 0
    t_end = L
    if SPLIT:
        seg = tl.program_id(2)
        t_start = seg * seg_len
        t_end = tl.minimum(L, t_start + seg_len)
        for i in range(seg):  # h <- exp(A sum(delta_s)) h + h_s over the segments before this one
            row = (b * K + k) * n_seg + i
            hs = tl.load(
                seg_h_ptr + row * D * N + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0
            )
            dts = tl.load(seg_dt_ptr + row * D + offs_d, mask=mask_d, other=0.0)
            h = tl.exp2(dts[:, None] * a2) * h + hs
    gathers = (L, u_base, d_base, b_base, c_base, su_l, sd_l, sb_l, sc_l, sd_d, mask_d, offs_n < N)
    steps = (w, bias, dskip, o_base, so_l, mask_d)
    ahead = _row_block(ord_base, t_start, *gathers, UNROLL, ROW_VEC, RANK)
    for t0 in range(t_start, t_end, 2 * UNROLL):
        for half in tl.static_range(2):
            t = t0 + half * UNROLL
            if SAVE_STATES:
                if t % SAVE_EVERY == 0:
                    tl.store(hs_base + (t // SAVE_EVERY) * N * D, h, mask=mask_dn & (t < t_end))
            block = ahead
            ahead = _row_block(ord_base, t + UNROLL, *gathers, UNROLL, ROW_VEC, RANK)
            h, _ = _row_steps(
                block, t, t_end, h, 0.0, a2, *steps, HAS_D, HAS_BIAS, SOFTPLUS, True, UNROLL, RANK
            )


@triton.jit
def fwd_seg_kernel(
    u_ptr, dl_ptr, a_ptr, b_ptr, bias_ptr, ord_ptr, seg_h_ptr, seg_dt_ptr,
    K, D, L, N, seg_len, n_seg,
    su_b, su_d, su_l,
    sd_b, sd_k, sd_d, sd_l,
    sb_b, sb_k, sb_n, sb_l,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, UNROLL: tl.constexpr, ROW_VEC: tl.constexpr,
):  # fmt: skip
    # Pass 1 of the split row forward: segment program_id(2) (every segment but the last) runs the
    # recurrence from h = 0 and stores its end state (rows (B*K, n_seg), each (D, N)) and its sum of delta
    # (delta in full: a split forward never applies dt_proj itself, see ``triton_scan.ROW_LOW_RANK``).
    b, k, offs_d, offs_n, mask_d, mask_dn, a2, bias, _, w = _row_program(
        a_ptr, bias_ptr, bias_ptr, bias_ptr, K, D, N, False, HAS_BIAS, BLOCK_D, BLOCK_N, 0
    )
    u_base = u_ptr + b * su_b + offs_d * su_d
    d_base = _row_delta_base(dl_ptr, b, k, offs_d, sd_b, sd_k, sd_d, 0)
    b_base = b_ptr + b * sb_b + k * sb_k + offs_n * sb_n
    ord_base = ord_ptr + k * L
    seg = tl.program_id(2)
    t_end = (seg + 1) * seg_len  # every segment but the last is whole
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dt_sum = tl.zeros((BLOCK_D,), dtype=tl.float32)
    gathers = (L, u_base, d_base, b_base, b_base, su_l, sd_l, sb_l, sb_l, sd_d, mask_d, offs_n < N)  # no C
    steps = (w, bias, 0.0, u_base, su_l, mask_d)  # no output
    ahead = _row_block(ord_base, seg * seg_len, *gathers, UNROLL, ROW_VEC, 0)
    for t0 in range(seg * seg_len, t_end, 2 * UNROLL):
        for half in tl.static_range(2):
            t = t0 + half * UNROLL
            block = ahead
            ahead = _row_block(ord_base, t + UNROLL, *gathers, UNROLL, ROW_VEC, 0)
            h, dt_sum = _row_steps(
                block, t, t_end, h, dt_sum, a2, *steps, False, HAS_BIAS, SOFTPLUS, False, UNROLL, 0
            )
    row = (b * K + k) * n_seg + seg
    tl.store(seg_h_ptr + row * D * N + offs_d[:, None] * N + offs_n[None, :], h, mask=mask_dn)
    tl.store(seg_dt_ptr + row * D + offs_d, dt_sum, mask=mask_d)


@triton.jit
def direction_rows_kernel(x_ptr, out_ptr, K, L, sx_b, sx_l, sx_k, C: tl.constexpr, BLOCK: tl.constexpr):
    # x_proj's output (B, L, K, C), rows contiguous, -> (B, K, L, C) fp32 contiguous: program (b*K + k, j)
    # writes elements j*BLOCK .. of direction k's (L, C) slab, so every store is contiguous and the loads
    # read runs of C elements
    bk = tl.program_id(0)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)  # flat index into the (L, C) slab
    mask = i < L * C
    src = x_ptr + (bk // K) * sx_b + (bk % K) * sx_k + (i // C) * sx_l + i % C
    tl.store(out_ptr + bk * L * C + i, tl.load(src, mask=mask).to(tl.float32), mask=mask)


@triton.jit
def direction_projection_kernel(
    x_ptr, w_ptr, out_ptr, L, sx_b, sx_l, sx_d,
    D: tl.constexpr, C: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # SS2D's x_proj written straight into rows stored direction by direction: x (B, L, D) 16-bit, strided,
    # w (K, C, D) contiguous -> out (B, K, L, C) fp32 contiguous, products accumulated in fp32. Program
    # (k, b * n_l + j) computes rows j*BLOCK_L.. of direction k; k varies fastest, so the K programs that
    # read one x tile run side by side and all but the first read it from L2.
    k = tl.program_id(0)
    n_l = tl.cdiv(L, BLOCK_L)
    b = tl.program_id(1) // n_l
    rows = (tl.program_id(1) % n_l) * BLOCK_L + tl.arange(0, BLOCK_L)
    cols = tl.arange(0, BLOCK_C)
    acc = tl.zeros((BLOCK_L, BLOCK_C), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_K):
        dd = d0 + tl.arange(0, BLOCK_K)
        x_tile = tl.load(
            x_ptr + b * sx_b + rows[:, None] * sx_l + dd[None, :] * sx_d,
            mask=(rows[:, None] < L) & (dd[None, :] < D),
            other=0.0,
        )  # (BLOCK_L, BLOCK_K)
        w_tile = tl.load(
            w_ptr + (k * C + cols[None, :]) * D + dd[:, None],
            mask=(cols[None, :] < C) & (dd[:, None] < D),
            other=0.0,
        )  # (BLOCK_K, BLOCK_C): w[k]^T
        acc = tl.dot(x_tile, w_tile, acc)
    out = out_ptr + ((b * tl.num_programs(0) + k) * L + rows[:, None]) * C + cols[None, :]
    tl.store(out, acc, mask=(rows[:, None] < L) & (cols[None, :] < C))
