"""The numba CPU hybrid scan against the gather + reference-scan yardstick, its selection, and its fallback."""

from __future__ import annotations

import pytest
import torch

import mambaad
from mambaad.errors import ConfigError
from mambaad.models import decoder as decoder_mod
from mambaad.models.decoder import resolve_backend
from mambaad.scan import numba_scan
from mambaad.scan.orders import scan_orders
from mambaad.scan.triton_scan import hybrid_selective_scan, hybrid_selective_scan_torch

pytest.importorskip("numba", reason="the numba backend is optional (pip install mambaad[cpu])")

# (batch, K, D, N, H, W, curve, with_skip_and_bias, softplus, channels_last)
CASES = [
    (1, 2, 4, 4, 1, 1, "hilbert", True, True, False),  # L = 1
    (2, 8, 3, 16, 3, 5, "hilbert", True, True, False),  # odd L, D far from a block
    (1, 4, 20, 16, 4, 4, "zigzag", False, False, False),  # D = 20: one full block + a padded one
    (1, 8, 32, 16, 7, 9, "hilbert", True, True, True),  # two full blocks, channels-last views
    (2, 4, 17, 5, 3, 11, "scan", True, False, True),
]


def _inputs(
    b: int, k: int, d: int, n: int, h: int, w: int, skip: bool, cl: bool
) -> list[torch.Tensor | None]:
    length = h * w
    u = torch.randn(b, d, length)
    delta = torch.randn(b, k, d, length) * 0.7
    if cl:  # channels-last storage viewed as raster (B, D, L) / (B, K, D, L), as SS2D passes them
        u = u.transpose(1, 2).contiguous().transpose(1, 2)
        delta = delta.transpose(2, 3).contiguous().transpose(2, 3)
    return [
        u,
        delta,
        -(torch.rand(k * d, n) * 4 + 0.05),
        torch.randn(b, k, n, length),
        torch.randn(b, k, n, length),
        torch.randn(k * d) if skip else None,
        torch.randn(k * d) * 0.3 if skip else None,
    ]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"B{c[0]}K{c[1]}D{c[2]}N{c[3]}L{c[4] * c[5]}")
def test_matches_reference(case: tuple) -> None:
    torch.manual_seed(0)
    b, k, d, n, h, w, curve, skip, softplus, cl = case
    xs = _inputs(b, k, d, n, h, w, skip, cl)
    if not softplus:  # without softplus the caller guarantees delta >= 0 (decays <= 1), as in Mamba
        xs[1] = xs[1].abs()
        xs[6] = xs[6].abs() if xs[6] is not None else None
    orders = scan_orders(curve, h, w, k)
    y = hybrid_selective_scan(*xs, orders, softplus, backend="numba")
    ref = hybrid_selective_scan_torch(
        *[x.double() if x is not None else None for x in xs], orders, softplus, backend="reference"
    )
    assert y.shape == (b, d, h * w) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_threads_agree() -> None:
    torch.manual_seed(1)
    xs = _inputs(2, 8, 48, 16, 5, 6, True, False)
    orders = scan_orders("hilbert", 5, 6, 8)
    one = numba_scan.hybrid_selective_scan_numba(*xs, orders, threads=1)
    two = numba_scan.hybrid_selective_scan_numba(*xs, orders, threads=2)
    assert torch.equal(one, two)


def test_large_negative_exponents_decay_to_zero() -> None:
    """delta * A far below -87 (2^-126) must give a zero decay, not garbage bits."""
    xs = _inputs(1, 2, 16, 4, 2, 3, True, False)
    xs[1] = torch.full_like(xs[1], 50.0)  # softplus(50) = 50; A down to -4 -> exponent -200
    orders = scan_orders("hilbert", 2, 3, 2)
    y = hybrid_selective_scan(*xs, orders, backend="numba")
    ref = hybrid_selective_scan_torch(*xs, orders, backend="reference")
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-4)


def test_refuses_gradients() -> None:
    xs = _inputs(1, 2, 4, 4, 2, 2, True, False)
    xs[0].requires_grad_(True)
    orders = scan_orders("hilbert", 2, 2, 2)
    with pytest.raises(ConfigError, match="inference-only"):
        hybrid_selective_scan(*xs, orders, backend="numba")
    with torch.no_grad():
        hybrid_selective_scan(*xs, orders, backend="numba")


