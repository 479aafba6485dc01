"""Every selective-scan backend against the sequential reference: forward, gradients, registry errors."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from mambaad.errors import ConfigError
from mambaad.scan import list_backends, selective_scan, selective_scan_ref

# the module itself (mambaad.scan re-exports a function of the same name)
ss = importlib.import_module("mambaad.scan.selective_scan")

FAST = [name for name in list_backends() if name != "reference" and name != "mamba_ssm"]
NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def make_inputs(
    bt: int, k: int, d: int, n: int, length: int, dtype: torch.dtype = torch.float32, seed: int = 0
) -> list[torch.Tensor]:
    """MambaAD-like ranges: A in [-16, -1], delta_bias = softplus^-1(dt), dt in [1e-3, 0.1]."""
    g = torch.Generator().manual_seed(seed)
    kd = k * d
    u = torch.randn(bt, kd, length, generator=g, dtype=dtype)
    delta = 0.5 * torch.randn(bt, kd, length, generator=g, dtype=dtype)
    A = -torch.exp(torch.empty(kd, n, dtype=dtype).uniform_(0.0, math.log(16.0), generator=g))
    B = torch.randn(bt, k, n, length, generator=g, dtype=dtype)
    C = torch.randn(bt, k, n, length, generator=g, dtype=dtype)
    D = torch.randn(kd, generator=g, dtype=dtype)
    dt = torch.exp(torch.empty(kd, dtype=dtype).uniform_(math.log(1e-3), math.log(0.1), generator=g))
    delta_bias = dt + torch.log(-torch.expm1(-dt))
    return [u, delta, A, B, C, D, delta_bias]


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """max|x - ref| / max|ref| (an exactly zero reference, e.g. dA at L=1, must be matched exactly)."""
    return ((x - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def forward_and_grads(backend: str, inputs: list[torch.Tensor], grad_out: torch.Tensor) -> list[torch.Tensor]:
    """[y, du, ddelta, dA, dB, dC, dD, ddelta_bias] for the same upstream gradient."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = selective_scan(*leaves, delta_softplus=True, backend=backend)
    y.backward(grad_out)
    return [y.detach()] + [t.grad for t in leaves]


def test_registry_lists_core_backends() -> None:
    names = list_backends()
    assert {"reference", "chunked", "sequential"} <= set(names)
    assert ss.default_backend(torch.device("cpu")) in names
    assert ss.default_backend(torch.device("cuda")) in ("chunked", "mamba_ssm")


def test_unknown_backend_names_valid_ones() -> None:
    inputs = make_inputs(1, 2, 2, 3, 4)
    with pytest.raises(ConfigError, match=r"unknown selective-scan backend 'nope'.*reference.*chunked"):
        selective_scan(*inputs, backend="nope")


def test_mamba_ssm_listed_only_when_importable() -> None:
    if ss._mamba_ssm_fn() is None:
        assert "mamba_ssm" not in list_backends()
        with pytest.raises(ConfigError, match="mamba-ssm"):
            selective_scan(*make_inputs(1, 2, 2, 3, 4), backend="mamba_ssm")
    else:
        assert "mamba_ssm" in list_backends()


@pytest.mark.parametrize("backend", ["reference", *FAST])
@pytest.mark.parametrize("length", [1, 5, 7])
def test_gradcheck_float64(backend: str, length: int) -> None:
    inputs = [t.requires_grad_(True) for t in make_inputs(1, 2, 2, 3, length, torch.float64)]

    def fn(*args: torch.Tensor) -> torch.Tensor:
        return selective_scan(*args, delta_softplus=True, backend=backend)

    assert torch.autograd.gradcheck(fn, inputs)


