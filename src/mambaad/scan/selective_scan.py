"""The selective scan (the Mamba recurrence), with interchangeable backends behind one function.

For every channel c of the K*D channels (direction k = c // D) and every time step t:

    delta_t = softplus(delta_raw_t + delta_bias_c)             (if delta_softplus)
    h_t     = exp(delta_t * A_c) * h_{t-1} + delta_t * B_{k,t} * u_t      h: (N,), h_{-1} = 0
    y_t     = <C_{k,t}, h_t> + D_c * u_t

B and C are grouped: one (N, L) pair per direction, shared by that direction's D channels. This is the
signature of mamba_ssm's ``selective_scan_fn`` as MambaAD calls it, so that package can serve as a backend.

Backends (``list_backends()``):
    reference  sequential loop over L, exact and readable; the numerical yardstick.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mambaad.errors import ConfigError

ScanFn = Callable[..., Tensor]


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
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    bt, kd, length = u.shape
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
    for t in range(length):
        dt = delta[:, :, t, None]  # (Bt, KD, 1)
        h = torch.exp(dt * A) * h + dt * B[:, :, :, t] * u[:, :, t, None]
        ys.append((h * C[:, :, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)  # (Bt, KD, L)
    if D is not None:
        y = y + u * D.to(dtype)[None, :, None]
    return y


_BACKENDS: dict[str, ScanFn] = {"reference": selective_scan_ref}


def list_backends() -> list[str]:
    """Names of every backend that can run here."""
    return list(_BACKENDS)


def default_backend(device: torch.device) -> str:
    """The backend ``selective_scan(..., backend="auto")`` picks for tensors on ``device``."""
    return "reference"


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
    if name not in _BACKENDS:
        raise ConfigError(
            f"unknown selective-scan backend {name!r}; choose from {', '.join(list_backends())}"
        )
    return _BACKENDS[name](u, delta, A, B, C, D, delta_bias, delta_softplus)
