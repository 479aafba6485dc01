"""Parameter and FLOP counts for any model of the registry, selective scans included.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls and convolutions on one forward pass (a
multiply-add counts as 2 FLOPs). It cannot see the selective scan, which is elementwise work in a loop
(or a fused kernel), so every :class:`~mambaad.models.decoder.SS2D` call adds, by a forward hook, the
scan's cost as Mamba's papers estimate it: about ``9 * B * L * D * N`` FLOPs for ``D = K * d_inner``
channels (K scan directions), ``L = H * W`` positions and state size ``N = d_state``.

Tables in the anomaly-detection literature (fvcore in MambaAD/ADer) usually count one FLOP per
multiply-add; divide ``gflops`` by 2 (``gmacs``) to compare with them.

    >>> from mambaad.models import create_model
    >>> count_parameters(create_model("mambaad"))[0]
    25615232
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mambaad.models.decoder import SS2D

SCAN_FLOPS_PER_ELEMENT = 9  # per (batch, position, channel, state) element of one selective scan


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; frozen encoders count in the total only."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def scan_flops(module: SS2D, x: Tensor) -> int:
    """FLOPs of the selective scan inside one SS2D call on a (B, H, W, C) input."""
    b, h, w, _ = x.shape
    channels = module.scans.directions * module.d_inner  # K * D
    return SCAN_FLOPS_PER_ELEMENT * b * h * w * channels * module.d_state


def _count(model: nn.Module, image_size: int) -> tuple[float, float]:
    """(counted FLOPs, scan FLOPs) of one forward pass on a (1, 3, S, S) CPU input in eval mode."""
    scans: list[int] = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        scans.append(scan_flops(module, inputs[0]))  # type: ignore[arg-type]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, SS2D)]
    was_training = model.training
    model.eval()
    x = torch.randn(1, 3, image_size, image_size)
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return float(counter.get_total_flops()), float(sum(scans))


def count_flops(model: nn.Module, image_size: int = 256) -> float:
    """GFLOPs of one forward pass at ``image_size`` (batch 1, CPU), the selective scans included."""
    counted, scan = _count(model, image_size)
    return (counted + scan) / 1e9


def efficiency_report(model: nn.Module, image_size: int = 256) -> dict[str, float]:
    """{params, trainable, gflops (total), gflops_scan (part of the total), gmacs (gflops / 2)}."""
    total, trainable = count_parameters(model)
    counted, scan = _count(model, image_size)
    gflops = (counted + scan) / 1e9
    return {
        "params": total,
        "trainable": trainable,
        "gflops": gflops,
        "gflops_scan": scan / 1e9,
        "gmacs": gflops / 2,
    }
