"""Run reports: metric tables (Markdown, CSV, JSON) and a self-contained HTML page with curves and images."""

from mambaad.report.curves import image_curves, svg_curve
from mambaad.report.gallery import select_gallery
from mambaad.report.html import write_html_report
from mambaad.report.images import colorize, global_range, overlay, png_data_uri, region_overlay
from mambaad.report.tables import format_csv, format_markdown, mean_over_classes, write_tables

__all__ = [
    "colorize",
    "format_csv",
    "format_markdown",
    "global_range",
    "image_curves",
    "mean_over_classes",
    "overlay",
    "png_data_uri",
    "region_overlay",
    "select_gallery",
    "svg_curve",
    "write_html_report",
    "write_tables",
]
