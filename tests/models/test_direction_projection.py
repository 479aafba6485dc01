"""SS2D's per-direction projections (``mambaad.scan.projections``): x_proj's split weight gradient and the
low-rank dt_proj gradients equal the einsum's, in fp64, fp32 and under bf16 autocast."""

from __future__ import annotations

import torch

from mambaad.scan import projections
from mambaad.scan.projections import DirectionProjection, low_rank_delta, low_rank_delta_grads


def test_x_proj_values_and_gradients_equal_the_einsum(monkeypatch) -> None:
    monkeypatch.setattr(projections, "WEIGHT_GRAD_ROWS", 16)  # several pieces, one of them not a power of 2
    torch.manual_seed(0)
    x = torch.randn(2, 96, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 7, 12, dtype=torch.float64, requires_grad=True)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y, y2 = DirectionProjection.apply(x, w), torch.einsum("bld,kcd->bklc", x2, w2)
    g = torch.randn_like(y2)
    y.backward(g)
    y2.backward(g)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w.grad, w2.grad)


def test_x_proj_strided_input_gradcheck() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 12, 10, dtype=torch.float64).transpose(1, 2).requires_grad_()  # (B, L, D) view
    w = torch.randn(4, 5, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(DirectionProjection.apply, (x, w))


def test_x_proj_bf16_autocast_backward_runs() -> None:
    """Under autocast the forward runs in bf16 while x and w stay fp32: the backward must mix them."""
    torch.manual_seed(2)
    x = torch.randn(2, 96, 12, requires_grad=True)
    w = torch.randn(4, 7, 12, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = DirectionProjection.apply(x, w)
        ref = torch.einsum("bld,kcd->bklc", x, w)
    y.float().sum().backward()
    assert x.grad.dtype == x.dtype and w.grad.dtype == w.dtype
    x2, w2 = x.detach().requires_grad_(), w.detach().requires_grad_()
    torch.einsum("bld,kcd->bklc", x2, w2).sum().backward()
    assert torch.allclose(y.float(), ref.float())
    assert torch.allclose(w.grad, w2.grad, rtol=3e-2, atol=3e-2 * w2.grad.abs().max().item())


def test_low_rank_delta_and_its_gradients_equal_the_einsum(monkeypatch) -> None:
    """delta = dt_proj(dts) as the scan computes it (a (B, K, D, L) view) and its hand-written gradients."""
    monkeypatch.setattr(projections, "WEIGHT_GRAD_ROWS", 16)
    torch.manual_seed(3)
    x_dbl = torch.randn(2, 4, 96, 3 + 8, dtype=torch.float64)
    dts = x_dbl[..., :3].transpose(2, 3).requires_grad_()  # (B, K, R, L) view of a split, as SS2D passes
    w = torch.randn(4, 12, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.einsum("bkrl,kdr->bkdl", dts, w)
    delta = low_rank_delta(dts.detach(), w.detach())
    torch.testing.assert_close(delta, ref)
    assert delta.stride(2) == 1  # channels innermost in memory, as the kernels read them
    g = torch.randn_like(ref)
    ref.backward(g)
    d_dts, d_w = low_rank_delta_grads(g, dts.detach(), w.detach())
    torch.testing.assert_close(d_dts, dts.grad)
    torch.testing.assert_close(d_w, w.grad)
    assert low_rank_delta_grads(g, dts.detach(), w.detach(), (False, True))[0] is None


def test_low_rank_delta_bf16_is_recomputed_identically() -> None:
    """Under autocast dts is bf16 and the weight fp32: delta is computed in bf16 either way, so the
    backward's recomputation (outside autocast) gives the forward's values bit for bit."""
    torch.manual_seed(4)
    dts = torch.randn(2, 4, 3, 40).bfloat16()
    w = torch.randn(4, 12, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = low_rank_delta(dts, w)
    outside = low_rank_delta(dts, w)
    assert inside.dtype == outside.dtype == torch.bfloat16
    assert torch.equal(inside, outside)


def test_ss2d_hands_the_fused_scan_rows_stored_direction_by_direction(monkeypatch) -> None:
    """The fused scan gathers each direction's (dt, B, C) row per pixel: SS2D stores them (B, K, L, R+2N) in
    fp32, a direction's rows adjacent (x_proj writes (B, L, K, R+2N); the gathers ran slower on it), the
    output unchanged by the copy, in fp32 and under bf16 autocast."""
    from mambaad.models.decoder import SS2D
    from mambaad.scan import triton_scan

    seen = []

    def fake_scan(u, dts, A, B, C, *args, **kwargs):
        seen.append((dts, B, C))
        return torch.zeros_like(u, dtype=torch.float32)

    monkeypatch.setattr(triton_scan, "hybrid_selective_scan", fake_scan)
    torch.manual_seed(3)
    ss2d = SS2D(32, d_state=4, directions=4)
    x = torch.randn(2, 64, 6, 5)  # (B, D, H, W) after the depthwise conv
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            ss2d._scan_fused(x, x, "triton")
        dts, b, c = seen[-1]
        rows = ss2d.dt_rank + 2 * ss2d.d_state  # R + 2N
        for t in (dts, b, c):
            assert t.dtype == torch.float32
            assert t.stride() == (4 * 30 * rows, 30 * rows, 1, rows)  # (B, K, ., L) views of (B, K, L, R+2N)
        x_dbl = torch.einsum("bld,kcd->bklc", x.flatten(2).transpose(1, 2), ss2d.x_proj_weight).float()
        tol = {"atol": 0.05, "rtol": 0.05} if autocast else {}
        torch.testing.assert_close(b, x_dbl[..., 2:6].transpose(2, 3), **tol)
        torch.testing.assert_close(c, x_dbl[..., 6:].transpose(2, 3), **tol)


def test_ss2d_scans_an_fp32_u_without_autograd(monkeypatch) -> None:
    """Under autocast x_proj takes the bf16 conv output and the fused scan its fp32 copy, cast in SS2D's
    forward (where torch.compile fuses it) when nothing is recorded; training hands the scan x itself."""
    from mambaad.models.decoder import SS2D

    seen = []
    monkeypatch.setattr(SS2D, "_scan_fused", lambda self, x, u, backend: seen.append((x, u)) or u.float())
    monkeypatch.setattr("mambaad.models.decoder.resolve_backend", lambda *args: "triton")
    ss2d = SS2D(16, d_state=4, directions=2)
    x = torch.randn(1, 5, 6, 16)  # (B, H, W, C)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            ss2d(x)
        ss2d(x)
    (x_infer, u_infer), (x_train, u_train) = seen
    assert x_infer.dtype == torch.bfloat16 and u_infer.dtype == torch.float32
    torch.testing.assert_close(u_infer, x_infer.float(), rtol=0, atol=0)
    assert u_train is x_train and u_train.dtype == torch.bfloat16


def test_ss2d_keeps_its_scan_constants_in_eval_mode_only() -> None:
    """In eval mode without autograd A = -exp(A_logs) and x_proj's weight in x's dtype are computed
    once and kept; an in-place update or a mode switch (the trainer's, around each evaluation) makes them
    anew; in training they are computed each call, the weight handed over as it is."""
    from mambaad.models.decoder import SS2D

    f32 = torch.float32
    ss2d = SS2D(16, d_state=4, directions=2).eval()
    with torch.no_grad():
        a, w = ss2d._scan_constants(f32)
        assert ss2d._scan_constants(f32)[0] is a and ss2d._scan_constants(f32)[1] is w
        torch.testing.assert_close(a, -torch.exp(ss2d.A_logs), rtol=0, atol=0)
        _, w16 = ss2d._scan_constants(torch.bfloat16)  # x under bf16 autocast
        assert w16.dtype == torch.bfloat16 and torch.equal(w16, ss2d.x_proj_weight.bfloat16())
        ss2d.A_logs.add_(1.0)  # in place, as a plain optimizer step: a new version
        torch.testing.assert_close(ss2d._scan_constants(f32)[0], -torch.exp(ss2d.A_logs), rtol=0, atol=0)
        kept = ss2d._scan_constants(f32)[0]
        ss2d.train().eval()  # the fused AdamW bumps no version: the mode switch drops what was kept
        assert ss2d._scan_constants(f32)[0] is not kept
        ss2d.train()
        assert ss2d._scan_constants(f32)[1] is ss2d.x_proj_weight
    # the kernels' index type, no cast per call
    assert ss2d.scans.orders(5, 4, torch.device("cpu")).dtype == torch.int32
