"""The engine's training step (``mambaad.engine.step``): the eager step is the recipe's, and a CUDA-graph
step is refused with a clear error where it cannot run. The captured step itself needs a GPU:
``benchmarks/check_train_graph.py`` compares it with the eager one there."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from engine_helpers import tiny_overrides

from mambaad.config import load_config
from mambaad.engine.step import RECOMPILE_LIMIT, TrainStep, compile_forward, make_capturable, use_cuda_graph
from mambaad.engine.trainer import build_model, train
from mambaad.errors import ConfigError
from mambaad.models.anomaly_map import gaussian_blur
from mambaad.models.decoder import SS2D
from tiny_run import TINY_RUN


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_config(None, [*TINY_RUN, "model.drop_path_rate=0"]))


def test_eager_step_is_forward_backward_clip_update() -> None:
    """TrainStep(eager) = zero grads, loss, backward, clip, optimizer step; returns the detached loss."""
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    a, b = _tiny_model(), _tiny_model()
    params_a = [p for _, p in a.trainable_parameters()]
    params_b = [p for _, p in b.trainable_parameters()]
    opt_a = torch.optim.AdamW(params_a, lr=1e-3)
    opt_b = torch.optim.AdamW(params_b, lr=1e-3)
    step = TrainStep(a.training_loss, opt_a, params_a, 0.5, contextlib.nullcontext)
    for _ in range(2):
        loss_a = step(images)
        opt_b.zero_grad(set_to_none=True)
        loss_b = b.training_loss(images)
        loss_b.backward()
        torch.nn.utils.clip_grad_norm_(params_b, 0.5)
        opt_b.step()
        assert not loss_a.requires_grad
        assert torch.equal(loss_a, loss_b.detach())
    assert all(torch.equal(p, q) for p, q in zip(params_a, params_b))
    assert step.captures == 0


def test_cuda_graph_setting() -> None:
    """null: on where it works; true: required (a clear error elsewhere); false: off."""
    model, cpu, cuda = _tiny_model(), torch.device("cpu"), torch.device("cuda")
    assert use_cuda_graph(None, model, cpu) is False
    assert use_cuda_graph(False, model, cuda) is False
    assert use_cuda_graph(None, model, cuda) is True
    assert use_cuda_graph(None, torch.nn.Linear(2, 2), cuda) is False
    with pytest.raises(ConfigError, match=r"train\.cuda_graph needs a CUDA device"):
        use_cuda_graph(True, model, cpu)
    with pytest.raises(ConfigError, match="supports the mambaad model only"):
        use_cuda_graph(True, torch.nn.Linear(2, 2), cuda)


def test_trainer_refuses_cuda_graph_on_cpu(synth_root: Path, tmp_path: Path) -> None:
    """A clear ConfigError before the first step; no run folder is written."""
    out = tmp_path / "run"
    cfg = load_config(None, [*tiny_overrides(synth_root, out, epochs=1), "train.cuda_graph=true"])
    with pytest.raises(ConfigError, match=r"train\.cuda_graph needs a CUDA device"):
        train(cfg, progress=False, echo=None)
    assert not (out / "checkpoints").exists()


def test_make_capturable_after_a_resume() -> None:
    """A loaded optimizer state (saved by a non-captured run) is made capturable before the first step:
    every group flag set, every step counter a float32 tensor on its parameter's device."""
    model = _tiny_model()
    params = [p for _, p in model.trainable_parameters()]
    saved = torch.optim.AdamW(params, lr=1e-3)
    model.training_loss(torch.randn(2, 3, 64, 64)).backward()
    saved.step()
    resumed = torch.optim.AdamW(params, lr=1e-3)
    resumed.load_state_dict(saved.state_dict())
    assert not any(g["capturable"] for g in resumed.param_groups)
    make_capturable(resumed)
    assert all(g["capturable"] for g in resumed.param_groups)
    steps = [s["step"] for s in resumed.state.values()]
    assert steps and all(t.dtype == torch.float32 and float(t) == 1.0 for t in steps)


def test_tf32_only_inside_the_step() -> None:
    """``tf32=True``: TF32 matrix products during the forward and backward, the previous setting after."""
    seen = []
    model = _tiny_model()
    params = [p for _, p in model.trainable_parameters()]

    def loss_fn(images: torch.Tensor) -> torch.Tensor:
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        return model.training_loss(images)

    before = torch.backends.cuda.matmul.allow_tf32
    opt = torch.optim.AdamW(params, lr=1e-3)
    TrainStep(loss_fn, opt, params, 0.0, contextlib.nullcontext, tf32=True)(torch.randn(2, 3, 64, 64))
    TrainStep(loss_fn, opt, params, 0.0, contextlib.nullcontext)(torch.randn(2, 3, 64, 64))
    assert seen == [True, before] and torch.backends.cuda.matmul.allow_tf32 == before


