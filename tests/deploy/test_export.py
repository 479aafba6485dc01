"""ONNX export: onnxruntime equals eager PyTorch (maps within 1e-4) at two batch sizes, and predict runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mambaad.cli import main
from mambaad.deploy.export import read_onnx_metadata
from mambaad.deploy.predict import _read, deployed_from_checkpoint


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(trained_run), "--dynamic-batch", "--out", str(out)]) == 0
    return out


def _defect_images(root: Path, n: int) -> np.ndarray:
    """(n, 64, 64, 3) uint8 synthetic-defect test images, as predict reads them."""
    paths = sorted(p for p in root.glob("*/test/*/*.png") if p.parent.name != "good")[:n]
    assert len(paths) == n
    return np.stack([_read(p, 64, 64) for p in paths])


def _compare(session: ort.InferenceSession, deployed: torch.nn.Module, batch: np.ndarray) -> None:
    x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # (B, 3, S, S) uint8
    maps, scores, decisions = session.run(None, {"image": x})
    with torch.no_grad():
        ref_maps, ref_scores, ref_dec = deployed(torch.from_numpy(x))
    assert maps.shape == (len(batch), 64, 64)
    np.testing.assert_allclose(maps, ref_maps.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=0, atol=1e-4)
    margin = np.abs(ref_scores.numpy() - float(deployed.threshold)) > 1e-4
    assert (decisions == ref_dec.numpy())[margin].all()


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch(exported: Path, trained_run: Path, synth_root: Path, batch: int) -> None:
    deployed, info = deployed_from_checkpoint(trained_run)
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(batch)
    _compare(session, deployed, rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8))
    _compare(session, deployed, _defect_images(synth_root, batch))
    assert float(deployed.threshold) == info["threshold"]["image"]


def test_metadata_carries_calibration(exported: Path, trained_run: Path) -> None:
    meta = read_onnx_metadata(exported)
    _, info = deployed_from_checkpoint(trained_run)
    assert meta["threshold"] == info["threshold"] and meta["input_size"] == 64
    assert meta["dynamic_batch"] is True and meta["input_dtype"] == "uint8"


def test_predict_onnx_equals_predict_checkpoint(
    exported: Path, trained_run: Path, synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = str(synth_root / "disc" / "test")
    assert main(["predict", str(trained_run), folder, "--json", "--device", "cpu"]) == 0
    eager = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["predict", str(exported), folder, "--json", "--batch-size", "3"]) == 0
    onnx = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in onnx] == [r["path"] for r in eager] and len(eager) == 4
    for a, b in zip(eager, onnx):
        assert b["score"] == pytest.approx(a["score"], abs=1e-4)
        assert b["threshold"] == pytest.approx(a["threshold"])


def test_export_never_overwrites(exported: Path, trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    before = exported.stat().st_mtime_ns
    assert main(["export", str(trained_run), "--out", str(exported)]) == 1
    assert "file exists" in capsys.readouterr().err and exported.stat().st_mtime_ns == before
    assert main(["export", str(exported)]) == 1
    assert "already an ONNX model" in capsys.readouterr().err


def test_forced_export_keeps_the_old_file_until_the_new_one_is_whole(
    exported: Path,
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--force``: a failed export leaves the earlier file as it was (the new one is written beside it,
    then moved over it); a folder as ``--out`` is one error line, with or without ``--force``."""
    old = tmp_path / "model.onnx"
    old.write_bytes(exported.read_bytes())

    def broken_export(*args: object, **kwargs: object) -> None:
        Path(str(args[2])).write_bytes(b"half a graph")
        raise MemoryError("out of memory while tracing")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(MemoryError):
        main(["export", str(trained_run), "--out", str(old), "--force"])
    assert old.read_bytes() == exported.read_bytes() and list(tmp_path.iterdir()) == [old]
    for force in ([], ["--force"]):
        assert main(["export", str(trained_run), "--out", str(tmp_path), *force]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--out {tmp_path}: is a folder" in err[0]
