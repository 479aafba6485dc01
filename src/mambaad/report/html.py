"""A single self-contained ``report.html``: metrics table, image-level ROC/PR curves and a gallery.

Everything is inline (CSS, SVG plots, base64 PNG images), so the file can be mailed, archived or opened
offline, and it loads nothing from the network. Heat maps share one colour scale over the whole gallery
(see :mod:`mambaad.report.images`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from mambaad.report.curves import svg_curve
from mambaad.report.images import (
    colorize,
    global_range,
    mask_to_rgb,
    png_data_uri,
    region_overlay,
    resize_to,
)
from mambaad.report.tables import MEAN, METRIC_COLUMNS, format_percent, with_mean

__all__ = ["write_html_report"]

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; color: #111;
       background: #fff; margin: 24px; max-width: 1150px; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 18px; margin: 28px 0 10px; }
table { border-collapse: collapse; }
table.metrics td, table.metrics th { border: 1px solid #bbb; padding: 4px 9px; font-size: 14px; }
table.metrics th { background: #e8edf3; } table.metrics td.num { text-align: right; }
table.metrics tr.mean td { font-weight: bold; background: #f4f4f4; }
table.info td { padding: 1px 10px 1px 0; font-size: 13px; color: #333; }
.na { color: #999; }
.curves { display: flex; flex-wrap: wrap; gap: 14px; }
.curve-card { border: 1px solid #ddd; padding: 6px; } .curve-card h3 { font-size: 14px; margin: 0 0 4px; }
table.gallery td { padding: 3px; vertical-align: top; font-size: 12px; }
table.gallery th { font-size: 13px; text-align: left; padding: 3px; }
table.gallery img { display: block; image-rendering: auto; }
.caption { max-width: 200px; word-break: break-all; }
.anomalous { color: #b00; font-weight: bold; } .normal { color: #060; font-weight: bold; }
.colorbar { display: flex; align-items: center; gap: 8px; font-size: 12px; margin-bottom: 8px; }
"""


