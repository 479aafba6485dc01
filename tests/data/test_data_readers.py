"""Readers and `mambaad data --json` on tiny trees of every layout."""

from __future__ import annotations

import json

import pytest

from mambaad import cli
from mambaad.data import (
    by_class,
    class_has_masks,
    combine,
    detect_format,
    read_dataset,
    read_datasets,
    read_medical,
    read_mvtec,
)

LAYOUTS = [
    "mvtec",
    "folder",
    "visa",
    "realiad_flat",
    "realiad_official",
    "realiad_nested",
    "mvtec3d",
    "medical",
    "coco",
]
KEYS = ("train_good", "test_good", "test_anomalous", "masks")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert cli.main(["data", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", LAYOUTS)
def test_data_json_counts_detected(name: str, data_trees, capsys) -> None:
    tree = data_trees[name]
    out = run_json(capsys, str(tree.root))
    assert out["format"] == tree.fmt
    got = {cls: {k: v[k] for k in KEYS} for cls, v in out["classes"].items()}
    assert got == tree.counts


@pytest.mark.parametrize("name", LAYOUTS)
def test_data_json_counts_explicit_format_and_check(name: str, data_trees, capsys) -> None:
    tree = data_trees[name]
    fmt = {"meta": "medical"}.get(tree.fmt, tree.fmt)
    out = run_json(capsys, str(tree.root), "--format", fmt, "--check")
    assert {cls: {k: v[k] for k in KEYS} for cls, v in out["classes"].items()} == tree.counts


def test_mvtec_samples_fields(mvtec_tree) -> None:
    samples = read_mvtec(mvtec_tree.root)
    groups = by_class(samples)
    assert list(groups) == ["bottle", "grid"]
    for s in samples:
        assert s.image_path.is_absolute()
        assert (s.label == 1) == (s.defect != "good")
        assert (s.mask_path is not None) == (s.label == 1)
        assert s.split == ("train" if s.image_path.parent.parent.name == "train" else "test")
        if s.mask_path is not None:
            assert s.mask_path.name == f"{s.image_path.stem}_mask.png"
            assert s.mask_path.parent.name == s.defect


def test_folder_label_only_class(data_trees, capsys) -> None:
    tree = data_trees["folder"]
    samples = read_dataset(tree.root)
    assert class_has_masks(samples) == {"a": True, "b": False}
    out = run_json(capsys, str(tree.root))
    assert out["classes"]["b"]["has_masks"] is False
    assert any("pixel metrics not available" in p for p in out["classes"]["b"]["problems"])
    assert out["classes"]["a"]["problems"] == []


def test_folder_tree_read_as_mvtec_requires_masks(data_trees) -> None:
    from mambaad.errors import DataError

    with pytest.raises(DataError, match=r"stain.*defect image has no mask"):
        read_dataset(data_trees["folder"].root, "mvtec")


@pytest.mark.parametrize("name", ["realiad_flat", "realiad_official", "realiad_nested"])
def test_realiad_label_from_anomaly_class_not_folder(name: str, data_trees) -> None:
    samples = read_dataset(data_trees[name].root, "realiad")
    ng_ok = [s for s in samples if "NG" in s.image_path.parts and s.label == 0]
    assert len(ng_ok) == 1 and ng_ok[0].mask_path is None and ng_ok[0].defect == "good"
    assert sorted(s.defect for s in samples if s.label == 1) == ["AK", "BX"]


def test_mvtec3d_validation_in_train(data_trees) -> None:
    samples = read_dataset(data_trees["mvtec3d"].root)
    train = [s for s in samples if s.split == "train"]
    assert len(train) == 3 and any("validation" in s.image_path.parts for s in train)
    assert all(s.image_path.parent.name == "rgb" for s in samples)


def test_meta_paths_normalized_and_medical_fallback(data_trees, tmp_path) -> None:
    samples = read_dataset(data_trees["medical"].root)
    assert all("//" not in str(s.image_path) for s in samples)
    assert all(s.image_path.is_file() for s in samples)
    # without meta.json, medical falls back to its MVTec-style tree and finds the same images
    import shutil

    copy = tmp_path / "medical"
    shutil.copytree(data_trees["medical"].root, copy)
    (copy / "meta.json").unlink()
    raw = read_medical(copy)
    assert sorted(s.image_path.relative_to(copy) for s in raw) == sorted(
        s.image_path.relative_to(data_trees["medical"].root) for s in samples
    )


def test_several_datasets_in_one_set(data_trees) -> None:
    mv, fo = data_trees["mvtec"], data_trees["folder"]
    both = read_datasets([mv.root, fo.root])
    assert set(by_class(both)) == {"bottle", "grid", "a", "b"}
    # the same data set twice: colliding class names get a data-set prefix instead of merging
    twice = combine([("x", read_mvtec(mv.root)), ("y", read_mvtec(mv.root))])
    assert set(by_class(twice)) == {"x/bottle", "x/grid", "y/bottle", "y/grid"}


def test_detect_every_layout(data_trees) -> None:
    for tree in data_trees.values():
        assert detect_format(tree.root) == tree.fmt


def test_data_table_output(mvtec_tree, capsys) -> None:
    assert cli.main(["data", str(mvtec_tree.root)]) == 0
    out = capsys.readouterr().out
    assert "format: mvtec" in out
    bottle = next(line for line in out.splitlines() if line.startswith("bottle"))
    assert bottle.split()[1:] == ["3", "2", "3", "3"]


def test_meta_option(data_trees, capsys) -> None:
    coco = data_trees["coco"].root
    out = run_json(capsys, str(coco), "--format", "meta", "--meta", "meta_20_0.json")
    assert out["classes"]["coco"]["test_anomalous"] == 2
    assert cli.main(["data", str(coco), "--format", "coco", "--meta", "meta_20_0.json"]) == 1
    assert "--meta" in capsys.readouterr().err