def test_eval_tf32_only_inside_prediction() -> None:
    """``eval.tf32``: the model predicts with TF32 matrix products allowed; the setting is restored after."""
    from mambaad.config import DataConfig, EvalConfig
    from mambaad.engine.evaluator import _predict

    seen = []

    class Probe(torch.nn.Module):
        def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seen.append(torch.backends.cuda.matmul.allow_tf32)
            return torch.zeros(images.shape[0], 8, 8), torch.zeros(images.shape[0])

    item = {"image": torch.zeros(3, 8, 8), "label": 0, "has_mask": False, "mask": torch.zeros(1, 8, 8)}
    data = DataConfig(image_size=8, crop_size=8, num_workers=0)
    before = torch.backends.cuda.matmul.allow_tf32

    class Bar:
        def update(self, n: int) -> None:
            pass

    for tf32 in (True, False):
        out = _predict(
            Probe(),
            [item],
            [0],
            False,
            data,
            EvalConfig(tf32=tf32),
            torch.device("cpu"),
            1,
            False,
            False,
            Bar(),
        )
        assert out["maps"].shape == (1, 8, 8)
    assert seen == [True, before] and torch.backends.cuda.matmul.allow_tf32 == before


def test_compile_forward_keeps_outputs_and_weights() -> None:
    """``compile_forward``: the same outputs and state-dict keys (checkpoints unchanged), compiled once."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.SiLU())
    x = torch.randn(4, 8)
    eager = model(x)
    keys = list(model.state_dict())
    assert compile_forward(model) is model
    compiled = model.forward
    assert compile_forward(model).forward is compiled  # a second call changes nothing
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT  # train + eval + bf16 versions fit
    torch.testing.assert_close(model(x), eager, atol=1e-6, rtol=1e-6)
    assert list(model.state_dict()) == keys


class _Mapper(torch.nn.Linear):
    def anomaly_map(self, maps: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(maps, 2.0)


def test_compile_forward_compiles_the_anomaly_map() -> None:
    """A model's ``anomaly_map`` (maps + blur) is compiled with its forward, to the same values."""
    model, maps = _Mapper(4, 4), torch.rand(2, 12, 10)
    eager = model.anomaly_map(maps)
    compile_forward(model)
    assert "anomaly_map" in vars(model)  # the compiled function, set on the instance
    torch.testing.assert_close(model.anomaly_map(maps), eager, atol=1e-6, rtol=1e-5)


def test_ss2d_input_projection_compiles_with_dynamic_shapes() -> None:
    """SS2D's in_proj halves and depthwise conv compile under dynamic shapes (as ``compile_forward`` runs
    them: one function per block, several stage sizes), with and without autograd, to the eager values.
    Two dense products in training broke inductor on the conv's backward (torch 2.14)."""
    torch.manual_seed(0)
    ss2d = SS2D(16, d_state=4, directions=2)

    def head(x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> scalar
        a, z = ss2d._in_proj(x)
        return (ss2d.conv2d(a.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) * z).sum()

    compiled = torch.compile(head, dynamic=True)
    x = torch.randn(2, 6, 6, 16)
    compiled(x).backward()  # autograd: one product, chunked
    grad = ss2d.in_proj.weight.grad.clone()
    ss2d.zero_grad()
    head(x).backward()
    torch.testing.assert_close(grad, ss2d.in_proj.weight.grad, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # two products
        torch.testing.assert_close(compiled(x), head(x), atol=1e-4, rtol=1e-5)


def test_compile_options_reach_training_and_evaluation(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train.compile`` compiles the model before the training step is built, ``eval.compile`` before the
    evaluation predicts; both off by default (compiling itself is checked above and on the GPU machine)."""
    from mambaad.engine import evaluator, trainer

    seen: list[str] = []
    monkeypatch.setattr(trainer, "compile_forward", lambda m: seen.append("train") or m)
    monkeypatch.setattr(evaluator, "compile_forward", lambda m: seen.append("eval") or m)
    base = tiny_overrides(synth_root, tmp_path / "off", epochs=1)
    assert train(load_config(None, base), progress=False, echo=None) is not None
    assert seen == []
    on = [*tiny_overrides(synth_root, tmp_path / "on", epochs=1), "train.compile=true", "eval.compile=true"]
    assert train(load_config(None, on), progress=False, echo=None) is not None
    assert seen[0] == "train" and "eval" in seen