def _metrics_table(per_class: Mapping[str, Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{escape(t)}</th>" for _, t in METRIC_COLUMNS)
    rows = [f"<tr><th>class</th>{head}</tr>"]
    for cls, row in with_mean(per_class).items():
        cells = []
        for key, _ in METRIC_COLUMNS:
            text = format_percent(row.get(key))
            cells.append(f'<td class="num{" na" if text == "n/a" else ""}">{text}</td>')
        cls_attr = ' class="mean"' if cls == MEAN else ""
        rows.append(f"<tr{cls_attr}><td>{escape(cls)}</td>{''.join(cells)}</tr>")
    return '<table class="metrics">' + "".join(rows) + "</table>"


def _curves_section(curves: Mapping[str, Mapping[str, Any]]) -> str:
    cards = []
    for cls, c in curves.items():
        fpr, tpr = np.asarray(c.get("fpr", [])), np.asarray(c.get("tpr", []))
        prec, rec = np.asarray(c.get("precision", [])), np.asarray(c.get("recall", []))
        roc_title = f"ROC, AUROC {format_percent(c.get('auroc'))}" if "auroc" in c else "ROC"
        pr_title = f"PR, AP {format_percent(c.get('ap'))}" if "ap" in c else "PR"
        cards.append(
            f'<div class="curve-card"><h3>{escape(cls)}</h3>'
            + svg_curve(fpr, tpr, roc_title, "false-positive rate", "true-positive rate", diagonal=True)
            + svg_curve(rec, prec, pr_title, "recall", "precision", color="#1f5fa8")
            + "</div>"
        )
    return '<div class="curves">' + "".join(cards) + "</div>"


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"gallery image must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def _gallery_section(
    gallery: Sequence[Mapping[str, Any]],
    vmin: float,
    vmax: float,
    threshold: float,
    thumb: int,
    auto_thr: bool,
) -> str:
    bar = colorize(np.tile(np.linspace(vmin, vmax, 256), (12, 1)), vmin, vmax)  # (12, 256, 3)
    thr_note = "midpoint of the shown range; no calibrated threshold given" if auto_thr else "given threshold"
    header = (
        f'<div class="colorbar"><span>{vmin:.4g}</span><img src="{png_data_uri(bar)}" width="256" height="12" '
        f'alt="colour scale"><span>{vmax:.4g}</span><span>one scale for all heat maps; predicted region: '
        f"map &gt; {threshold:.4g} ({thr_note})</span></div>"
    )
    rows = ["<tr><th></th><th>image</th><th>ground truth</th><th>heat map</th><th>predicted region</th></tr>"]
    for item in gallery:
        img = _as_rgb(item["image"])
        hw = img.shape[:2]
        amap = resize_to(np.asarray(item["amap"], dtype=np.float32), hw)  # (H, W) on the image grid
        gt = mask_to_rgb(item.get("mask"), hw)
        heat = colorize(amap, vmin, vmax)
        pred = region_overlay(img, amap > threshold)
        label = item.get("label")
        label_html = (
            '<span class="anomalous">anomalous</span>'
            if label == 1
            else '<span class="normal">normal</span>'
            if label == 0
            else "unlabelled"
        )
        path = str(item.get("path", ""))
        score = item.get("score")
        score_text = "n/a" if score is None else f"{float(score):.4g}"
        caption = (
            f'<td class="caption"><b>{escape(str(item.get("cls", "")))}</b><br>{label_html}<br>'
            f'score {score_text}<br><span title="{escape(path)}">{escape(Path(path).name)}</span></td>'
        )
        cells = "".join(
            f'<td><img src="{png_data_uri(p, thumb)}" width="{thumb}" alt="{alt}"></td>'
            for p, alt in (
                (img, "image"),
                (gt, "ground truth"),
                (heat, "heat map"),
                (pred, "predicted region"),
            )
        )
        rows.append(f"<tr>{caption}{cells}</tr>")
    return header + '<table class="gallery">' + "".join(rows) + "</table>"


def write_html_report(
    run_dir: str | Path,
    per_class: Mapping[str, Mapping[str, Any]],
    curves: Mapping[str, Mapping[str, Any]],
    gallery: Sequence[Mapping[str, Any]],
    title: str = "MambaAD report",
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    info: Mapping[str, Any] | None = None,
    thumb: int = 180,
) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    Args:
        run_dir: output folder (created).
        per_class: ``{class: {metric_key: fraction}}`` as for :func:`mambaad.report.tables.format_markdown`.
        curves: ``{class: image_curves(labels, scores)}`` (``fpr``, ``tpr``, ``precision``, ``recall``,
            optional ``auroc``/``ap``).
        gallery: dicts with ``image`` (H, W, 3) uint8, ``mask`` (H, W) bool or None, ``amap`` (h, w) float,
            ``cls``, ``path``, ``score``, ``label``; see :func:`mambaad.report.gallery.select_gallery`.
        vmin, vmax: heat-map scale; default one min/max over all gallery maps (never per image).
        threshold: map value above which a pixel is predicted anomalous (e.g. calibrated on held-out
            normals); default the midpoint of the scale, labelled as such in the report.
        info: optional run facts (checkpoint, config file, device, ...) shown under the title.
        thumb: displayed image width in pixels; images are downscaled to it before embedding.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lo, hi = global_range(np.asarray(item["amap"]) for item in gallery)
    vmin = lo if vmin is None else float(vmin)
    vmax = hi if vmax is None else float(vmax)
    auto_thr = threshold is None
    thr = vmin + 0.5 * (vmax - vmin) if threshold is None else float(threshold)

    body = [f"<h1>{escape(title)}</h1>"]
    if info:
        rows = "".join(
            f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in info.items()
        )
        body.append(f'<table class="info">{rows}</table>')
    body.append("<h2>Metrics (%)</h2>" + _metrics_table(per_class))
    if curves:
        body.append("<h2>Image-level ROC and precision-recall curves</h2>" + _curves_section(curves))
    if gallery:
        body.append("<h2>Examples</h2>" + _gallery_section(gallery, vmin, vmax, thr, thumb, auto_thr))
    html_text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    path = run_dir / "report.html"
    path.write_text(html_text, encoding="utf-8")
    return path
