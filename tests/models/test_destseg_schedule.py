"""DeSTSeg's training schedule: the paper's two steps (student alone, then the head with the student frozen)
and the concurrent ``joint`` variant, under the recipe's SGD (momentum 0.9, weight decay 1e-4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambaad.config import apply_overrides, load_config
from mambaad.engine.optim import build_optimizer
from mambaad.engine.trainer import build_model
from mambaad.errors import ConfigError
from mambaad.models import create_model
from mambaad.models.anomaly_map import cosine_distance_maps
from mambaad.models.destseg import DeSTSeg, agreement_features, focal_loss, student_steps
from mambaad.models.recipes import recipe_overrides
from mambaad.models.synthetic_anomalies import synthesize_anomalies

TINY = {"student_encoder": "resnet10t", "decoder_blocks": (1, 1, 1), "seg_width": 8}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**options: object) -> DeSTSeg:
    torch.manual_seed(0)
    return create_model("destseg", encoder="resnet18", encoder_weights=None, **{**TINY, **options})


def batch(seed: int = 1) -> Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))  # (2, 3, 64, 64)


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers (BatchNorm statistics included)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, Tensor], module: nn.Module) -> set[str]:
    now = module.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, now[k])}


def sgd_step(model: DeSTSeg, optimizer: torch.optim.Optimizer, step: int, total: int) -> float:
    """One step exactly as the trainer runs it (hook, loss, zero_grad(set_to_none), backward, step)."""
    model.set_train_progress(step, total)
    loss = model.training_loss(batch(step))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def recipe_optimizer(model: DeSTSeg) -> torch.optim.Optimizer:
    cfg = apply_overrides(load_config(None), [*recipe_overrides("destseg"), "train.lr=0.01"]).train
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay) == ("sgd", 0.9, 1e-4)
    return build_optimizer(model, cfg)


def test_two_step_is_the_default_with_a_fifth_for_the_student() -> None:
    model = tiny()
    assert (model.config.schedule, model.config.student_fraction) == ("two_step", 0.2)
    assert student_steps(5000, 0.2) == 1000  # the authors' release: 1000 of 5000 iterations
    assert [student_steps(t, 0.2) for t in (0, 1, 2, 3, 10)] == [0, 1, 1, 1, 2]
    assert student_steps(4, 0.9) == 3  # the head always gets a step when the run has two or more
    model.set_train_progress(999, 5000)
    assert model.phase == "student"
    model.set_train_progress(1000, 5000)
    assert model.phase == "head"


def test_two_step_trains_one_part_at_a_time_under_sgd_with_weight_decay() -> None:
    """Student phase: the head (weights and BN statistics) stays bit-identical; head phase: the student does,
    although SGD holds momentum for it and decays weights: parameters without a gradient are skipped."""
    model = tiny(student_fraction=0.5)
    model.train()
    optimizer = recipe_optimizer(model)
    total = 6  # steps 0..2 student, 3..5 head
    for step in range(total):
        student, head = snapshot(model.student), snapshot(model.segmentation)
        sgd_step(model, optimizer, step, total)
        student_grads = {p.grad is not None for p in model.student.parameters()}
        head_grads = {p.grad is not None for p in model.segmentation.parameters()}
        if step < 3:
            assert model.phase == "student" and model.student.training and not model.segmentation.training
            assert student_grads == {True} and head_grads == {False}
            assert changed(student, model.student), f"step {step}: student not updated"
            assert not changed(head, model.segmentation), f"step {step}: head changed in the student phase"
        else:
            assert model.phase == "head" and model.segmentation.training and not model.student.training
            assert student_grads == {False} and head_grads == {True}
            assert not changed(student, model.student), f"step {step}: student changed in the head phase"
            assert changed(head, model.segmentation), f"step {step}: head not updated"
    assert all(not m.training for m in model.encoder.modules())


def test_phase_survives_eval_and_train_switches() -> None:
    model = tiny()
    model.set_train_progress(3, 4)  # head phase
    model.eval()  # an evaluation between epochs
    model.train()  # the next epoch's model.train() must keep the student frozen
    assert model.segmentation.training and not model.student.training and not model.encoder.training


def old_joint_loss(model: DeSTSeg, images: Tensor) -> Tensor:
    """The concurrent loss as it was before the schedule option (the regression reference)."""
    corrupted, masks = synthesize_anomalies(images, model.config.anomaly_prob)
    clean_teacher = model.encoder(images)
    teacher, student = model.encoder(corrupted), model.student(corrupted)
    student_loss = sum(m.mean() for m in cosine_distance_maps(clean_teacher, student))
    logits = model.segmentation(agreement_features(teacher, [s.detach() for s in student]))
    target = (F.interpolate(masks, size=logits.shape[-2:], mode="bilinear") > 0.5).float()
    seg = focal_loss(logits, target, model.config.focal_gamma) + (torch.sigmoid(logits) - target).abs().mean()
    return student_loss + seg


def test_joint_keeps_the_previous_loss_and_gradients() -> None:
    model = tiny(schedule="joint")
    model.train()
    model.set_train_progress(5, 6)  # ignored: both parts train at every step
    assert model.phase == "joint" and model.student.training and model.segmentation.training
    images = batch()
    grads = []
    for loss_fn in (model.training_loss, lambda x: old_joint_loss(model, x)):
        torch.manual_seed(7)
        model.zero_grad(set_to_none=True)
        loss = loss_fn(images)
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.trainable_parameters()}))
    (loss_new, g_new), (loss_old, g_old) = grads
    assert torch.equal(loss_new, loss_old)
    assert g_new.keys() == g_old.keys() == {n for n, _ in model.trainable_parameters()}
    assert all(torch.equal(g_new[n], g_old[n]) for n in g_new)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"schedule": "foo"}, r"schedule must be 'two_step' or 'joint', got 'foo'"),
        ({"student_fraction": 0.0}, r"student_fraction must be a number in \(0, 1\), got 0\.0"),
        ({"student_fraction": 1}, r"student_fraction .* got 1$"),
        ({"student_fraction": -0.5}, r"student_fraction"),
        ({"student_fraction": "half"}, r"student_fraction .* got 'half'"),
    ],
)
def test_bad_schedule_options_are_one_line_config_errors(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        create_model("destseg", encoder="resnet18", encoder_weights=None, **TINY, **options)
    assert "\n" not in str(err.value)


def test_schedule_reaches_the_model_through_model_options() -> None:
    base = ["model.model=destseg", "model.encoder=resnet18", "model.encoder_weights=none"]
    base += ["model.options.student_encoder=resnet10t", "model.options.seg_width=8"]
    model = build_model(load_config(None, [*base, "model.options.schedule=joint"]))
    assert model.config.schedule == "joint" and model.config_dict()["schedule"] == "joint"
    model = build_model(load_config(None, [*base, "model.options.student_fraction=0.1"]))
    assert (model.config.schedule, model.config.student_fraction) == ("two_step", 0.1)
    with pytest.raises(ConfigError, match="schedule"):
        build_model(load_config(None, [*base, "model.options.schedule=foo"]))
