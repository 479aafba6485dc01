"""Ablation grids: one YAML file names a run config and the settings to vary; every point is a full run.

A grid file (``configs/ablations/*.yaml``)::

    base: ../mvtec.yaml          # run config the points start from (relative to this file; optional)
    overrides:                   # dotted keys applied to every point (optional)
      train.epochs: 100
    grid:                        # dotted key -> list of values; the points are their cartesian product
      model.scan: [sweep, scan, zorder, zigzag, hilbert]
    points:                      # and/or explicit points (each a mapping of dotted keys), crossed with grid
      - {model.directions: 8, model.distinct_directions: true}
    out: runs/ablate_scan        # default output folder (optional)

Every point trains and is evaluated by the ordinary engine (:func:`mambaad.engine.trainer.train`) in its own
run folder ``OUT/<NN>_<key>-<value>...``. Re-running the same grid skips finished points (their
``metrics.json`` exists) and resumes interrupted ones from their ``last_state`` checkpoint, so a grid survives
being killed. One comparison table, ``OUT/ablation.md`` and ``OUT/ablation.csv``, has a row per point: the
varied settings, the paper's seven metrics and mAD (class means), trained parameters and training time.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mambaad.config import RunConfig, apply_overrides, load_config
from mambaad.errors import ConfigError, MambaADError
from mambaad.report.tables import METRIC_COLUMNS, format_percent

__all__ = [
    "Grid",
    "GridPoint",
    "PointResult",
    "format_ablation_csv",
    "format_ablation_markdown",
    "load_grid",
    "run_grid",
]

GRID_KEYS = ("base", "overrides", "grid", "points", "out")
FORBIDDEN = ("out", "data.root")  # the grid owns the run folders; the data is one for all points
POINT_FILE = "ablation_point.json"
LEFTOVERS = {"config.yaml", "train.log", "tensorboard"}  # what a run that died before its first epoch leaves


@dataclass
class GridPoint:
    """One setting of the varied keys."""

    name: str  # run folder name
    values: dict[str, Any]  # dotted key -> value


@dataclass
class Grid:
    """A parsed grid file."""

    path: Path
    base: Path | None
    overrides: list[str]
    keys: list[str]  # every varied dotted key, in first-seen order
    points: list[GridPoint]
    out: str | None = None


@dataclass
class PointResult:
    """What one point produced (``status``: done, skipped (finished earlier) or failed)."""

    point: GridPoint
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: int | None = None
    seconds: float | None = None
    error: str = ""


def as_text(value: Any) -> str:
    """A YAML value as the text of a dotted override (``[3,4,6,3]``, ``null``, ``true``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(as_text(v) for v in value) + "]"
    return str(value)


def _slug(value: Any) -> str:
    text = as_text(value).strip("[]").replace(",", "-")
    return "".join(c for c in text if c.isalnum() or c in "._-") or "none"


def point_name(index: int, values: Mapping[str, Any]) -> str:
    """``03_directions-8_distinct_directions-true``: the index keeps names unique and ordered."""
    parts = [f"{key.rsplit('.', 1)[-1]}-{_slug(v)}" for key, v in values.items()]
    return "_".join([f"{index:02d}", *parts]) if parts else f"{index:02d}_base"


def _mapping(value: Any, what: str, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: '{what}' must be a mapping of dotted keys to values, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _check_key(key: str, value: Any, path: Path, where: str) -> None:
    """One-line error for an unknown or ill-typed key (with the config's did-you-mean suggestion)."""
    if key == "out" or (key in FORBIDDEN and where != "overrides"):
        raise ConfigError(f"{path}: {where} key '{key}' cannot vary (the grid owns it)")
    try:
        apply_overrides(RunConfig(), [f"{key}={as_text(value)}"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {where}: {exc}") from None


def load_grid(path: str | Path) -> Grid:
    """Parse and check a grid file (every key and value, before anything runs)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"grid {path} is not valid YAML: {first}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"grid {path} must hold a mapping with 'grid' and/or 'points'")
    unknown = [k for k in data if k not in GRID_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown grid entry '{unknown[0]}' (valid: {', '.join(GRID_KEYS)})")
    base = data.get("base")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a config file name, got {base!r}")
    base_path = (path.parent / base) if base else None
    if base_path is not None and not base_path.is_file():
        raise ConfigError(f"{path}: base config not found: {base_path}")
    overrides = _mapping(data.get("overrides"), "overrides", path)
    for key, value in overrides.items():
        _check_key(key, value, path, "overrides")
    grid = _mapping(data.get("grid"), "grid", path)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid key '{key}' needs a non-empty list of values, got {values!r}")
        for v in values:
            _check_key(key, v, path, "grid")
    raw_points = data.get("points")
    if raw_points is not None and (not isinstance(raw_points, list) or not raw_points):
        raise ConfigError(f"{path}: 'points' must be a non-empty list of mappings, got {raw_points!r}")
    extra = [_mapping(p, "points", path) for p in raw_points or [{}]]
    for p in extra:
        for key, v in p.items():
            _check_key(key, v, path, "points")
    if not grid and raw_points is None:
        raise ConfigError(f"{path}: nothing to vary; add 'grid:' (key -> list of values) or 'points:'")
    combos = [dict(zip(grid, c)) for c in itertools.product(*grid.values())] if grid else [{}]
    values = [{**c, **p} for c in combos for p in extra]
    keys = list(dict.fromkeys(k for v in values for k in v))
    points = [GridPoint(point_name(i, v), v) for i, v in enumerate(values)]
    out = data.get("out")
    return Grid(path, base_path, [f"{k}={as_text(v)}" for k, v in overrides.items()], keys, points, out)


def point_config(grid: Grid, point: GridPoint, out_dir: Path, overrides: Sequence[str] = ()) -> RunConfig:
    """base config -> grid overrides -> command-line overrides -> the point's values; ``out`` = its folder."""
    clash = [o.partition("=")[0].strip().removeprefix("--") for o in overrides]
    clash = [k for k in clash if k in grid.keys]
    if clash:
        raise ConfigError(f"{clash[0]} is varied by the grid {grid.path.name}; drop it from the command line")
    point_overrides = [f"{k}={as_text(v)}" for k, v in point.values.items()]
    cfg = load_config(grid.base, [*grid.overrides, *overrides, *point_overrides])
    cfg.out = str(out_dir / point.name)
    return cfg


def trained_parameters(checkpoint: Path) -> int | None:
    """Parameters outside the frozen ``encoder.*`` in a weights file (BatchNorm statistics not counted)."""
    from mambaad.engine.checkpoint import load_checkpoint

    try:
        tensors, _ = load_checkpoint(checkpoint)
    except (MambaADError, OSError):
        return None
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return sum(t.numel() for k, t in tensors.items() if not k.startswith("encoder.") and not k.endswith(skip))


def _read_point(run_dir: Path, point: GridPoint, status: str) -> PointResult:
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("mean", {})
    info: dict[str, Any] = {}
    if (run_dir / POINT_FILE).is_file():
        info = json.loads((run_dir / POINT_FILE).read_text(encoding="utf-8"))
    metrics = {k: (math.nan if v is None else float(v)) for k, v in metrics.items()}
    return PointResult(point, status, metrics, info.get("params"), info.get("seconds"))


def _clear_leftovers(run_dir: Path) -> None:
    """Remove what a run that died before its first checkpoint left; refuse to touch anything else."""
    names = {p.name for p in run_dir.iterdir()}
    if not names <= LEFTOVERS:
        raise ConfigError(
            f"{run_dir}: holds files of another run ({', '.join(sorted(names - LEFTOVERS))}); "
            "choose another --out"
        )
    shutil.rmtree(run_dir)


def _check_same_grid(grid: Grid, out_dir: Path) -> None:
    """A grid folder belongs to one grid: refuse to mix points of a changed grid into it."""
    record = out_dir / "grid.json"
    now = {p.name: p.values for p in grid.points}
    if record.is_file():
        before = json.loads(record.read_text(encoding="utf-8"))
        changed = [n for n, v in before.items() if n in now and now[n] != v]
        if changed:
            raise ConfigError(f"--out {out_dir}: point {changed[0]} had other settings; use another --out")
        now = {**before, **now}
    out_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(now, indent=1) + "\n", encoding="utf-8")


def run_grid(
    grid: Grid,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    progress: bool = False,
    echo: Callable[[str], None] | None = print,
) -> tuple[list[PointResult], dict[str, Path]]:
    """Train and evaluate every point (skipping finished ones), then write ``ablation.md`` / ``ablation.csv``.

    A point that fails is reported in its row (status ``failed``) and the others still run.

    Returns:
        (one result per point, {"md": path, "csv": path}).
    """
    from mambaad.engine.checkpoint import checkpoint_dir
    from mambaad.engine.trainer import STATE_FILE, train

    say = echo or (lambda _msg: None)
    out_dir = Path(out_dir)
    configs = [point_config(grid, p, out_dir, overrides) for p in grid.points]  # every error before any run
    _check_same_grid(grid, out_dir)
    results: list[PointResult] = []
    for i, (point, cfg) in enumerate(zip(grid.points, configs), start=1):
        run_dir = Path(cfg.out)
        head = f"[{i}/{len(grid.points)}] {point.name}"
        if (run_dir / "metrics.json").is_file():
            say(f"{head}: finished earlier, skipped")
            results.append(_read_point(run_dir, point, "skipped"))
            continue
        resume = (checkpoint_dir(run_dir) / STATE_FILE).is_file()
        if run_dir.is_dir() and not resume:
            _clear_leftovers(run_dir)
        say(
            f"{head}: {'resuming' if resume else 'training'} ({' '.join(f'{k}={as_text(v)}' for k, v in point.values.items())})"
        )
        t0 = time.perf_counter()
        try:
            train(cfg, resume=resume, progress=progress, echo=None)
        except (MambaADError, RuntimeError, ValueError) as exc:  # one broken point must not stop the grid
            message = " ".join(str(exc).split())
            say(f"{head}: failed: {message}")
            results.append(PointResult(point, "failed", error=message))
            continue
        seconds = time.perf_counter() - t0
        params = trained_parameters(checkpoint_dir(run_dir) / "last.safetensors")
        (run_dir / POINT_FILE).write_text(
            json.dumps({"values": point.values, "params": params, "seconds": seconds}) + "\n",
            encoding="utf-8",
        )
        result = _read_point(run_dir, point, "done")
        say(f"{head}: mAD {format_percent(result.metrics.get('mad'))} in {seconds:.0f} s")
        results.append(result)
    paths = write_ablation_tables(results, grid.keys, out_dir)
    return results, paths


def _value_cell(point: GridPoint, key: str) -> str:
    return as_text(point.values[key]) if key in point.values else "-"


def format_ablation_markdown(results: Sequence[PointResult], keys: Sequence[str]) -> str:
    """Markdown: a row per point, the varied settings, metrics in percent like the paper's ablation tables."""
    heads = [k.rsplit(".", 1)[-1] for k in keys]
    cols = ["point", *heads, *(t for _, t in METRIC_COLUMNS), "params (M)", "train (s)", "status"]
    lines = [
        "| " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(heads) + "---:|" * (len(METRIC_COLUMNS) + 2) + "---|",
    ]
    for r in results:
        metrics = [format_percent(r.metrics.get(k)) for k, _ in METRIC_COLUMNS]
        params = "n/a" if r.params is None else f"{r.params / 1e6:.2f}"
        secs = "n/a" if r.seconds is None else f"{r.seconds:.0f}"
        status = r.status if not r.error else f"failed: {r.error}".replace("|", "\\|")
        cells = [r.point.name, *(_value_cell(r.point, k) for k in keys), *metrics, params, secs, status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_ablation_csv(results: Sequence[PointResult], keys: Sequence[str]) -> str:
    """CSV: the same rows, metrics as fractions (empty when not computable), full dotted key names."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["point", *keys, *(k for k, _ in METRIC_COLUMNS), "params", "seconds", "status", "error"])
    for r in results:
        metrics = []
        for k, _ in METRIC_COLUMNS:
            v = r.metrics.get(k)
            metrics.append("" if v is None or not math.isfinite(v) else repr(v))
        writer.writerow(
            [
                r.point.name,
                *(_value_cell(r.point, k) for k in keys),
                *metrics,
                "" if r.params is None else r.params,
                "" if r.seconds is None else f"{r.seconds:.1f}",
                r.status,
                r.error,
            ]
        )
    return buf.getvalue()


def write_ablation_tables(
    results: Sequence[PointResult], keys: Sequence[str], out_dir: Path
) -> dict[str, Path]:
    """``OUT/ablation.md`` and ``OUT/ablation.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "ablation.md", "csv": out_dir / "ablation.csv"}
    paths["md"].write_text(format_ablation_markdown(results, keys), encoding="utf-8")
    paths["csv"].write_text(format_ablation_csv(results, keys), encoding="utf-8")
    return paths