def test_reference_matches_naive_float64_loop() -> None:
    """The reference against a second, per-channel scalar loop written here."""
    u, delta, A, B, C, D, bias = make_inputs(1, 2, 2, 3, 6, torch.float64)
    y = selective_scan_ref(u, delta, A, B, C, D, bias)
    dt = torch.nn.functional.softplus(delta + bias[None, :, None])
    for c in range(4):
        k = c // 2
        h = torch.zeros(3, dtype=torch.float64)
        for t in range(6):
            h = torch.exp(dt[0, c, t] * A[c]) * h + dt[0, c, t] * B[0, k, :, t] * u[0, c, t]
            expected = (h * C[0, k, :, t]).sum() + D[c] * u[0, c, t]
            assert torch.isclose(y[0, c, t], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("length", [1, 7, 33, 65, 100])
def test_forward_and_grads_match_reference_small(backend: str, length: int) -> None:
    inputs = make_inputs(2, 4, 3, 16, length, seed=length)
    grad_out = torch.randn(2, 12, length, generator=torch.Generator().manual_seed(1))
    ref = forward_and_grads("reference", inputs, grad_out)
    got = forward_and_grads(backend, inputs, grad_out)
    for name, x, r in zip(("y", *NAMES), got, ref):
        assert rel_err(x, r) <= 1e-5, name


def test_no_bias_no_skip_no_softplus() -> None:
    u, delta, A, B, C, _, _ = make_inputs(1, 2, 3, 4, 9)
    delta = delta.abs()
    ref = selective_scan_ref(u, delta, A, B, C, None, None, False)
    for backend in FAST:
        y = selective_scan(u, delta, A, B, C, None, None, False, backend=backend)
        assert rel_err(y, ref) <= 1e-5, backend


def test_long_sequence_stays_finite_with_large_decay() -> None:
    """Large delta*|A| (strong forgetting) must not overflow anywhere (no exp of positive cumsums)."""
    u, delta, A, B, C, D, bias = make_inputs(1, 2, 4, 16, 300)
    delta = delta + 5.0  # softplus ~ 5, |A| up to 16: cumsum of delta*A reaches -24000 over L
    ref = selective_scan_ref(u, delta, A, B, C, D, bias)
    for backend in FAST:
        y = selective_scan(u, delta, A, B, C, D, bias, backend=backend)
        assert torch.isfinite(y).all(), backend
        assert rel_err(y, ref) <= 1e-5, backend


# MambaAD's real scan shapes at 256x256 (Bt=1): (D per direction, L). Stage 3 (D=128, L=4096) with D=4 here
# (the reference's 4096 Python steps dominate); the full stage 3 runs in benchmarks/bench_selective_scan.py --check.
REAL_SHAPES = {"stage0": (1024, 64), "stage1": (512, 256), "stage2": (256, 1024), "stage3_narrow": (4, 4096)}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(REAL_SHAPES))
def test_real_shapes_match_reference(stage: str) -> None:
    d, length = REAL_SHAPES[stage]
    inputs = make_inputs(1, 8, d, 16, length)
    grad_out = torch.randn(1, 8 * d, length, generator=torch.Generator().manual_seed(2))
    ref = forward_and_grads("reference", inputs, grad_out)
    for backend in FAST:
        got = forward_and_grads(backend, inputs, grad_out)
        for name, x, r in zip(("y", *NAMES), got, ref):
            assert rel_err(x, r) <= 1e-5, f"{backend} {name}"


@pytest.mark.parametrize("length", [1, 4, 31, 32, 33, 70, 96])
def test_time_pieces_equal_split_by_size(length: int) -> None:
    """Explicit piece lengths (traceable for ONNX) cut exactly as ``split(t, size)`` does."""
    from mambaad.scan.selective_scan import _split_time, piece_sizes

    t = torch.randn(2, 3, length)
    sizes = piece_sizes(length, 32)
    assert sum(sizes) == length and all(0 < s <= 32 for s in sizes) and sizes[:-1] == [32] * (len(sizes) - 1)
    (pieces,) = _split_time(32, t)
    expected = torch.split(t, 32, dim=-1)
    assert len(pieces) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(pieces, expected))
