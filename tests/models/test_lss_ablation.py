"""The LSS ablation switch (model.lss_branches, model.local_kernels): which branches exist and run."""

from __future__ import annotations

import pytest
import torch

from mambaad.config import load_config
from mambaad.engine.trainer import build_model
from mambaad.errors import ConfigError
from mambaad.models import create_model
from mambaad.models.decoder import HSSBlock, LocalBranch, LSSModule

TINY = {"depths": (1, 1, 1, 1), "directions": 2, "d_state": 4, "expand": 1}


def tiny(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mambaad", encoder="test_efficientnet", encoder_weights=None, **TINY, **options)


@pytest.mark.parametrize(
    ("branches", "kernels", "n_hss", "local_kernels"),
    [
        ("both", (5, 7), 4, [5, 7]),
        ("hss", (5, 7), 4, []),
        ("conv", (3, 5), 0, [3, 5]),
        ("both", (3,), 4, [3]),
    ],
)
def test_lss_parts(branches: str, kernels: tuple[int, ...], n_hss: int, local_kernels: list[int]) -> None:
    model = tiny(lss_branches=branches, local_kernels=kernels)
    lss = [m for m in model.decoder.modules() if isinstance(m, LSSModule)]
    assert len(lss) == 4  # one per stage for depth 1, whatever the branches
    assert sum(isinstance(m, HSSBlock) for m in model.decoder.modules()) == n_hss
    for m in lss:
        assert [b.dw[0].kernel_size[0] for b in m.local] == local_kernels
        assert m.fuse.in_channels == m.fuse.out_channels * ((n_hss > 0) + len(local_kernels))
    assert all(isinstance(b, LocalBranch) for m in lss for b in m.local)
    x = torch.randn(1, 3, 64, 64)
    loss = model.training_loss(x)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for _, p in model.trainable_parameters())


def test_default_keeps_the_official_parameter_names() -> None:
    keys = set(tiny().state_dict())
    assert any(k.startswith("decoder.stages.0.blocks.0.hss.0.ss2d.") for k in keys)
    assert any(".local.1.dw.0.weight" in k for k in keys)
    assert tiny().config_dict()["lss_branches"] == "both"


def test_config_reaches_the_model_and_bad_values_fail() -> None:
    cfg = load_config(
        None,
        [
            "model.encoder=test_efficientnet",
            "model.encoder_weights=none",
            "model.depths=[1,1,1,1]",
            "model.lss_branches=conv",
            "model.local_kernels=[3]",
        ],
    )
    model = build_model(cfg)
    assert model.config.lss_branches == "conv" and model.config.local_kernels == (3,)
    with pytest.raises(ConfigError, match=r"model\.lss_branches must be one of both, hss, conv"):
        load_config(None, ["model.lss_branches=global"])
    with pytest.raises(ConfigError, match=r"model\.local_kernels must name at least one kernel"):
        load_config(None, ["model.lss_branches=conv", "model.local_kernels=[]"])
    with pytest.raises(ConfigError, match=r"model\.local_kernels must be odd"):
        load_config(None, ["model.local_kernels=[4]"])
    with pytest.raises(ConfigError, match="lss_branches"):
        tiny(lss_branches="nope")
