"""Threshold calibration: the FPR guarantee, the F1 optimum, the hold-out split and the trainer hook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import TINY

from mambaad.data.sample import Sample
from mambaad.deploy.calibrate import (
    calibrate_threshold,
    f1_threshold,
    normalize_maps,
    normalize_scores,
    split_holdout,
)
from mambaad.engine.checkpoint import read_metadata
from mambaad.errors import ConfigError


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.1, 0.25])
@pytest.mark.parametrize("n", [1, 7, 100, 1000])
def test_threshold_keeps_false_positive_rate(fpr: float, n: int) -> None:
    scores = np.random.default_rng(n).normal(size=n)
    thr = calibrate_threshold(scores, fpr)
    assert (scores > thr).sum() <= fpr * n
    assert (scores >= thr).sum() >= 1  # the threshold is an observed normal score, not above them all
    assert (scores > np.nextafter(thr, -np.inf)).sum() > fpr * n or thr == scores.min()  # the smallest such


def test_threshold_with_ties_and_bad_input() -> None:
    assert calibrate_threshold([1.0, 1.0, 1.0, 2.0], 0.2) == 2.0
    assert calibrate_threshold([1.0, 1.0, 1.0, 2.0], 0.25) == 1.0  # one of four may exceed it
    with pytest.raises(ConfigError):
        calibrate_threshold([], 0.01)
    with pytest.raises(ConfigError):
        calibrate_threshold([1.0], 0.0)


def test_f1_threshold_separates_when_possible() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.25])
    labels = np.array([0, 0, 0, 1, 1, 1])
    t = f1_threshold(scores, labels)
    pred = scores > t
    tp = (pred & (labels == 1)).sum()
    f1 = 2 * tp / (2 * tp + (pred & (labels == 0)).sum() + ((~pred) & (labels == 1)).sum())
    # brute force over every cut
    best = 0.0
    for c in np.concatenate([[-1.0], np.sort(scores)]):
        p = scores > c
        tp_c = (p & (labels == 1)).sum()
        best = max(best, 2 * tp_c / (2 * tp_c + (p & (labels == 0)).sum() + ((~p) & (labels == 1)).sum()))
    assert f1 == pytest.approx(best)
    assert f1_threshold([0.1, 0.9], [0, 1]) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        f1_threshold([0.1, 0.2], [0, 0])


def _samples(n: int, cls: str) -> list[Sample]:
    return [Sample(Path(f"/d/{cls}/{i:03d}.png"), None, 0, cls, "good", "train") for i in range(n)]


def test_split_holdout_is_deterministic_per_class() -> None:
    samples = _samples(10, "a") + _samples(3, "b")
    train, held = split_holdout(samples, 0.2, seed=1)
    assert len(held) == 2 + 1 and len(train) == 10
    assert {s.image_path for s in train}.isdisjoint({s.image_path for s in held})
    again = split_holdout(list(reversed(samples)), 0.2, seed=1)[1]
    assert {s.image_path for s in again} == {s.image_path for s in held}  # order of reading irrelevant
    other = {frozenset(s.image_path for s in split_holdout(samples, 0.5, seed=k)[1]) for k in range(5)}
    assert len(other) > 1  # the seed chooses
    assert split_holdout(_samples(1, "c"), 0.5, 0)[1] == []  # a class keeps its only image
    assert split_holdout(samples, 0.0, 0) == (samples, [])


def test_normalisation_maps_median_to_zero_and_threshold_to_one() -> None:
    t = {
        "image": 3.0,
        "pixel": 5.0,
        "normal_score_stats": {"p50": 1.0},
        "normal_pixel_stats": {"p50": 1.0},
    }
    assert normalize_scores(np.array([1.0, 3.0]), t).tolist() == [0.0, 1.0]
    assert normalize_maps(np.array([1.0, 5.0]), t).tolist() == [0.0, 1.0]


def test_training_stores_threshold_from_holdout(trained_run: Path) -> None:
    for name in ("last", "best"):
        t = read_metadata(trained_run / "checkpoints" / f"{name}.safetensors")["threshold"]
        assert t["source"] == "holdout" and t["n_normals"] == 2  # 1 of 4 normals per class, 2 classes
        assert t["target_fpr"] == 0.01 and t["score"] == "max"
        s = t["normal_score_stats"]
        assert s["min"] <= s["p50"] <= s["max"] and t["image"] == s["max"]  # 2 normals, 1 %: the max
        assert t["pixel"] >= t["normal_pixel_stats"]["p99"] - 1e-9
    log = (trained_run / "train.log").read_text()
    assert "calibrated last" in log and "warning" not in log
    sidecar = (trained_run / "checkpoints" / "last.json").read_text()
    assert '"source": "holdout"' in sidecar


def test_no_holdout_calibrates_on_training_normals_with_warning(synth_root: Path, tmp_path: Path) -> None:
    from mambaad.config import load_config
    from mambaad.engine.trainer import train

    cfg = load_config(None, [f"data.root={synth_root}", f"out={tmp_path / 'run'}", *TINY])
    assert train(cfg, progress=False, echo=None) is not None
    t = read_metadata(tmp_path / "run" / "checkpoints" / "best.safetensors")["threshold"]
    assert t["source"] == "train" and t["n_normals"] == 8
    assert "warning: data.holdout_fraction is 0" in (tmp_path / "run" / "train.log").read_text()
