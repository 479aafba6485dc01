"""The trainer's progress hook (``model.set_train_progress(step, total_steps)`` before every optimizer step),
also after a resume, and DeSTSeg's two-step schedule through the real training loop (SGD recipe)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import tiny_overrides

from mambaad.config import load_config
from mambaad.engine.checkpoint import load_checkpoint
from mambaad.engine.trainer import build_model, report_progress, resume_config, train
from mambaad.models.destseg import DeSTSeg
from mambaad.models.recipes import recipe_overrides

# 8 synthetic training images, batch 4: 2 steps per epoch; 2 epochs = 4 steps, the student trains steps 0-1
DESTSEG = [
    "model.model=destseg",
    "model.encoder=resnet18",
    "model.options.student_encoder=resnet10t",
    "model.options.decoder_blocks=[1,1,1]",
    "model.options.seg_width=8",
    "model.options.student_fraction=0.5",
    *recipe_overrides("destseg"),
    "train.lr=0.01",
    "train.eval_every=0",
]


def _config(data: Path, out: Path) -> list[str]:
    return [*tiny_overrides(data, out, epochs=2), *DESTSEG]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, str]]:
    """Every (step, total_steps, phase after the call) the trainer reports to DeSTSeg."""
    seen: list[tuple[int, int, str]] = []
    original = DeSTSeg.set_train_progress

    def record(self: DeSTSeg, step: int, total_steps: int) -> None:
        original(self, step, total_steps)
        seen.append((step, total_steps, self.phase))

    monkeypatch.setattr(DeSTSeg, "set_train_progress", record)
    return seen


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.safetensors")[0]


def _part(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in weights.items() if k.startswith(prefix)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_models_without_the_hook_are_left_alone() -> None:
    report_progress(torch.nn.Linear(2, 2), 3, 10)  # no set_train_progress: nothing to call, no error


def test_trainer_reports_progress_and_resumes_the_two_step_schedule(
    synth_root: Path, tmp_path: Path, calls: list[tuple[int, int, str]]
) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, _config(synth_root, out))
    assert train(cfg, stop_after_epoch=1, progress=False, echo=None) is None
    assert calls == [(0, 4, "student"), (1, 4, "student")]
    after_student = _weights(out)
    torch.manual_seed(cfg.train.seed)
    initial = {k: v for k, v in build_model(cfg).state_dict().items()}  # the run's weights at step 0
    assert _same(_part(after_student, "segmentation."), _part(initial, "segmentation."))
    assert not _same(_part(after_student, "student."), _part(initial, "student."))

    calls.clear()
    resumed = train(resume_config(out), resume=True, progress=False, echo=None)
    assert resumed is not None and resumed.iterations == 4
    assert calls == [(2, 4, "head"), (3, 4, "head")]  # the global step continues after the resume
    final = _weights(out)
    assert _same(_part(final, "student."), _part(after_student, "student."))  # BN statistics included
    assert not _same(_part(final, "segmentation."), _part(after_student, "segmentation."))

    calls.clear()
    straight = tmp_path / "straight"
    assert train(load_config(None, _config(synth_root, straight)), progress=False, echo=None) is not None
    assert [c[:2] for c in calls] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert _same(_weights(straight), final)  # interrupted + resumed == uninterrupted
