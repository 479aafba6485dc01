"""SS2D's per-direction projections: the split weight gradient equals the einsum's, in fp32 and bf16."""

from __future__ import annotations

import pytest
import torch

from mambaad.models import decoder
from mambaad.models.decoder import _DirectionProjection

# (x shape, w shape, einsum): x_proj (input shared by the K directions) and dt_proj (per direction)
CASES = [
    ((2, 96, 12), (4, 7, 12), "bld,kcd->bklc"),
    ((2, 4, 96, 3), (4, 12, 3), "bklr,kdr->bkld"),
]


@pytest.mark.parametrize(("xs", "ws", "eq"), CASES)
def test_values_and_gradients_equal_the_einsum(monkeypatch, xs, ws, eq) -> None:
    monkeypatch.setattr(decoder, "WEIGHT_GRAD_ROWS", 16)  # several pieces, one of them not a power of 2
    torch.manual_seed(0)
    x = torch.randn(*xs, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*ws, dtype=torch.float64, requires_grad=True)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y, y2 = _DirectionProjection.apply(x, w), torch.einsum(eq, x2, w2)
    g = torch.randn_like(y2)
    y.backward(g)
    y2.backward(g)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w.grad, w2.grad)


def test_strided_input_and_gradcheck() -> None:
    torch.manual_seed(1)
    x_dbl = torch.randn(2, 4, 10, 3 + 8, dtype=torch.float64)
    dts = x_dbl[..., :3].requires_grad_()  # a split view, as SS2D passes it
    w = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_DirectionProjection.apply, (dts, w))


@pytest.mark.parametrize(("xs", "ws", "eq"), CASES)
def test_bf16_autocast_backward_runs(xs, ws, eq) -> None:
    """Under autocast the forward runs in bf16 while x and w stay fp32: the backward must mix them."""
    torch.manual_seed(2)
    x = torch.randn(*xs, requires_grad=True)
    w = torch.randn(*ws, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _DirectionProjection.apply(x, w)
        ref = torch.einsum(eq, x, w)
    y.float().sum().backward()
    assert x.grad.dtype == x.dtype and w.grad.dtype == w.dtype
    x2, w2 = x.detach().requires_grad_(), w.detach().requires_grad_()
    torch.einsum(eq, x2, w2).sum().backward()
    assert torch.allclose(y.float(), ref.float())
    assert torch.allclose(w.grad, w2.grad, rtol=3e-2, atol=3e-2 * w2.grad.abs().max().item())
