"""``data.val_root``: a labelled validation set gives the F1-optimal threshold; ``predict --threshold-kind f1``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import TINY

from mambaad.cli import main
from mambaad.config import load_config
from mambaad.data.formats import read_dataset
from mambaad.deploy.calibrate import collect_scores, f1_threshold, select_threshold
from mambaad.engine.checkpoint import load_model, read_metadata
from mambaad.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def val_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second small synthetic set (other seed): 2 classes x (2 train normals + 2 good + 2 defective test)."""
    from mambaad.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(
        tmp_path_factory.mktemp("val") / "set", classes=2, seed=1, size=64, train=2, test=4
    )


@pytest.fixture(scope="module")
def val_run(synth_root: Path, val_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mambaad.engine.trainer import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("valrun") / "run"
    overrides = [f"data.root={synth_root}", f"out={out}", "data.holdout_fraction=0.25", *TINY]
    cfg = load_config(None, [*overrides, f"data.val_root={val_root}"])
    assert train(cfg, progress=False, echo=None) is not None
    return out


def test_config_key_from_yaml_and_override(tmp_path: Path) -> None:
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("data:\n  val_root: /some/val\n  val_format: mvtec\n")
    cfg = load_config(yaml_file)
    assert cfg.data.val_root == "/some/val" and cfg.data.val_format == "mvtec"
    assert load_config(yaml_file, ["data.val_root=/other"]).data.val_root == "/other"
    assert load_config(None).data.val_root is None
    with pytest.raises(ConfigError, match=r"data\.val_format"):
        load_config(None, ["data.val_format=folder"])  # a layout without a folder


def test_missing_val_folder_is_one_line_error_before_training(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mambaad.engine.trainer import train

    out = tmp_path / "run"
    cfg = load_config(
        None, [f"data.root={synth_root}", f"out={out}", f"data.val_root={tmp_path / 'nope'}", *TINY]
    )
    with pytest.raises(DataError, match=r"data\.val_root .*nope: folder not found"):
        train(cfg, progress=False, echo=None)
    assert not out.exists()
    argv = ["train", "--data", str(synth_root), "--out", str(out), *[f"--{o}" for o in TINY]]
    assert main([*argv, "--data.val_root", str(tmp_path / "nope"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: data.val_root ")


def test_val_set_needs_both_labels(synth_root: Path, tmp_path: Path) -> None:
    from mambaad.engine.data import load_val_samples

    only_normal = tmp_path / "normals" / "disc" / "train" / "good"
    only_normal.mkdir(parents=True)
    for p in sorted((synth_root / "disc" / "train" / "good").iterdir())[:2]:
        (only_normal / p.name).write_bytes(p.read_bytes())
    cfg = load_config(None, [f"data.val_root={tmp_path / 'normals'}"]).data
    with pytest.raises(DataError, match="needs normal and anomalous images"):
        load_val_samples(cfg)


def test_f1_threshold_stored_from_val_root(val_run: Path, val_root: Path) -> None:
    """The stored F1 threshold is the F1 optimum of the model's scores on every val_root image."""
    ckpt = val_run / "checkpoints" / "last.safetensors"
    t = read_metadata(ckpt)["threshold"]
    samples = read_dataset(val_root)
    assert t["n_labelled"] == len(samples) == 12 and t["source"] == "holdout"
    model, _ = load_model(ckpt)
    cfg = load_config(None, [f"data.val_root={val_root}", *TINY])
    scores, _, _ = collect_scores(model, samples, cfg.data, cfg.eval, torch.device("cpu"))
    assert t["f1_threshold"] == pytest.approx(f1_threshold(scores, [s.label for s in samples]), abs=1e-9)
    assert (
        read_metadata(val_run / "checkpoints" / "best.safetensors")["threshold"]["f1_threshold"] is not None
    )
    assert "F1 threshold" in (val_run / "train.log").read_text()


def test_predict_threshold_kind(val_run: Path, synth_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = read_metadata(val_run / "checkpoints" / "best.safetensors")["threshold"]
    folder = str(synth_root / "woven" / "test")
    records = {}
    for kind in ("fpr", "f1"):
        assert (
            main(["predict", str(val_run), folder, "--json", "--threshold-kind", kind, "--device", "cpu"])
            == 0
        )
        records[kind] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(r["threshold"] == pytest.approx(t["image"]) for r in records["fpr"])
    assert all(r["threshold"] == pytest.approx(t["f1_threshold"]) for r in records["f1"])
    for r in records["f1"]:
        assert r["anomalous"] == (r["score"] > t["f1_threshold"])
    scores = np.array([r["score"] for r in records["fpr"]])
    assert scores.tolist() == [r["score"] for r in records["f1"]]  # the kind changes only the decision
    assert main(["predict", str(val_run), folder, "--device", "cpu"]) == 0
    assert f"threshold {t['image']:.5f}" in capsys.readouterr().out  # fpr is the default


def test_threshold_kind_errors(
    val_run: Path, trained_run: Path, synth_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(next((synth_root / "disc" / "test" / "good").glob("*.png")))
    assert main(["predict", str(trained_run), image, "--threshold-kind", "f1"]) == 1  # no val_root there
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no F1 threshold" in err and "data.val_root" in err
    assert main(["predict", str(val_run), image, "--threshold-kind", "f1", "--threshold", "0.1"]) == 1
    assert "give one of them" in capsys.readouterr().err
    assert main(["predict", str(val_run), image, "--threshold-kind", "best"]) == 2  # argparse choices
    with pytest.raises(ConfigError):
        select_threshold({"image": 1.0}, "f1")
    assert select_threshold(None, "fpr") is None
    assert select_threshold({"image": 1.0, "f1_threshold": 0.5}, "f1")["image"] == 0.5
