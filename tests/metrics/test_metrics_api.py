"""Public API: evaluate / evaluate_per_class keys, per-class means, torch input, input validation."""

import math

import numpy as np
import pytest
import torch

from mambaad.errors import ConfigError, DataError
from mambaad.metrics import METRIC_KEYS, evaluate, evaluate_per_class


def make_set(seed: int, n: int = 8, size: int = 12):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(n // 2, n):
        y, x = rng.integers(0, size - 4, 2)
        masks[i, y : y + 4, x : x + 3] = True
    maps = (rng.random((n, size, size)) + 0.5 * masks).astype(np.float32)
    labels = masks.reshape(n, -1).any(1).astype(np.int64)
    scores = maps.reshape(n, -1).max(1)
    return labels, scores, masks, maps


def test_keys_and_range() -> None:
    out = evaluate(*make_set(0))
    assert tuple(out) == METRIC_KEYS
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert out["mad"] == pytest.approx(np.mean([out[k] for k in METRIC_KEYS[:-1]]))


def test_image_only_path() -> None:
    labels, scores, _, _ = make_set(1)
    out = evaluate(labels, scores, None, None)
    assert tuple(out) == ("image_auroc", "image_ap", "image_f1max", "mad")
    assert out["mad"] == pytest.approx(np.mean([out["image_auroc"], out["image_ap"], out["image_f1max"]]))


def test_mad_skips_undefined_metrics() -> None:
    labels, scores, masks, maps = make_set(2)
    out = evaluate(np.zeros_like(labels), scores, np.zeros_like(masks), maps)
    assert all(math.isnan(v) for v in out.values())
    out = evaluate(np.zeros_like(labels), scores, masks, maps)
    assert math.isnan(out["image_auroc"])
    pixel = [out[k] for k in ("pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro")]
    assert out["mad"] == pytest.approx(np.mean(pixel))


@pytest.mark.parametrize("mode", ["exact", "ader"])
def test_torch_input_equals_numpy(mode: str) -> None:
    labels, scores, masks, maps = make_set(3)
    ref = evaluate(labels, scores, masks, maps, mode=mode)
    got = evaluate(
        torch.from_numpy(labels),
        torch.from_numpy(scores),
        torch.from_numpy(masks).unsqueeze(1).to(torch.uint8),  # (N, 1, H, W) 0/1 as loaders give
        torch.from_numpy(maps).unsqueeze(1),
        mode=mode,
    )
    assert got == ref


def test_per_class_entries_and_mean() -> None:
    sets = [make_set(s) for s in (4, 5, 6)]
    labels, scores, masks, maps = (np.concatenate(parts) for parts in zip(*sets))
    classes = ["a"] * 8 + ["b"] * 8 + ["c"] * 8
    order = np.random.default_rng(0).permutation(24)  # classes need not be contiguous
    res = evaluate_per_class(
        [classes[i] for i in order], labels[order], scores[order], masks[order], maps[order], mode="exact"
    )
    assert list(res) == [*dict.fromkeys(classes[i] for i in order), "mean"]
    for name, parts in zip("abc", sets):
        assert res[name] == pytest.approx(evaluate(*parts))
    for key in METRIC_KEYS[:-1]:
        assert res["mean"][key] == pytest.approx(np.mean([res[c][key] for c in "abc"]))
    assert res["mean"]["mad"] == pytest.approx(np.mean([res["mean"][k] for k in METRIC_KEYS[:-1]]))


def test_per_class_mean_skips_nan_of_one_class() -> None:
    labels, scores, masks, maps = make_set(7)
    labels2, scores2, _, maps2 = make_set(8)
    res = evaluate_per_class(
        ["ok"] * 8 + ["no_defects"] * 8,
        np.concatenate([labels, np.zeros_like(labels2)]),
        np.concatenate([scores, scores2]),
        np.concatenate([masks, np.zeros_like(masks)]),
        np.concatenate([maps, maps2]),
    )
    assert math.isnan(res["no_defects"]["image_auroc"])
    assert res["mean"]["image_auroc"] == res["ok"]["image_auroc"]
    assert res["mean"]["pixel_aupro"] == res["ok"]["pixel_aupro"]


def test_per_class_image_only() -> None:
    labels, scores, _, _ = make_set(9)
    res = evaluate_per_class(["x"] * 4 + ["y"] * 4, labels, scores)
    assert tuple(res["mean"]) == ("image_auroc", "image_ap", "image_f1max", "mad")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "maps": a["maps"][:, :5]}, "maps: shape"),
        (lambda a: {**a, "labels": a["labels"] * 2}, "labels: must be 0"),
        (
            lambda a: {**a, "scores": np.where(np.arange(8) == 3, np.nan, a["scores"])},
            "scores: contains 1 NaN",
        ),
        (lambda a: {**a, "scores": a["scores"][:5]}, "scores: expected shape"),
        (lambda a: {**a, "masks": a["masks"].astype(np.uint8) * 255}, "masks: values must be 0/1"),
        (lambda a: {**a, "masks": None}, "masks: is None"),
        (lambda a: {**a, "maps": np.where(a["masks"], np.inf, a["maps"])}, "maps: contains NaN"),
        (lambda a: {**a, "maps": np.where(a["masks"], a["maps"], np.nan)}, "maps: contains NaN"),
    ],
)
def test_bad_inputs_raise_one_line_data_error(change, message: str) -> None:
    labels, scores, masks, maps = make_set(10)
    args = change({"labels": labels, "scores": scores, "masks": masks, "maps": maps})
    with pytest.raises(DataError, match=message) as info:
        evaluate(**args)
    assert "\n" not in str(info.value)


def test_bad_mode_and_bad_classes() -> None:
    labels, scores, masks, maps = make_set(11)
    with pytest.raises(ConfigError, match="mode='fast'"):
        evaluate(labels, scores, masks, maps, mode="fast")
    with pytest.raises(DataError, match="classes"):
        evaluate_per_class(["a"] * 3, labels, scores, masks, maps)
