"""Anomaly-map pictures in plain numpy: colormap, overlays, region outlines and PNG data URIs.

Heat maps in one report must share one scale, so :func:`colorize` takes ``vmin``/``vmax`` from the caller
(one range over all shown maps, or a calibrated one) and never normalises per image: a per-image min/max
paints every normal image bright red somewhere and hides which images are actually anomalous.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable

import numpy as np
from PIL import Image

__all__ = [
    "colorize",
    "global_range",
    "mask_to_rgb",
    "outline",
    "overlay",
    "png_data_uri",
    "region_overlay",
    "resize_to",
]


def global_range(amaps: Iterable[np.ndarray]) -> tuple[float, float]:
    """One (min, max) over all finite values of all maps; (0, 1) when there are none."""
    lo, hi = np.inf, -np.inf
    for a in amaps:
        a = np.asarray(a, dtype=np.float64)
        finite = a[np.isfinite(a)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (0.0, 1.0) if lo > hi else (lo, hi)


def colorize(amap: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Jet-like colours for a map on a FIXED scale: vmin is dark blue, vmax dark red.

    Args:
        amap: (H, W) float anomaly map.
        vmin, vmax: the scale; values outside are clipped, so equal values give equal colours in every image.

    Returns:
        (H, W, 3) uint8 RGB. NaN pixels are grey.
    """
    a = np.asarray(amap, dtype=np.float64)
    span = vmax - vmin
    t = (a - vmin) / span if span > 0 else np.zeros_like(a)
    t = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0)[..., None]  # (H, W, 1)
    centers = np.array([0.75, 0.5, 0.25])  # where R, G, B peak along t
    rgb = np.clip(1.5 - np.abs(4.0 * (t - centers)), 0.0, 1.0)  # (H, W, 3), piecewise-linear jet
    out = np.round(rgb * 255.0).astype(np.uint8)
    out[np.isnan(a)] = 128
    return out


def resize_to(array: np.ndarray, size_hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize an (H, W) or (H, W, 3) array to ``size_hw`` with PIL, keeping its dtype."""
    if array.shape[:2] == tuple(size_hw):
        return array
    h, w = size_hw
    resample = Image.NEAREST if nearest else Image.BILINEAR
    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize((w, h), resample))
    if array.dtype == bool:
        return np.asarray(Image.fromarray(array.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize((w, h), resample))


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an RGB heat picture onto an image: ``(1 - alpha) * image + alpha * heat``.

    Args:
        image: (H, W, 3) uint8.
        heat: (h, w, 3) uint8, e.g. from :func:`colorize`; resized to the image if needed.
        alpha: weight of the heat picture in [0, 1].
    """
    heat = resize_to(np.asarray(heat, dtype=np.uint8), image.shape[:2])
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of a boolean (H, W) mask: inside the mask with a 4-neighbour outside it."""
    m = np.asarray(mask, dtype=bool)
    inner = m.copy()
    for _ in range(width):
        p = np.pad(inner, 1, mode="constant", constant_values=False)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def region_overlay(
    image: np.ndarray,
    region: np.ndarray,
    color: tuple[int, int, int] = (255, 0, 0),
    alpha: float = 0.35,
    edge: tuple[int, int, int] = (255, 255, 0),
) -> np.ndarray:
    """Image with a region tinted in ``color`` and its outline drawn in ``edge``.

    Args:
        image: (H, W, 3) uint8.
        region: (h, w) bool, e.g. ``amap > threshold``; resized (nearest) to the image if needed.
    """
    region = resize_to(np.asarray(region, dtype=bool), image.shape[:2], nearest=True)
    out = image.astype(np.float32)
    out[region] = (1.0 - alpha) * out[region] + alpha * np.asarray(color, dtype=np.float32)
    width = max(1, round(min(image.shape[:2]) / 128))  # stays visible after downscaling
    out[outline(region, width)] = edge
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def mask_to_rgb(mask: np.ndarray | None, size_hw: tuple[int, int]) -> np.ndarray:
    """Ground-truth mask as a white-on-black RGB picture; mid-grey when there is no mask."""
    if mask is None:
        return np.full((*size_hw, 3), 96, dtype=np.uint8)
    m = resize_to(np.asarray(mask, dtype=bool), size_hw, nearest=True)
    return np.repeat((m.astype(np.uint8) * 255)[..., None], 3, axis=2)


def png_data_uri(rgb: np.ndarray, max_side: int | None = None) -> str:
    """``data:image/png;base64,...`` for an (H, W, 3) uint8 picture, optionally shrunk to ``max_side``.

    Shrinking keeps a report with many full-size images small enough to open quickly.
    """
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
