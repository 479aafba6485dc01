"""The selective scan (the Mamba recurrence), with interchangeable backends behind one function.

For every channel c of the K*D channels (direction k = c // D) and every time step t:

    delta_t = softplus(delta_raw_t + delta_bias_c)             (if delta_softplus)
    h_t     = exp(delta_t * A_c) * h_{t-1} + delta_t * B_{k,t} * u_t      h: (N,), h_{-1} = 0
    y_t     = <C_{k,t}, h_t> + D_c * u_t

B and C are grouped: one (N, L) pair per direction, shared by that direction's D channels. This is the
signature of mamba_ssm's ``selective_scan_fn`` as MambaAD calls it, so that package can serve as a backend.

Backends (``list_backends()``), all with the same signature and all differentiable:
    reference   sequential loop over L, exact and readable; the numerical yardstick.
    chunked     pure torch, no Python loop over positions: L/T chunks, each solved by a log2(T)-step
                doubling scan; carries the state between chunks. ONNX-friendly; CUDA default without mamba_ssm.
    sequential  the reference loop made tight: decays and inputs for a block of steps precomputed in one
                shot, then one fused ``addcmul`` per step. Fastest on CPU (few, cheap Python steps).
    mamba_ssm   the official CUDA kernel, listed only when ``mamba_ssm`` imports (CUDA tensors only);
                the CUDA default when present.

``default_backend(device)`` gives what ``backend="auto"`` picks; see docs/benchmarks.md for the timings
behind it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mambaad.errors import ConfigError

ScanFn = Callable[..., Tensor]


def _scan_dtype(u: Tensor) -> torch.dtype:
    """All backends compute in float32 (MambaAD casts to fp32 anyway), or float64 for gradcheck."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------------------------------


