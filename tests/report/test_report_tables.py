"""Metric tables: Markdown layout, n/a for missing values, CSV and JSON that parse back."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from mambaad.report.tables import METRIC_COLUMNS, format_markdown, mean_over_classes, write_tables

KEYS = [k for k, _ in METRIC_COLUMNS]


def _row(base: float) -> dict[str, float]:
    return {k: base + 0.01 * i for i, k in enumerate(KEYS)}


def test_markdown_rows_percent_and_mean_from_caller() -> None:
    per_class = {"bottle": _row(0.5), "cable": _row(0.7), "mean": {k: 0.123 for k in KEYS}}
    lines = format_markdown(per_class).strip().splitlines()
    assert len(lines) == 2 + 3  # header, separator, 2 classes, mean
    assert lines[0].split("|")[1:-1] == [" class ", *(f" {t} " for _, t in METRIC_COLUMNS)]
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells == ["bottle", *(f"{100 * (0.5 + 0.01 * i):.1f}" for i in range(len(KEYS)))]
    # The caller's mean row is used as given, not recomputed, and comes last.
    assert lines[-1].startswith("| **mean** |") and lines[-1].count("12.3") == len(KEYS)


def test_missing_and_nan_are_na_never_zero() -> None:
    per_class = {"a": {"image_auroc": 0.9, "pixel_ap": float("nan"), "pixel_aupro": np.float32("nan")}}
    row = format_markdown(per_class).splitlines()[2]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "90.0"
    assert cells[2:] == ["n/a"] * (len(KEYS) - 1)
    assert "0.0" not in cells


def test_mean_computed_when_absent_ignores_missing() -> None:
    per_class = {
        "a": {"image_auroc": 0.8, "pixel_ap": float("nan")},
        "b": {"image_auroc": 1.0, "pixel_ap": 0.4},
        "c": {"image_auroc": 0.9},
    }
    mean = mean_over_classes(per_class)
    assert math.isclose(mean["image_auroc"], 0.9)
    assert math.isclose(mean["pixel_ap"], 0.4)  # only class b has it
    assert math.isnan(mean["pixel_aupro"])  # nobody has it
    last = format_markdown(per_class).strip().splitlines()[-1]
    assert last.startswith("| **mean** | 90.0 |") and "| 40.0 |" in last


def test_write_tables_csv_and_json_parse_back(tmp_path: Path) -> None:
    per_class = {"bottle": {**_row(0.5), "pixel_ap": float("nan")}, "cable": {**_row(0.6), "threshold": 0.37}}
    paths = write_tables(per_class, tmp_path / "run")
    assert {p.name for p in paths.values()} == {"metrics.md", "metrics.csv", "metrics.json"}
    assert all(p.is_file() for p in paths.values())

    with paths["csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == ["bottle", "cable", "mean"]
    assert rows[0]["pixel_ap"] == ""  # missing stays empty
    assert float(rows[1]["image_auroc"]) == 0.6
    assert math.isclose(float(rows[2]["image_auroc"]), 0.55)

    text = paths["json"].read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["bottle"]["pixel_ap"] is None
    assert data["bottle"]["image_auroc"] == 0.5  # fractions, not percent
    assert data["cable"]["threshold"] == 0.37  # extra keys survive in JSON
    assert list(data) == ["bottle", "cable", "mean"]
