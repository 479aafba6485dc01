"""`mambaad ablate`: grid files, one run per point, resumable, one comparison table (Markdown + CSV)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from engine_helpers import tiny_overrides

from mambaad.cli import main
from mambaad.engine.ablate import load_grid, point_name
from mambaad.errors import ConfigError

GRIDS = Path(__file__).resolve().parents[2] / "configs" / "ablations"


def tiny_base(tmp_path: Path, data: Path) -> Path:
    """A run config of the tiny 64 px MambaAD (1 epoch) as YAML, for grid files to start from."""
    cfg: dict = {}
    for item in tiny_overrides(data, tmp_path / "unused", epochs=1):
        key, _, value = item.partition("=")
        if key == "out":
            continue
        section, _, leaf = key.partition(".")
        cfg.setdefault(section, {})[leaf] = yaml.safe_load(value)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def write_grid(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_two_point_grid_writes_one_table_and_skips_finished_points(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_base(tmp_path, synth_root)
    grid = write_grid(tmp_path / "g.yaml", "base: tiny.yaml\ngrid:\n  model.scan: [sweep, hilbert]\n")
    out = tmp_path / "ablation"
    assert main(["ablate", str(grid), "--out", str(out), "--no-progress"]) == 0
    md = (out / "ablation.md").read_text()
    rows = [line for line in md.splitlines()[2:] if line.startswith("|")]
    assert len(rows) == 2
    assert "I-AUROC" in md.splitlines()[0] and "mAD" in md.splitlines()[0]
    with open(out / "ablation.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["model.scan"] for r in table] == ["sweep", "hilbert"]
    assert all(r["status"] == "done" and 0.0 <= float(r["image_auroc"]) <= 1.0 for r in table)
    assert all(int(r["params"]) > 0 for r in table)
    for r in table:  # each point is an ordinary run folder of the engine
        run = out / r["point"]
        assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.safetensors").is_file()
        assert yaml.safe_load((run / "config.yaml").read_text())["model"]["scan"] == r["model.scan"]
    capsys.readouterr()

    # a rerun trains nothing: both points are finished and keep their numbers
    assert main(["ablate", str(grid), "--out", str(out), "--no-progress"]) == 0
    with open(out / "ablation.csv", newline="") as f:
        again = list(csv.DictReader(f))
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    assert [r["mad"] for r in again] == [r["mad"] for r in table]

    # a point killed after its last checkpoint but before its reports resumes from last_state
    (out / table[1]["point"] / "metrics.json").unlink()
    assert main(["ablate", str(grid), "--out", str(out), "--no-progress"]) == 0
    with open(out / "ablation.csv", newline="") as f:
        resumed = list(csv.DictReader(f))
    assert [r["status"] for r in resumed] == ["skipped", "done"]
    assert resumed[1]["mad"] == table[1]["mad"]


def test_bad_grid_keys_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_grid(tmp_path / "bad.yaml", "grid:\n  model.scna: [sweep, hilbert]\n")
    assert main(["ablate", str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.scna" in err and "did you mean 'model.scan'" in err
    cases = {
        "grid:\n  model.directions: [2, -4]\n": "model.directions",
        "grid:\n  model.scan: hilbert\n": "non-empty list",
        "grid:\n  out: [a, b]\n": "cannot vary",
        "points: []\n": "non-empty list",
        "base: nowhere.yaml\ngrid:\n  model.scan: [sweep]\n": "base config not found",
        "gird:\n  model.scan: [sweep]\n": "unknown grid entry 'gird'",
        "overrides:\n  train.epoch: 3\ngrid:\n  model.scan: [sweep]\n": "did you mean 'train.epochs'",
    }
    for i, (body, needle) in enumerate(cases.items()):
        with pytest.raises(ConfigError, match=needle):
            load_grid(write_grid(tmp_path / f"c{i}.yaml", body))
    clash = write_grid(tmp_path / "clash.yaml", "grid:\n  model.scan: [sweep]\n")
    assert main(["ablate", str(clash), "--out", str(tmp_path / "o2"), "--model.scan", "zorder"]) == 1
    assert "varied by the grid" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted(GRIDS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_grids_load(path: Path) -> None:
    grid = load_grid(path)
    assert len(grid.points) >= 3 and grid.keys
    assert len({p.name for p in grid.points}) == len(grid.points)


def test_grid_points_cross_grid_keys_with_explicit_points(tmp_path: Path) -> None:
    body = "grid:\n  model.scan: [sweep, zorder]\npoints:\n  - {model.directions: 2}\n  - {model.directions: 4}\n"
    grid = load_grid(write_grid(tmp_path / "x.yaml", body))
    assert [p.values for p in grid.points] == [
        {"model.scan": s, "model.directions": d} for s in ("sweep", "zorder") for d in (2, 4)
    ]
    assert grid.points[0].name == "00_scan-sweep_directions-2"
    assert point_name(3, {"model.depths": [3, 4, 6, 3]}) == "03_depths-3-4-6-3"
