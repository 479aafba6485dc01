"""Training end to end on a tiny model: resume equals an uninterrupted run, also after a real kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_helpers import as_cli, tiny_overrides

from mambaad.config import load_config
from mambaad.engine.checkpoint import load_checkpoint
from mambaad.engine.trainer import TrainResult, resume_config, train
from mambaad.errors import ConfigError


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.safetensors")[0]


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[0]}"


@pytest.fixture(scope="module")
def straight(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """3 epochs without interruption (evaluation after epoch 2 and 3)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("straight") / "run"
    cfg = load_config(None, [*tiny_overrides(synth_root, out), "train.eval_every=2"])
    result = train(cfg, progress=False, echo=None)
    assert result is not None
    return result


def test_run_folder_contents(straight: TrainResult) -> None:
    run = straight.run_dir
    for name in ("config.yaml", "train.log", "metrics.md", "metrics.csv", "metrics.json", "report.html"):
        assert (run / name).is_file(), name
    ck = run / "checkpoints"
    for name in ("last", "best", "last_state"):
        assert (ck / f"{name}.safetensors").is_file() and (ck / f"{name}.json").is_file()
    _, meta = load_checkpoint(ck / "last.safetensors")
    assert meta["epoch"] == 3 and meta["iteration"] == 6  # 8 images / batch 4 = 2 steps per epoch
    assert sorted(meta["classes"]) == ["disc", "woven"] and meta["encoder"] == "test_efficientnet"
    assert meta["config"]["train"]["epochs"] == 3 and "threshold" in meta and meta["metrics"]["mean"]
    log = (run / "train.log").read_text()
    assert log.count("eval epoch") == 2 and "epoch 3/3 loss" in log
    assert set(straight.final.per_class) == {"woven", "disc", "mean"}
    assert "pixel_auroc" in straight.final.per_class["mean"]


def test_resume_in_process_gives_identical_weights(
    straight: TrainResult, synth_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, [*tiny_overrides(synth_root, out), "train.eval_every=2"])
    assert train(cfg, stop_after_epoch=2, progress=False, echo=None) is None
    assert load_checkpoint(out / "checkpoints" / "last.safetensors")[1]["epoch"] == 2
    torch.manual_seed(1234)  # global RNG disturbed between the two processes' lifetimes
    resumed = train(resume_config(out), resume=True, progress=False, echo=None)
    assert resumed is not None and resumed.iterations == 6
    _assert_same(_weights(straight.run_dir), _weights(out))
    assert resumed.final.per_class == straight.final.per_class


def test_existing_run_needs_resume(straight: TrainResult, synth_root: Path) -> None:
    before = _weights(straight.run_dir)
    cfg = load_config(None, tiny_overrides(synth_root, straight.run_dir))
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, progress=False, echo=None)
    _assert_same(before, _weights(straight.run_dir))


def test_kill_9_then_resume_matches(straight: TrainResult, synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = as_cli([*tiny_overrides(synth_root, out), "train.eval_every=2"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mambaad", "train", "--no-progress", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = out / "checkpoints" / "last_state.safetensors"
    deadline = time.monotonic() + 60
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.exists(), "no checkpoint appeared"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    from mambaad.cli import main

    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    _assert_same(_weights(straight.run_dir), _weights(out))


def test_loader_workers_and_image_cache_do_not_change_training(
    straight: TrainResult, synth_root: Path, tmp_path: Path
) -> None:
    """The same run with 2 persistent data-loader workers and every image read from its file each epoch (no
    cache; the straight run caches) gives the straight run's weights exactly: the batches depend only on
    (seed, epoch), whoever loads them."""
    out = tmp_path / "run"
    overrides = [*tiny_overrides(synth_root, out), "train.eval_every=2"]
    cfg = load_config(None, [*overrides, "data.num_workers=2", "data.cache_images=false"])
    assert train(cfg, progress=False, echo=None) is not None
    _assert_same(_weights(straight.run_dir), _weights(out))
    assert "caching the 8 training images" in (straight.run_dir / "train.log").read_text()
    assert "caching" not in (out / "train.log").read_text()
