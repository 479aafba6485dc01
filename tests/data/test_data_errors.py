"""Bad input: each case is a one-line DataError naming the path; the CLI prints one line and exits 1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mambaad import cli
from mambaad.data import AnomalyDataset, read_dataset
from mambaad.errors import DataError


@pytest.fixture
def mvtec_copy(mvtec_tree, tmp_path: Path) -> Path:
    root = tmp_path / "mvtec"
    shutil.copytree(mvtec_tree.root, root)
    return root


def assert_cli_one_line(capsys, argv: list[str], needle: str) -> str:
    """Run the CLI, expect exit 1 and exactly one `error:` line on stderr that mentions `needle`."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in err
    return lines[0]


def test_missing_root(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="data root not found"):
        read_dataset(missing)
    assert_cli_one_line(capsys, ["data", str(missing)], str(missing))


def test_unknown_layout_lists_expected(tmp_path: Path, capsys) -> None:
    (tmp_path / "random" / "stuff").mkdir(parents=True)
    line = assert_cli_one_line(capsys, ["data", str(tmp_path / "random")], str(tmp_path / "random"))
    for name in ("mvtec", "visa", "realiad", "mvtec3d", "meta.json", "meta_20_"):
        assert name in line


def test_defect_image_without_mask(mvtec_copy: Path, capsys) -> None:
    (mvtec_copy / "bottle" / "ground_truth" / "broken" / "001_mask.png").unlink()
    img = mvtec_copy / "bottle" / "test" / "broken" / "001.png"
    with pytest.raises(DataError, match="defect image has no mask"):
        read_dataset(mvtec_copy, "mvtec")
    assert_cli_one_line(capsys, ["data", str(mvtec_copy), "--format", "mvtec"], str(img))


def test_truncated_image_on_load_and_check(mvtec_copy: Path, capsys) -> None:
    bad = mvtec_copy / "bottle" / "train" / "good" / "001.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    samples = read_dataset(mvtec_copy)  # listing does not decode
    ds = AnomalyDataset(samples, 32, 32)
    idx = next(i for i, s in enumerate(samples) if s.image_path == bad)
    with pytest.raises(DataError, match="unreadable or truncated") as info:
        ds[idx]
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert cli.main(["data", str(mvtec_copy)]) == 0  # counting only: fine
    capsys.readouterr()
    assert_cli_one_line(capsys, ["data", str(mvtec_copy), "--check"], str(bad))


def test_not_an_image(mvtec_copy: Path, capsys) -> None:
    bad = mvtec_copy / "grid" / "test" / "good" / "000.png"
    bad.write_text("hello")
    assert_cli_one_line(capsys, ["data", str(mvtec_copy), "--check"], str(bad))


def test_mask_size_differs(mvtec_copy: Path, capsys) -> None:
    mask = mvtec_copy / "grid" / "ground_truth" / "bent" / "000_mask.png"
    Image.fromarray(np.full((5, 7), 255, np.uint8)).save(mask)
    samples = read_dataset(mvtec_copy)
    idx = next(i for i, s in enumerate(samples) if s.mask_path == mask)
    with pytest.raises(DataError, match=r"mask size 7x5 differs from its image size 32x24"):
        AnomalyDataset(samples, 32, 32)[idx]
    assert_cli_one_line(capsys, ["data", str(mvtec_copy), "--check"], str(mask))


def test_empty_class_folder(mvtec_copy: Path, capsys) -> None:
    (mvtec_copy / "empty").mkdir()
    assert_cli_one_line(capsys, ["data", str(mvtec_copy)], "empty class folder")
    shutil.rmtree(mvtec_copy / "empty")
    for p in (mvtec_copy / "grid" / "train" / "good").iterdir():
        p.unlink()
    assert_cli_one_line(capsys, ["data", str(mvtec_copy)], str(mvtec_copy / "grid" / "train" / "good"))


def test_listed_file_missing(data_trees, tmp_path: Path, capsys) -> None:
    root = tmp_path / "visa"
    shutil.copytree(data_trees["visa"].root, root)
    gone = root / "candle" / "Data" / "Masks" / "Anomaly" / "001.png"
    gone.unlink()
    assert_cli_one_line(capsys, ["data", str(root)], str(gone))


def test_debug_shows_traceback(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        cli.main(["--debug", "data", str(tmp_path / "nope")])
    with pytest.raises(DataError):
        cli.main(["data", str(tmp_path / "nope"), "--debug"])


def test_usage_errors_exit_2_and_help_on_every_verb(capsys) -> None:
    assert cli.main([]) == 2
    assert cli.main(["nosuchverb"]) == 2
    assert cli.main(["data", "x", "--format", "bogus"]) == 2
    for verb in cli.VERBS:
        assert cli.main([verb.name, "--help"]) == 0
        assert "usage: mambaad " + verb.name in capsys.readouterr().out


def test_python_dash_m(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mambaad", "data", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope'}: data root not found"
