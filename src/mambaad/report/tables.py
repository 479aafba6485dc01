"""Per-class metric tables as Markdown, CSV and JSON.

Input is ``{class: {metric_key: fraction}}`` with the keys of :func:`mambaad.metrics.evaluate` and, usually,
a ``"mean"`` entry computed by the caller (the paper's "Avg" row is the mean over classes, spec §8). Markdown
shows percent with one decimal like the paper; CSV and JSON keep fractions so nothing is lost. A metric that
could not be computed (NaN or absent, e.g. pixel metrics without masks) is ``n/a`` / empty / ``null``,
never 0, so it cannot be mistaken for a real score.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "METRIC_COLUMNS",
    "format_csv",
    "format_markdown",
    "format_percent",
    "mean_over_classes",
    "with_mean",
    "write_tables",
]

MEAN = "mean"

# (key from mambaad.metrics.evaluate, column title as in the paper's tables)
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("image_auroc", "I-AUROC"),
    ("image_ap", "I-AP"),
    ("image_f1max", "I-F1max"),
    ("pixel_auroc", "P-AUROC"),
    ("pixel_ap", "P-AP"),
    ("pixel_f1max", "P-F1max"),
    ("pixel_aupro", "AU-PRO"),
    ("mad", "mAD"),
)


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when missing, NaN, infinite or not a number."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def format_percent(value: Any) -> str:
    """A fraction as percent with one decimal (``0.9861 -> '98.6'``), or ``'n/a'`` when not computable."""
    f = _finite(value)
    return "n/a" if f is None else f"{100.0 * f:.1f}"


def mean_over_classes(per_class: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Mean of every metric over the classes that have it (NaN when no class has it).

    Only used when the caller gives no ``"mean"`` row; missing values are skipped, not counted as 0.
    """
    out: dict[str, float] = {}
    for key, _ in METRIC_COLUMNS:
        vals = [
            v for cls, row in per_class.items() if cls != MEAN and (v := _finite(row.get(key))) is not None
        ]
        out[key] = sum(vals) / len(vals) if vals else math.nan
    return out


def with_mean(per_class: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Classes in their given order followed by a ``"mean"`` row (the caller's, or computed)."""
    rows = {cls: dict(row) for cls, row in per_class.items() if cls != MEAN}
    rows[MEAN] = dict(per_class[MEAN]) if MEAN in per_class else mean_over_classes(per_class)
    return rows


def format_markdown(per_class: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table: one row per class plus a final ``mean`` row, metrics in percent (1 decimal).

    >>> print(format_markdown({"bottle": {"image_auroc": 1.0, "pixel_ap": float("nan")}}).splitlines()[2])
    | bottle | 100.0 | n/a | n/a | n/a | n/a | n/a | n/a | n/a |
    """
    header = "| class | " + " | ".join(title for _, title in METRIC_COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(METRIC_COLUMNS)
    lines = [header, sep]
    for cls, row in with_mean(per_class).items():
        name = f"**{cls}**" if cls == MEAN else cls.replace("|", "\\|")
        lines.append(
            f"| {name} | " + " | ".join(format_percent(row.get(k)) for k, _ in METRIC_COLUMNS) + " |"
        )
    return "\n".join(lines) + "\n"


def format_csv(per_class: Mapping[str, Mapping[str, Any]]) -> str:
    """CSV with a ``class`` column and one column per metric key, fractions, empty cell when missing."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", *(k for k, _ in METRIC_COLUMNS)])
    for cls, row in with_mean(per_class).items():
        cells = [_finite(row.get(k)) for k, _ in METRIC_COLUMNS]
        writer.writerow([cls, *("" if v is None else repr(v) for v in cells)])
    return buf.getvalue()


def _json_safe(value: Any) -> Any:
    """Plain JSON values: floats with null for NaN/inf, numpy scalars and arrays unwrapped, containers recursed."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):  # includes numpy float64
        return float(value) if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy scalar or array, torch tensor
        return _json_safe(value.tolist())
    return str(value)


def write_tables(per_class: Mapping[str, Mapping[str, Any]], run_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.md``, ``metrics.csv`` and ``metrics.json`` into ``run_dir``.

    The JSON keeps every key of every row (fractions, null for NaN) so extra values such as thresholds
    survive; Markdown and CSV show the eight paper metrics.

    Returns:
        ``{"md": path, "csv": path, "json": path}``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = with_mean(per_class)
    paths = {"md": run_dir / "metrics.md", "csv": run_dir / "metrics.csv", "json": run_dir / "metrics.json"}
    paths["md"].write_text(format_markdown(rows), encoding="utf-8")
    paths["csv"].write_text(format_csv(rows), encoding="utf-8")
    paths["json"].write_text(json.dumps(_json_safe(rows), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return paths
