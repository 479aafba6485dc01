"""Colour map on a global scale, overlays, image curves and gallery selection."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from mambaad.report.curves import image_curves, svg_curve
from mambaad.report.gallery import select_gallery
from mambaad.report.images import colorize, global_range, outline, overlay, png_data_uri, region_overlay


def test_colorize_ends_and_shape() -> None:
    out = colorize(np.array([[0.0, 1.0], [0.5, np.nan]]), 0.0, 1.0)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    r, g, b = (int(c) for c in out[0, 0])
    assert b > 100 and r == 0 and g == 0  # low end is blue
    r, g, b = (int(c) for c in out[0, 1])
    assert r > 100 and g == 0 and b == 0  # high end is red
    assert tuple(out[1, 1]) == (128, 128, 128)  # NaN is grey
    # Values outside the scale clip to the ends; a zero-width scale does not divide by zero.
    assert (colorize(np.array([[-5.0, 9.0]]), 0.0, 1.0) == colorize(np.array([[0.0, 1.0]]), 0.0, 1.0)).all()
    assert colorize(np.ones((3, 3)), 2.0, 2.0).shape == (3, 3, 3)


def test_global_normalisation_same_value_same_colour() -> None:
    normal = np.full((8, 8), 0.2)
    anomalous = np.full((8, 8), 0.2)
    anomalous[2:5, 2:5] = 0.9
    vmin, vmax = global_range([normal, anomalous])
    assert (vmin, vmax) == (0.2, 0.9)
    a, b = colorize(normal, vmin, vmax), colorize(anomalous, vmin, vmax)
    assert (a[0, 0] == b[0, 0]).all()  # the same value gets the same colour in both images
    assert not (b[3, 3] == b[0, 0]).all()
    # A per-image min/max would have painted the flat normal map differently from the same value elsewhere;
    # with the global scale the normal image stays at the cold end.
    assert a[..., 0].max() == 0 and a[..., 2].min() > 100
    assert global_range([np.full((2, 2), np.nan)]) == (0.0, 1.0)


def test_overlay_and_region_overlay() -> None:
    img = np.full((16, 16, 3), 100, dtype=np.uint8)
    heat = np.zeros((8, 8, 3), dtype=np.uint8)
    heat[..., 0] = 255
    out = overlay(img, heat, alpha=0.5)  # heat is resized to the image
    assert out.shape == (16, 16, 3)
    assert tuple(out[5, 5]) == (178, 50, 50)
    assert (overlay(img, heat, alpha=0.0) == img).all()

    region = np.zeros((16, 16), dtype=bool)
    region[4:12, 4:12] = True
    edge = outline(region)
    assert edge.sum() == 28 and edge[4, 4] and not edge[7, 7]
    pic = region_overlay(img, region)
    assert tuple(pic[4, 4]) == (255, 255, 0)  # outline
    assert pic[7, 7, 0] > 100 and pic[7, 7, 1] < 100  # tinted red inside
    assert tuple(pic[0, 0]) == (100, 100, 100)  # untouched outside


def test_image_curves_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.random(200) + 0.5 * labels
    c = image_curves(labels, scores)
    assert c["fpr"][0] == 0 and c["tpr"][-1] == 1
    assert c["precision"].shape == c["recall"].shape
    assert math.isclose(c["auroc"], roc_auc_score(labels, scores))
    assert math.isclose(c["ap"], average_precision_score(labels, scores))
    one = image_curves(np.zeros(5), np.arange(5.0))
    assert one["fpr"].size == 0 and math.isnan(one["auroc"])
    with pytest.raises(ValueError, match="differ"):
        image_curves(np.zeros(3), np.zeros(4))


def test_svg_curve_is_plain_svg() -> None:
    svg = svg_curve(
        np.linspace(0, 1, 5000), np.linspace(0, 1, 5000) ** 0.5, "ROC <a>", "fpr", "tpr", diagonal=True
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<polyline" in svg and "ROC &lt;a&gt;" in svg
    points = svg.split('points="')[1].split('"')[0].split()
    assert 2 <= len(points) <= 1000  # long curves are thinned
    assert "n/a" in svg_curve(np.zeros(0), np.zeros(0), "PR", "recall", "precision")


def test_select_gallery_per_class_and_cap() -> None:
    classes = ["a"] * 6 + ["b"] * 4
    scores = [0.9, 0.8, 0.1, 0.7, 0.3, float("nan"), 0.6, 0.2, 0.5, 0.4]
    labels = [1, 1, 1, 0, 0, 1, 1, 0, 1, 0]
    picks = select_gallery(classes, scores, labels, per_class=2, normals_per_class=1)
    assert picks == [0, 1, 3, 6, 8, 9]  # top anomalies, then the top-scoring normal, per class
    capped = select_gallery(classes, scores, labels, per_class=2, normals_per_class=1, max_items=3)
    assert capped == [0, 1, 6]  # each class keeps its best before any class gets a second
    assert select_gallery([], [], []) == []


def test_png_data_uri_round_trip_and_shrink() -> None:
    rgb = np.zeros((300, 150, 3), dtype=np.uint8)
    rgb[..., 2] = 200
    uri = png_data_uri(rgb)
    assert uri.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert (back == rgb).all()
    small = Image.open(io.BytesIO(base64.b64decode(png_data_uri(rgb, max_side=100).split(",", 1)[1])))
    assert small.size == (50, 100)  # (W, H): longest side 100, aspect kept