def test_auto_picks_numba_for_cpu_inference_only() -> None:
    assert resolve_backend("auto", torch.device("cpu"), needs_grad=False) == "numba"
    assert resolve_backend("auto", torch.device("cpu"), needs_grad=True) == "sequential"
    assert resolve_backend("chunked", torch.device("cpu"), needs_grad=False) == "chunked"


def test_fallback_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numba_scan, "_kernel", lambda: None)
    assert not numba_scan.numba_available()
    assert resolve_backend("auto", torch.device("cpu"), needs_grad=False) == "sequential"
    xs = _inputs(1, 2, 4, 4, 2, 2, True, False)
    with pytest.raises(ConfigError, match="numba package"):
        hybrid_selective_scan(*xs, scan_orders("hilbert", 2, 2, 2), backend="numba")


def _record_fused(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Backends of every fused-scan call of SS2D from now on."""
    used: list[str] = []
    fused = decoder_mod.SS2D._scan_fused
    monkeypatch.setattr(
        decoder_mod.SS2D, "_scan_fused", lambda s, x, u, b: used.append(b) or fused(s, x, u, b)
    )
    return used


def test_model_maps_match_sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    """The official configuration at 64 x 64: predict() with auto (numba) vs the sequential backend."""
    torch.manual_seed(0)
    model = mambaad.MambaAD().eval()
    x = torch.randn(1, 3, 64, 64)
    used = _record_fused(monkeypatch)
    maps, scores = model.predict(x)
    assert used and set(used) == {"numba"}
    model.set_scan_backend("sequential")
    ref_maps, ref_scores = model.predict(x)
    torch.testing.assert_close(maps, ref_maps, rtol=0, atol=1e-4)
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=1e-4)


def test_training_keeps_the_differentiable_default(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = decoder_mod.SS2D(8, d_state=4)
    x = torch.randn(1, 4, 6, 8)
    used = _record_fused(monkeypatch)
    layer(x).sum().backward()  # parameters require grad: sequential
    assert not used and layer.A_logs.grad is not None
    with torch.no_grad():
        layer(x)
    assert used == ["numba"]


def test_low_rank_delta_with_dt_weight() -> None:
    """delta given as (B, K, R, L) plus dt_weight (K, D, R): the kernel projects it (SS2D's CPU path)."""
    torch.manual_seed(2)
    b, k, d, n, r, h, w = 2, 4, 20, 16, 3, 5, 3
    xs = _inputs(b, k, d, n, h, w, True, False)
    low = torch.randn(b, k, r, h * w)
    weight = torch.randn(k, d, r) * 0.5
    orders = scan_orders("hilbert", h, w, k)
    y = hybrid_selective_scan(xs[0], low, *xs[2:], orders, backend="numba", dt_weight=weight)
    xs[1] = torch.einsum("bkrl,kdr->bkdl", low, weight)
    ref = hybrid_selective_scan_torch(*xs, orders, backend="reference")
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    with pytest.raises(ValueError, match="dt_weight"):
        hybrid_selective_scan(xs[0], low, *xs[2:], orders, backend="numba", dt_weight=weight[:, :, :2])


def test_portable_step_without_avx512(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's non-AVX-512 code path (rint + exponent bits), compiled afresh, matches the reference."""
    import numba

    from mambaad.scan import _numba_kernels as kernels

    monkeypatch.setattr(kernels, "USE_AVX512", False)  # read when the step is compiled into a caller
    portable = numba.njit(nogil=True, fastmath=True, error_model="numpy")(kernels.hybrid_scan_fwd.py_func)
    monkeypatch.setattr(kernels, "hybrid_scan_fwd", portable)
    torch.manual_seed(3)
    xs = _inputs(1, 4, 20, 5, 3, 4, True, False)  # odd N (the unpaired state), D padded to 32
    xs[1][..., :2] = 50.0  # exponents far below -126 must give a zero decay
    orders = scan_orders("hilbert", 3, 4, 4)
    y = numba_scan.hybrid_selective_scan_numba(*xs, orders)
    ref = hybrid_selective_scan_torch(*[x.double() for x in xs], orders, backend="reference")
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
