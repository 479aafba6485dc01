"""``mambaad predict``: decisions from the stored threshold, overlays/masks, JSON lines, bad files skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mambaad.cli import main
from mambaad.engine.checkpoint import load_checkpoint, save_checkpoint


def test_predict_folder_with_bad_files(
    trained_run: Path, synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    pattern = str(synth_root / "woven" / "test" / "*" / "*.png")
    args = [str(trained_run), pattern, str(bad), str(tmp_path / "missing.png"), "--device", "cpu"]
    out = [
        "--overlay",
        str(tmp_path / "ov"),
        "--mask",
        str(tmp_path / "mk"),
        "--jsonl",
        str(tmp_path / "r.jsonl"),
    ]
    assert main(["predict", *args, *out, "--batch-size", "3"]) == 0
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.startswith("skipped:")]
    assert len(err) == 2 and "broken.png" in err[1] and "missing.png" in err[0]
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(records) == 4  # 2 good + 2 defective test images of woven
    assert "ANOMALOUS" in captured.out or "normal" in captured.out
    for r in records:
        assert r["anomalous"] == (r["score"] > r["threshold"])
        assert (r["normalized_score"] > 1) == r["anomalous"]
        overlay = np.asarray(Image.open(r["overlay"]))
        mask = np.asarray(Image.open(r["mask"]))
        assert overlay.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert set(np.unique(mask)) <= {0, 255}
    assert len({r["overlay"] for r in records}) == 4  # same stems in different folders do not collide


def test_threshold_option_overrides(
    trained_run: Path, synth_root: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = str(synth_root / "disc" / "test")
    assert main(["predict", str(trained_run), folder, "--json", "--threshold", "-1"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records and all(r["anomalous"] and r["threshold"] == -1.0 for r in records)


def test_uncalibrated_checkpoint_reports_scores_only(
    trained_run: Path, synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tensors, meta = load_checkpoint(trained_run / "checkpoints" / "last.safetensors")
    meta["threshold"] = None
    ckpt = save_checkpoint(tmp_path / "plain.safetensors", tensors, meta)
    image = next((synth_root / "disc" / "test" / "good").glob("*.png"))
    assert main(["predict", str(ckpt), str(image), "--json", "--mask", str(tmp_path / "m")]) == 0
    captured = capsys.readouterr()
    (record,) = [json.loads(line) for line in captured.out.splitlines()]
    assert record["anomalous"] is None and record["threshold"] is None and "mask" not in record
    assert "no calibrated threshold" in captured.err


def test_nothing_readable_exits_1(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(trained_run), str(tmp_path / "*.png")]) == 1
    err = capsys.readouterr().err
    assert "pattern matches no file" in err and "error: no image could be scored" in err
    assert main(["predict", str(tmp_path / "nope"), str(tmp_path)]) == 1
    assert capsys.readouterr().err.count("\n") == 1  # one line: the checkpoint is not found
    assert main(["predict", str(trained_run)]) == 2  # usage: no INPUT


def test_overlay_folder_that_is_a_file_is_one_line(
    trained_run: Path, synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--overlay / --mask naming an existing file: one ``error:`` line naming it (it was a traceback)."""
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"a file, not a folder")
    image = str(next((synth_root / "disc" / "test" / "good").glob("*.png")))
    for option in ("--overlay", "--mask"):
        assert main(["predict", str(trained_run), image, option, str(taken)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and f"folder {taken}: cannot create" in err[0]
    assert taken.read_bytes() == b"a file, not a folder"  # left as it was


def test_tf32_and_bf16_options(trained_run: Path, synth_root: Path, capsys: pytest.CaptureFixture) -> None:
    """``--tf32`` / ``--bf16`` predict with TF32 matrix products allowed / under bf16 autocast (CUDA only: on
    the CPU the same records); an .onnx model refuses either with a one-line error."""
    from mambaad.deploy import predict as predict_mod

    folder = str(synth_root / "disc" / "test" / "good")
    runs = {}
    for flag in ((), ("--tf32",), ("--bf16",)):
        assert main(["predict", str(trained_run), folder, "--json", "--device", "cpu", *flag]) == 0
        runs[flag] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert runs[()] and runs[("--tf32",)] == runs[()] == runs[("--bf16",)]
    for option in ("tf32", "bf16"):
        with pytest.raises(predict_mod.ConfigError, match=rf"--{option}: .*onnxruntime"):
            predict_mod.load_predictor("model.onnx", "cpu", **{option: True})