def selective_scan_ref(
    u: Tensor,  # (Bt, KD, L)
    delta: Tensor,  # (Bt, KD, L)
    A: Tensor,  # (KD, N)
    B: Tensor,  # (Bt, K, N, L)
    C: Tensor,  # (Bt, K, N, L)
    D: Tensor | None = None,  # (KD,)
    delta_bias: Tensor | None = None,  # (KD,)
    delta_softplus: bool = True,
) -> Tensor:
    """Sequential reference: one step per position, in float32 (or float64 if given float64)."""
    dtype = _scan_dtype(u)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    bt, kd, _ = u.shape
    k, n = B.shape[1], A.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    # expand grouped B/C to every channel: (Bt, K, N, L) -> (Bt, KD, N, L)
    B = B.repeat_interleave(kd // k, dim=1)
    C = C.repeat_interleave(kd // k, dim=1)
    h = u.new_zeros(bt, kd, n)
    ys = []
    # one step per position; unbind (not [..., t]) keeps the backward linear in L
    for dt, B_t, C_t, u_t in zip(delta.unbind(-1), B.unbind(-1), C.unbind(-1), u.unbind(-1)):
        dt = dt[..., None]  # (Bt, KD, 1)
        h = torch.exp(dt * A) * h + dt * B_t * u_t[..., None]  # (Bt, KD, N)
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1)  # (Bt, KD, L)
    if D is not None:
        y = y + u * D.to(dtype)[None, :, None]
    return y


def _prepare(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, delta_bias: Tensor | None, delta_softplus: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Cast to the scan dtype and apply bias + softplus to delta (shared by the fast backends)."""
    dtype = _scan_dtype(u)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return u, delta, A, B, C


def _add_skip(y: Tensor, u: Tensor, D: Tensor | None) -> Tensor:
    """y + D * u, the skip connection every backend adds at the end."""
    return y if D is None else y + u * D.to(u.dtype)[None, :, None]


# Recompute each chunk/block in backward instead of keeping its (Bt, KD, T, N) intermediates: autograd then
# stores only O(Bt*KD*L) inputs plus one state per chunk, like mamba_ssm's kernel does. Costs one extra
# forward of the scan during backward; without it fwd+bwd at Bt=8 needs tens of GB.
RECOMPUTE_IN_BACKWARD = True


def _run_piece(fn: Callable[..., tuple[Tensor, Tensor]], *args: Tensor) -> tuple[Tensor, Tensor]:
    """Call ``fn(*args)``, under activation checkpointing when a gradient will be needed."""
    if RECOMPUTE_IN_BACKWARD and torch.is_grad_enabled() and any(t.requires_grad for t in args):
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def piece_sizes(length: int, size: int) -> list[int]:
    """Lengths of the pieces of ``size`` (the last one shorter) that cover ``length`` steps.

    >>> piece_sizes(70, 32), piece_sizes(4, 32)
    ([32, 32, 6], [4])
    """
    length = int(length)  # a traced size arrives as a 0-d tensor; the exported graph fixes it
    full, rest = divmod(length, size)
    return [size] * full + ([rest] if rest else [])


def _split_time(size: int, *tensors: Tensor) -> list[tuple[Tensor, ...]]:
    """Cut each tensor into pieces of ``size`` along the last (time) dim.

    ``split`` rather than per-chunk slicing: its backward concatenates the pieces' gradients once, whereas
    each slice's backward would fill a zero tensor of the full length (quadratic in L over all chunks).
    The piece lengths are given explicitly, the same pieces as ``split(t, size)`` in eager mode, so a
    traced graph never holds a Split of ``size`` on a shorter axis (which onnxruntime rejects).
    """
    return [torch.split(t, piece_sizes(t.shape[-1], size), dim=-1) for t in tensors]


# --------------------------------------------------------------------------------------------------
# chunked: doubling scan inside chunks, state carried across chunks
# --------------------------------------------------------------------------------------------------

CHUNK_SIZE = {"cpu": 32, "cuda": 64}


def _doubling_scan(a: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Inclusive scan of h_t = a_t * h_{t-1} + x_t along dim -2, from h_{-1} = 0, in log2(T) steps.

    After the round with stride s, x_t holds the recurrence over the 2s positions ending at t and a_t the
    product of the decays over them (Hillis-Steele). Returns (h, prod_{s<=t} a_s), both (..., T, N).
    Only products of decays in (0, 1] appear, so nothing can overflow.
    """
    length = x.shape[-2]
    stride = 1
    while stride < length:
        shifted = torch.addcmul(x[..., stride:, :], a[..., stride:, :], x[..., :-stride, :])
        x = torch.cat([x[..., :stride, :], shifted], -2)
        a = torch.cat([a[..., :stride, :], a[..., stride:, :] * a[..., :-stride, :]], -2)
        stride *= 2
    return x, a


def _chunk_doubling(
    delta: Tensor,  # (Bt, KD, T)
    du: Tensor,  # (Bt, KD, T), delta * u
    A: Tensor,  # (KD, N)
    B: Tensor,  # (Bt, K, N, T)
    C: Tensor,  # (Bt, K, N, T)
    h0: Tensor,  # (Bt, KD, N), state entering the chunk
) -> tuple[Tensor, Tensor]:
    """Outputs <C_t, h_t> of one chunk (Bt, KD, T) and its last state (Bt, KD, N)."""
    bt, kd, t = du.shape
    k, n = B.shape[1], A.shape[1]
    decay = torch.exp(delta[..., None] * A[:, None, :])  # (Bt, KD, T, N), <= 1 as A < 0
    x = du.reshape(bt, k, kd // k, t, 1) * B.transpose(-1, -2)[:, :, None]  # (Bt, K, D, T, N)
    hs, cum = _doubling_scan(decay, x.reshape(bt, kd, t, n))
    hs = torch.addcmul(hs, cum, h0[:, :, None])  # (Bt, KD, T, N)
    y = torch.einsum("bkdtn,bknt->bkdt", hs.reshape(bt, k, kd // k, t, n), C)
    return y.reshape(bt, kd, t), hs[:, :, -1]


def selective_scan_chunked(
    u: Tensor,  # (Bt, KD, L)
    delta: Tensor,  # (Bt, KD, L)
    A: Tensor,  # (KD, N)
    B: Tensor,  # (Bt, K, N, L)
    C: Tensor,  # (Bt, K, N, L)
    D: Tensor | None = None,  # (KD,)
    delta_bias: Tensor | None = None,  # (KD,)
    delta_softplus: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """Chunked parallel scan in plain torch ops: a loop over L/T chunks, never over positions.

    Inside a chunk of T steps the states of all positions come from a doubling (Hillis-Steele) scan of
    (decay, input) pairs: log2(T) rounds of elementwise multiply-adds on (Bt, KD, T, N) tensors. The state
    entering the chunk is added as h_t += (prod of decays up to t) * h_0, and the chunk's last state is
    carried to the next chunk.

    Why not the closed form h_t = sum_{s<=t} exp(A (S_t - S_s)) delta_s B_s u_s per chunk: A differs per
    (channel, n), so the T x T decay matrix cannot be shared across channels or n and there is no matmul to
    exploit; it costs T*T*N exps per channel and chunk (vs T*N*log2(T) multiply-adds here) and a
    (Bt, KD, T, T, N) buffer (2 GiB for stage 0 at T=64). A prototype was 3-10x slower than this scan on
    CPU. The doubling scan is also safe by construction: it only multiplies decays exp(delta*A) <= 1.
    """
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    bt, kd, _ = u.shape
    size = chunk_size or CHUNK_SIZE.get(u.device.type, 64)
    du = delta * u  # (Bt, KD, L)
    h = u.new_zeros(bt, kd, A.shape[1])
    ys = []
    for d_t, du_t, B_t, C_t in zip(*_split_time(size, delta, du, B, C)):
        y, h = _run_piece(_chunk_doubling, d_t, du_t, A, B_t, C_t, h)
        ys.append(y)
    return _add_skip(torch.cat(ys, dim=-1), u, D)


# --------------------------------------------------------------------------------------------------
# sequential: tight loop over positions with precomputed decays and inputs
# --------------------------------------------------------------------------------------------------

SEQUENTIAL_BLOCK = 32


def _block_sequential(
    delta: Tensor,  # (Bt, KD, T)
    du: Tensor,  # (Bt, KD, T), delta * u
    A: Tensor,  # (KD, N)
    B: Tensor,  # (Bt, K, N, T)
    C: Tensor,  # (Bt, K, N, T)
    h: Tensor,  # (Bt, KD, N), state entering the block
) -> tuple[Tensor, Tensor]:
    """Outputs <C_t, h_t> of one block (Bt, KD, T) and its last state (Bt, KD, N), one step at a time."""
    bt, kd, t = du.shape
    k, n = B.shape[1], A.shape[1]
    decay = torch.exp(delta.permute(2, 0, 1)[..., None] * A)  # (T, Bt, KD, N), time-major
    x = du.permute(2, 0, 1).reshape(t, bt, k, kd // k, 1) * B.permute(3, 0, 1, 2)[:, :, :, None]
    hs = []
    # unbind, not x[step]: its backward stacks the step gradients once instead of scattering each into a
    # zero tensor of the whole block (which makes backward quadratic in the block length)
    for x_t, decay_t in zip(x.reshape(t, bt, kd, n).unbind(0), decay.unbind(0)):
        h = torch.addcmul(x_t, decay_t, h)  # (Bt, KD, N)
        hs.append(h)
    states = torch.stack(hs).reshape(t, bt, k, kd // k, n)
    y = torch.einsum("tbkdn,bknt->bkdt", states, C)
    return y.reshape(bt, kd, t), h


def selective_scan_sequential(
    u: Tensor,  # (Bt, KD, L)
    delta: Tensor,  # (Bt, KD, L)
    A: Tensor,  # (KD, N)
    B: Tensor,  # (Bt, K, N, L)
    C: Tensor,  # (Bt, K, N, L)
    D: Tensor | None = None,  # (KD,)
    delta_bias: Tensor | None = None,  # (KD,)
    delta_softplus: bool = True,
) -> Tensor:
    """The reference recurrence with one fused op per step, for CPU.

    On a few CPU cores the work per step (Bt*KD*N multiply-adds) is small, so the minimal arithmetic of the
    plain recurrence beats a parallel scan, which does log2(T) times more (mamba.py issue #57). This
    variant keeps that arithmetic but cuts the reference's per-step overhead: the decays exp(delta*A) and
    inputs delta*B*u of a block of steps are computed in one vectorized shot, laid out time-major so each
    step reads contiguous memory, the loop body is a single ``addcmul``, and the contraction with C is one
    batched matmul per block. Small blocks (32) keep the block's tensors in cache.
    """
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    bt, kd, _ = u.shape
    du = delta * u  # (Bt, KD, L)
    h = u.new_zeros(bt, kd, A.shape[1])
    ys = []
    for d_t, du_t, B_t, C_t in zip(*_split_time(SEQUENTIAL_BLOCK, delta, du, B, C)):
        y, h = _run_piece(_block_sequential, d_t, du_t, A, B_t, C_t, h)
        ys.append(y)
    return _add_skip(torch.cat(ys, dim=-1), u, D)


# --------------------------------------------------------------------------------------------------
# mamba_ssm adapter (optional CUDA kernel)
# --------------------------------------------------------------------------------------------------


@functools.cache
def _mamba_ssm_fn() -> ScanFn | None:
    """mamba_ssm's ``selective_scan_fn`` if it imports here, else None (imported lazily, once)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a broken CUDA extension (ABI mismatch) raising OSError etc.
        return None
    return selective_scan_fn


def selective_scan_mamba_ssm(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """mamba_ssm's fused CUDA kernel with the same inputs, cast to float32 as MambaAD does."""
    fn = _mamba_ssm_fn()
    if fn is None:
        raise ConfigError(
            "selective-scan backend 'mamba_ssm' needs the mamba-ssm package (pip install mamba-ssm)"
        )
    if u.device.type != "cuda":
        raise ConfigError(f"selective-scan backend 'mamba_ssm' needs CUDA tensors, got device {u.device}")
    f32 = [t.float() if t is not None else None for t in (u, delta, A, B, C, D, delta_bias)]
    u, delta, A, B, C, D, delta_bias = f32
    return fn(u, delta, A, B, C, D=D, z=None, delta_bias=delta_bias, delta_softplus=delta_softplus)


# --------------------------------------------------------------------------------------------------
# registry and dispatcher
# --------------------------------------------------------------------------------------------------

_BACKENDS: dict[str, ScanFn] = {
    "reference": selective_scan_ref,
    "chunked": selective_scan_chunked,
    "sequential": selective_scan_sequential,
}
_OPTIONAL_BACKENDS: dict[str, tuple[ScanFn, Callable[[], object]]] = {
    "mamba_ssm": (selective_scan_mamba_ssm, _mamba_ssm_fn),
}
# Measured on CPU (docs/benchmarks.md, "Selective scan backends (CPU)"); CUDA: chunked until a Triton backend
# exists, or the official kernel when mamba_ssm is installed.
_DEFAULT = {"cpu": "sequential"}


def list_backends() -> list[str]:
    """Names of every backend that can run here (optional ones only when their package imports)."""
    names = list(_BACKENDS)
    names += [name for name, (_, available) in _OPTIONAL_BACKENDS.items() if available() is not None]
    return names


def default_backend(device: torch.device) -> str:
    """The backend ``selective_scan(..., backend="auto")`` picks for tensors on ``device``."""
    device = torch.device(device)
    if device.type in _DEFAULT:
        return _DEFAULT[device.type]
    if device.type == "cuda" and "mamba_ssm" in list_backends():
        return "mamba_ssm"
    return "chunked"


def _get_backend(name: str) -> ScanFn:
    """Resolve a backend name, with a one-line ConfigError naming the valid ones."""
    if name in _BACKENDS:
        return _BACKENDS[name]
    if name in list_backends():
        return _OPTIONAL_BACKENDS[name][0]
    hint = " (needs the mamba-ssm package)" if name in _OPTIONAL_BACKENDS else ""
    raise ConfigError(
        f"unknown selective-scan backend {name!r}{hint}; choose from {', '.join(list_backends())}"
    )


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
    backend: str = "auto",
) -> Tensor:
    """Run the selective scan with the named backend (``auto``: the fastest for the device).

    Shapes: u, delta (Bt, K*D, L); A (K*D, N); B, C (Bt, K, N, L); D, delta_bias (K*D,).
    Returns y (Bt, K*D, L) in float32 (float64 for float64 inputs).
    """
    name = default_backend(u.device) if backend == "auto" else backend
    return _get_backend(name)(u, delta, A, B, C, D, delta_bias, delta_softplus)
