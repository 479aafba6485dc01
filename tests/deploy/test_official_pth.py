"""``mambaad test`` on an official MambaAD ``.pth``: the same metrics as the same weights loaded natively.

The official configuration (ResNet34, depths 3/4/6/3, 8 Hilbert directions) with random weights, saved
once under the official names (as the released checkpoints are) and once as our ``.safetensors``; both
evaluated at 64 px (a dotted override of the official 256 px geometry, to keep the test fast).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mambaad.cli import main, official_run_config
from mambaad.config import config_to_dict
from mambaad.engine.checkpoint import save_checkpoint, weights_meta
from mambaad.models.mambaad import MambaAD
from mambaad.models.official import official_state_dict
from tiny_run import SMALL_CLI

SMALL = SMALL_CLI
REPORTS = ("metrics.md", "metrics.csv", "metrics.json", "report.html")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(official .pth, native .safetensors) of one randomly initialised official-configuration model."""
    torch.manual_seed(3)
    model = MambaAD().eval()
    folder = tmp_path_factory.mktemp("official")
    pth = folder / "mambaad_mvtec.pth"
    torch.save({"net": official_state_dict(model)}, pth)  # the released files wrap the state dict
    meta = weights_meta(config_to_dict(official_run_config()), model, [], 0, 0)
    native = save_checkpoint(folder / "native.safetensors", model.state_dict(), meta)
    return pth, native


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert all(n in err for n in needles), err


def test_official_pth_equals_native_checkpoint(
    weights: tuple[Path, Path], synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pth, native = weights
    results = {}
    for name, ckpt in (("official", pth), ("native", native)):
        out = tmp_path / name
        assert main(["test", str(ckpt), "--data", str(synth_root), "--out", str(out), *SMALL]) == 0
        assert "| **mean** |" in capsys.readouterr().out
        assert all((out / f).is_file() for f in REPORTS)
        results[name] = json.loads((out / "metrics.json").read_text())
    assert set(results["official"]) >= {"disc", "woven", "mean"}
    assert results["official"] == results["native"]


def test_official_pth_default_geometry_and_fixed_model(
    weights: tuple[Path, Path], synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = official_run_config()
    assert (cfg.data.image_size, cfg.data.crop_size) == (256, 256) and cfg.model.depths == [3, 4, 6, 3]
    pth, _ = weights
    argv = ["test", str(pth), "--data", str(synth_root), "--out", str(tmp_path / "t"), *SMALL]
    assert main([*argv, "--model.directions", "4"]) == 1
    _one_line_error(capsys, "model.directions", "official .pth")
    assert main(["test", str(pth), "--out", str(tmp_path / "u"), "--no-progress"]) == 1
    _one_line_error(capsys, "--data")  # a .pth names no data set


def test_bad_official_pth_is_one_line_error(
    weights: tuple[Path, Path], synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pth, _ = weights
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(pth.read_bytes()[: pth.stat().st_size // 2])
    foreign = tmp_path / "foreign.pth"
    torch.save({"net": {"backbone.weight": torch.zeros(3)}}, foreign)
    cases = [
        (truncated, "not a readable weights file"),
        (foreign, "not an official MambaAD"),
        (tmp_path / "absent.pth", "not found"),
    ]
    for i, (path, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert main(["test", str(path), "--data", str(synth_root), "--out", str(out), *SMALL]) == 1
        _one_line_error(capsys, path.name, message)
