"""``mambaad train`` / ``test`` / ``demo`` through ``cli.main``: outputs, and one-line user errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mambaad.cli import main
from tiny_run import SMALL_CLI

TINY = [
    "--encoder",
    "test_efficientnet",
    "--encoder-weights",
    "none",
    "--model.depths",
    "[1,1,1,1]",
    "--model.directions",
    "2",
    "--model.d_state",
    "4",
    "--model.expand",
    "1",
    *SMALL_CLI,
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: "), err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("verb", ["train", "test", "demo"])
def test_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([verb, "--help"]) == 0
    assert "--config" in capsys.readouterr().out


@pytest.fixture(scope="module")
def run_dir(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data", str(synth_root), "--out", str(out), "--epochs", "1", *TINY]) == 0
    return out


def test_train_writes_run_and_test_writes_reports(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("metrics.md", "metrics.csv", "metrics.json", "report.html", "train.log", "config.yaml"):
        assert (run_dir / name).is_file(), name
    assert main(["test", str(run_dir), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| **mean** |" in out and "report:" in out
    for name in ("metrics.md", "metrics.json", "report.html"):
        assert (run_dir / "test" / name).is_file(), name
    # a second test into the same folder would overwrite results: refused
    assert main(["test", str(run_dir), "--no-progress"]) == 1
    _one_line_error(capsys, "already holds")
    # training again into the run folder without --resume: refused, suggests --resume
    before = (run_dir / "checkpoints" / "last.safetensors").read_bytes()
    assert main(["train", "--data", "x", "--out", str(run_dir), *TINY]) == 1
    _one_line_error(capsys, "--resume")
    assert (run_dir / "checkpoints" / "last.safetensors").read_bytes() == before


def test_checkpoint_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(tmp_path / "nope.safetensors")]) == 1
    _one_line_error(capsys, "nope.safetensors", "not found")
    bad = tmp_path / "cut.safetensors"
    data = (run_dir / "checkpoints" / "last.safetensors").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    assert main(["test", str(bad), "--out", str(tmp_path / "t")]) == 1
    _one_line_error(capsys, "cut.safetensors", "truncated or corrupt")
    assert main(["train", "--resume", str(tmp_path)]) == 1
    _one_line_error(capsys, "--resume")


def test_usage_and_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--bogus"]) == 2
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), *TINY]) == 1
    _one_line_error(capsys, "missing")
    assert main(["train", "--data", "x", "--train.epoch", "3"]) == 1
    _one_line_error(capsys, "train.epochs")  # the suggestion
    assert main(["train", "--device", "cuda:0", "--data", "x", "--out", str(tmp_path / "c")]) == 1
    _one_line_error(capsys, "train.device")
    assert main(["data", str(tmp_path), "--train.epochs", "3"]) == 2


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_corrupt_training_image_fails_before_training(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(synth_root, tmp_path / "data")
    victim = sorted((root / "disc" / "train" / "good").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:100])
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(out), *TINY]) == 1
    _one_line_error(capsys, str(victim), "truncated")
    assert not out.exists()  # nothing was trained or written
    with pytest.raises(Exception, match="truncated"):
        main(["train", "--debug", "--data", str(root), "--out", str(out), *TINY])


def test_defect_image_without_mask(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(synth_root, tmp_path / "data")
    mask = next((root / "woven" / "ground_truth").rglob("*_mask.png"))
    mask.unlink()
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), *TINY]) == 1
    _one_line_error(capsys, "has no mask")
    assert not (tmp_path / "run").exists()


def test_mask_of_another_size_fails_before_training(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found when the files are checked, not at the first evaluation (it was found there, after training)."""
    from PIL import Image

    root = _copy(synth_root, tmp_path / "data")
    mask = next((root / "woven" / "ground_truth").rglob("*_mask.png"))
    Image.open(mask).resize((32, 32)).save(mask)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), *TINY]) == 1
    _one_line_error(capsys, str(mask), "mask size 32x32 differs from its image size 64x64")
    assert not (tmp_path / "run").exists()


def test_error_raised_in_a_loader_worker_is_its_own_line() -> None:
    """torch re-raises a worker's DataError with the worker's traceback as its message; the CLI prints the
    original message alone."""
    from torch._utils import ExceptionWrapper

    from mambaad.cli import user_message
    from mambaad.errors import DataError

    try:
        raise DataError("a/b_mask.png: mask size 32x32 differs from its image size 64x64")
    except DataError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(DataError) as caught:
        wrapped.reraise()
    assert "Original Traceback" in str(caught.value)
    assert user_message(caught.value) == "a/b_mask.png: mask size 32x32 differs from its image size 64x64"
    assert user_message(DataError("plain:  two\nlines")) == "plain: two lines"


@pytest.mark.parametrize("model", ["rd4ad", "uniad", "simplenet", "destseg"])
def test_train_baselines_through_the_cli(model: str, synth_root: Path, tmp_path: Path) -> None:
    """Every registered model trains and is evaluated by the same engine (a few steps, tiny data)."""
    out = tmp_path / model
    argv = ["train", "--model", model, "--data", str(synth_root), "--out", str(out), "--epochs", "1"]
    size = "128" if model == "uniad" else "64"  # UniAD's 7x7 neighbour mask needs more than a 4x4 grid
    argv += ["--encoder", "resnet18", "--encoder-weights", "none", "--data.image_size", size]
    argv += ["--data.crop_size", size, "--data.num_workers", "0", "--batch-size", "4", "--device", "cpu"]
    assert main([*argv, "--no-progress", "--train.lr", "0.0001"]) == 0
    metrics = (out / "metrics.json").read_text()
    assert "image_auroc" in metrics and (out / "report.html").is_file()
