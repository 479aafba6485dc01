"""Synthetic defect data: the embedded default data set for the demo and the tests.

Writes an MVTec-style folder tree of several classes, textures (woven cloth, wood grain, a metal grid,
granite) and objects (a washer disc, a two-colour pill, a hex nut on a background), with defects
(scratches, cracks, holes, stains, missing parts, Perlin-noise blobs) and exact 0/255 masks: the mask is
exactly the set of pixels the defect changed. Normal images vary (texture phase, pose, lighting, sensor
noise) so the task is not trivial, and defects are visible but varied in size, place and colour so a
reconstruction model can learn them.

Every image has its own random stream ``default_rng([seed, class, split, index])``, so output is byte-for-
byte identical for the same seed, independent of the order in which images are made. Everything is
vectorized numpy; PNG writing uses a low compression level for speed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mambaad.errors import ConfigError, DataError

#: Class kinds in the order classes are made: textures and objects alternate.
KINDS: tuple[str, ...] = ("woven", "disc", "wood", "pill", "grid", "nut", "granite")

#: Defect types per kind (each class gets all of its kind's types, spread evenly over the test images).
DEFECTS: dict[str, tuple[str, ...]] = {
    "woven": ("scratch", "hole", "stain", "blob"),
    "disc": ("scratch", "crack", "missing", "stain"),
    "wood": ("scratch", "crack", "stain", "blob"),
    "pill": ("crack", "stain", "missing", "blob"),
    "grid": ("crack", "hole", "missing", "blob"),
    "nut": ("scratch", "hole", "missing", "blob"),
    "granite": ("scratch", "crack", "hole", "stain"),
}

MARKER = "synthetic.json"
_SPLIT_CODE = {"train": 0, "test_good": 1, "test_bad": 2}

Rng = np.random.Generator
Array = np.ndarray


# --------------------------------------------------------------------------------------------- noise
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates ``(yy, xx)``, each ``(S, S)`` float32 (cached, read-only)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def smooth_noise(rng: Rng, size: int, cells: int | tuple[int, int]) -> Array:
    """Value noise: a ``cells`` random grid upsampled bicubically to ``(S, S)``, unit-ish std."""
    ch, cw = (cells, cells) if isinstance(cells, int) else cells
    g = rng.standard_normal((ch + 1, cw + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(g, mode="F").resize((size, size), Image.Resampling.BICUBIC))


def fractal_noise(rng: Rng, size: int, base: int = 4, octaves: int = 4) -> Array:
    """Perlin-like fractal noise (sum of octaves, halving amplitude), roughly zero-mean, std ~1."""
    out = np.zeros((size, size), np.float32)
    for o in range(octaves):
        out += smooth_noise(rng, size, base * 2**o) * (0.5**o)
    return out / 1.2


# --------------------------------------------------------------------------------------------- normals
def _lighting(rng: Rng, size: int, strength: float = 0.06) -> Array:
    """Global brightness times a gentle linear gradient in a random direction: ``(S, S, 1)``."""
    yy, xx = _grid(size)
    ang = rng.uniform(0, 2 * np.pi)
    grad = ((xx - size / 2) * np.cos(ang) + (yy - size / 2) * np.sin(ang)) / size
    return ((1.0 + rng.uniform(-strength, strength)) * (1.0 + strength * grad))[..., None]


def _woven(rng: Rng, size: int, color: Array) -> tuple[Array, Array]:
    yy, xx = _grid(size)
    p = size / 16.0
    u, v = (xx + rng.uniform(0, 2 * p)) / p, (yy + rng.uniform(0, 2 * p)) / p
    over = (np.floor(u) + np.floor(v)) % 2 == 0
    thread = np.sqrt(np.where(over, np.sin(np.pi * (v % 1.0)), np.sin(np.pi * (u % 1.0))))
    fibre = 1.0 + 0.08 * smooth_noise(rng, size, size // 4)
    img = color * (0.35 + 0.65 * thread * fibre)[..., None]
    return img, *_everywhere(size)


def _wood(rng: Rng, size: int, color: Array) -> tuple[Array, Array]:
    yy, xx = _grid(size)
    warp = 10.0 * smooth_noise(rng, size, 3) * size / 256
    t = (yy + warp + 0.15 * xx * rng.uniform(-1, 1)) / (size / 11.0) + rng.uniform(0, 1)
    rings = (0.5 + 0.5 * np.sin(2 * np.pi * t)) ** 3
    streak = 0.05 * smooth_noise(rng, size, (size // 3, 6))
    shade = 0.55 + 0.35 * rings + streak
    return color * shade[..., None], *_everywhere(size)


def _grid_tex(rng: Rng, size: int, color: Array) -> tuple[Array, Array]:
    yy, xx = _grid(size)
    p = size / 9.0
    du = np.abs((xx + rng.uniform(0, p)) % p - p / 2)
    dv = np.abs((yy + rng.uniform(0, p)) % p - p / 2)
    half = 1.6 * size / 256
    line = np.clip(half + 0.5 - (p / 2 - np.maximum(du, dv)), 0.0, 1.0)
    metal = 0.62 + 0.05 * fractal_noise(rng, size, base=8, octaves=2)
    shade = metal * (1.0 - 0.75 * line)
    return color * shade[..., None], *_everywhere(size)


def _granite(rng: Rng, size: int, color: Array) -> tuple[Array, Array]:
    n = fractal_noise(rng, size, base=16, octaves=3)
    speck = (smooth_noise(rng, size, size // 3) > 1.6).astype(np.float32)
    shade = 0.6 + 0.1 * n - 0.25 * speck
    return color * shade[..., None], *_everywhere(size)


def _everywhere(size: int) -> tuple[Array, Array]:
    full = np.ones((size, size), bool)
    return full, full


def _pose(rng: Rng, size: int) -> tuple[Array, Array]:
    """Object-centred coordinates after a small random shift, rotation and scale: ``(y, x)``."""
    yy, xx = _grid(size)
    # python floats keep the float32 arrays float32 (numpy scalars would promote them to float64)
    cy, cx = (float(v) for v in size / 2 + rng.uniform(-0.03, 0.03, 2) * size)
    a = float(np.deg2rad(rng.uniform(-8, 8)))
    s = float(rng.uniform(0.97, 1.03))
    c, si = float(np.cos(a)) / s, float(np.sin(a)) / s
    y0, x0 = yy - cy, xx - cx
    return y0 * c - x0 * si, y0 * si + x0 * c


def _composite(bg: Array, obj: Array, sdf: Array) -> tuple[Array, Array, Array]:
    """Object over background with a 1-px anti-aliased edge; returns (image, interior, any coverage)."""
    cov = np.clip(0.5 - sdf, 0.0, 1.0)[..., None]
    return bg * (1 - cov) + obj * cov, sdf < -1.5, sdf < 0.5


def _background(rng: Rng, size: int, color: Array) -> Array:
    return color * (1.0 + 0.04 * fractal_noise(rng, size, base=4, octaves=2))[..., None]


def _disc(rng: Rng, size: int, color: Array) -> tuple[Array, Array]:
    y, x = _pose(rng, size)
    r = np.hypot(y, x)
    r_out, r_in = 0.33 * size, 0.12 * size
    sdf = np.maximum(r - r_out, r_in - r)
    ring = (r - r_in) / (r_out - r_in)
    shade = 0.6 + 0.15 * np.cos(np.arctan2(y, x) - 0.8) * np.sin(np.pi * ring) + 0.15 * ring
    obj = color * shade[..., None]
    return _composite(_background(rng, size, np.array([0.18, 0.2, 0.22])), obj, sdf)


def _nut(rng: Rng, size: int, color: Array) -> tuple[Array, Array]:
    y, x = _pose(rng, size)
    apothem = 0.3 * size
    dirs = [(float(np.cos(t)), float(np.sin(t))) for t in (0.0, np.pi / 3, 2 * np.pi / 3)]
    hexd = np.maximum.reduce([np.abs(x * c + y * s) for c, s in dirs])
    r = np.hypot(y, x)
    r_in = 0.42 * apothem
    sdf = np.maximum(hexd - apothem, r_in - r)
    facet = 0.75 + 0.12 * np.cos(3 * np.arctan2(y, x)) - 0.15 * np.clip((r_in + 6 - r) / 6, 0, 1)
    obj = color * facet[..., None]
    return _composite(_background(rng, size, np.array([0.55, 0.57, 0.6])), obj, sdf)


def _pill(rng: Rng, size: int, color: Array) -> tuple[Array, Array]:
    y, x = _pose(rng, size)
    half_len, rad = 0.2 * size, 0.13 * size
    d = np.hypot(np.maximum(np.abs(x) - half_len, 0.0), y)
    sdf = d - rad
    z = np.sqrt(np.clip(1 - (d / rad) ** 2, 0, 1))
    second = np.array([0.92, 0.9, 0.86], np.float32)
    base = np.where((x < 0)[..., None], color, second)
    obj = base * (0.55 + 0.45 * z)[..., None]
    return _composite(_background(rng, size, np.array([0.12, 0.3, 0.16])), obj, sdf)


_MAKERS: dict[str, Callable[[Rng, int, Array], tuple[Array, Array, Array]]] = {
    "woven": _woven,
    "wood": _wood,
    "grid": _grid_tex,
    "granite": _granite,
    "disc": _disc,
    "pill": _pill,
    "nut": _nut,
}
_COLORS: dict[str, tuple[float, float, float]] = {
    "woven": (0.78, 0.7, 0.55),
    "wood": (0.72, 0.48, 0.27),
    "grid": (1.0, 1.0, 1.0),
    "granite": (0.85, 0.78, 0.76),
    "disc": (0.8, 0.82, 0.85),
    "pill": (0.75, 0.2, 0.18),
    "nut": (0.78, 0.66, 0.35),
}


# --------------------------------------------------------------------------------------------- defects
def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("L", (size, size), 0)
    return img, ImageDraw.Draw(img)


def _pick_point(rng: Rng, allowed: Array, margin: int) -> tuple[float, float]:
    """A random ``(x, y)`` where ``allowed`` is True, at least ``margin`` px from the border."""
    inner = allowed[margin:-margin, margin:-margin]
    ys, xs = np.nonzero(inner)
    i = rng.integers(len(ys))
    return float(xs[i] + margin), float(ys[i] + margin)


def _stroke(rng: Rng, size: int, allowed: Array, jagged: bool) -> Array:
    """A scratch (smooth arc) or a crack (jagged random walk with an optional branch) as a bool mask."""
    img, draw = _canvas(size)
    k = size / 256
    x, y = _pick_point(rng, allowed, int(0.1 * size))
    ang = rng.uniform(0, 2 * np.pi)
    n = int(rng.integers(14, 28))
    step = rng.uniform(0.012, 0.02) * size
    turn = rng.normal(0, 0.06) if not jagged else 0.0
    pts = [(x, y)]
    branch_at = int(rng.integers(n // 3, n)) if jagged and rng.random() < 0.6 else -1
    branch: list[tuple[float, float]] = []
    for i in range(n):
        ang += turn + (rng.normal(0, 0.55) if jagged else 0.0)
        x, y = x + step * np.cos(ang), y + step * np.sin(ang)
        pts.append((x, y))
        if i == branch_at:
            bx, by, ba = x, y, ang + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.1)
            branch = [(bx, by)]
            for _ in range(n // 3):
                ba += rng.normal(0, 0.5)
                bx, by = bx + step * np.cos(ba), by + step * np.sin(ba)
                branch.append((bx, by))
    width = max(1, round((rng.uniform(1.5, 2.5) if jagged else rng.uniform(2.0, 4.0)) * k))
    draw.line(pts, fill=255, width=width, joint="curve")
    if branch:
        draw.line(branch, fill=255, width=max(1, width - 1), joint="curve")
    return np.asarray(img) > 0


def _ellipse(rng: Rng, size: int, allowed: Array, rmin: float, rmax: float) -> Array:
    img, draw = _canvas(size)
    x, y = _pick_point(rng, allowed, int(0.1 * size))
    rx, ry = rng.uniform(rmin, rmax, 2) * size
    draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=255)
    return np.asarray(img) > 0


def _blob(rng: Rng, size: int, allowed: Array, rmin: float, rmax: float, rough: float) -> Array:
    """An irregular blob: a radial falloff around a point, roughened by fractal noise and thresholded."""
    yy, xx = _grid(size)
    x, y = _pick_point(rng, allowed, int(0.1 * size))
    r = rng.uniform(rmin, rmax) * size
    field = 1.0 - np.hypot(yy - y, xx - x) / r + rough * fractal_noise(rng, size, base=8, octaves=3)
    return field > 0.3


def _missing_object(rng: Rng, size: int, inside: Array) -> Array:
    """Pixels of the object beyond a random cut line near its edge (the part that broke off)."""
    yy, xx = _grid(size)
    ys, xs = np.nonzero(inside)
    cy, cx = ys.mean(), xs.mean()
    radius = np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).max())
    ang = rng.uniform(0, 2 * np.pi)
    proj = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)
    return proj > rng.uniform(0.6, 0.8) * radius


def _apply(
    kind: str, defect: str, rng: Rng, img: Array, inside: Array, cover: Array, base_color: Array
) -> tuple[Array, Array]:
    """Add one defect; returns the new image and the exact mask of changed pixels.

    ``inside`` is where a defect may sit (the object interior; everywhere for textures), ``cover`` every
    pixel the object touches (a missing part removes all of those beyond the cut).
    """
    size = img.shape[0]
    min_area = 0.0008 * size * size
    is_object = kind in ("disc", "pill", "nut")
    for _ in range(50):
        if defect in ("scratch", "crack"):
            mask = _stroke(rng, size, inside, jagged=defect == "crack")
        elif defect == "hole":
            mask = _ellipse(rng, size, inside, 0.015, 0.045)
        elif defect == "stain":
            mask = _blob(rng, size, inside, 0.04, 0.09, rough=0.35)
        elif defect == "blob":
            mask = _blob(rng, size, inside, 0.05, 0.12, rough=0.6)
        elif defect == "missing":
            mask = (
                _missing_object(rng, size, inside) if is_object else _ellipse(rng, size, inside, 0.04, 0.08)
            )
        else:
            raise ValueError(f"unknown defect {defect}")
        mask &= cover if defect == "missing" else inside
        if mask.sum() >= min_area:
            break
    out = img.copy()
    m = mask[..., None]
    if defect == "scratch":
        new = np.clip(img * 0.4 + 0.6 * rng.uniform(0.85, 1.0), 0, 1)
    elif defect == "crack":
        new = img * rng.uniform(0.15, 0.3)
    elif defect == "hole":
        yy, xx = _grid(size)
        ys, xs = np.nonzero(mask)
        depth = np.hypot(yy - ys.mean(), xx - xs.mean()) / max(np.ptp(xs), np.ptp(ys), 1)
        new = np.broadcast_to((0.04 + 0.25 * depth)[..., None], img.shape) * base_color
    elif defect == "stain":
        tint = rng.choice(np.array([[0.35, 0.22, 0.08], [0.1, 0.1, 0.1], [0.55, 0.5, 0.15]], np.float32))
        alpha = rng.uniform(0.55, 0.8)
        new = img * (1 - alpha) + tint * alpha
    elif defect == "blob":
        hue = rng.normal(0, 1, 3)
        shift = rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.3) + 0.12 * hue / np.linalg.norm(hue)
        new = np.clip(img + shift + 0.06 * fractal_noise(rng, size, base=16, octaves=2)[..., None], 0, 1)
    else:  # missing
        if is_object:
            # the broken-off part shows the background: its mean colour plus fresh background noise
            new = np.broadcast_to(img[~_dilate(cover)].mean(axis=0), img.shape)
            new = new * (1 + 0.04 * fractal_noise(rng, size, base=4, octaves=2))[..., None]
        else:
            new = np.broadcast_to(img[inside].mean(axis=0) * 0.9, img.shape)
    out = np.where(m, new, out)
    return out, mask


def _dilate(mask: Array, r: int = 3) -> Array:
    out = mask.copy()
    for dy in range(-r, r + 1):
        out |= np.roll(mask, dy, axis=0)
    res = out.copy()
    for dx in range(-r, r + 1):
        res |= np.roll(out, dx, axis=1)
    return res


# --------------------------------------------------------------------------------------------- writer
def _to_uint8(img: Array, rng: Rng, grey: bool) -> Array:
    noisy = img.astype(np.float32) + (rng.standard_normal(img.shape[:2], dtype=np.float32) * 0.015)[..., None]
    noisy *= 255.0
    noisy += 0.5
    arr = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)  # sensor noise, then quantize
    return arr.mean(axis=-1).astype(np.uint8) if grey else arr


def render(
    kind: str, seed: int, cls_index: int, split: str, index: int, size: int, defect: str | None = None
) -> tuple[Array, Array]:
    """One image (and its mask when ``defect`` is given) of class ``kind``.

    Returns:
        ``(image, mask)``: uint8 ``(S, S, 3)`` (``(S, S)`` for the grey ``grid`` kind) and bool ``(S, S)``
        (all False for normal images).
    """
    # three independent streams (scene, defect, sensor noise): rendering the same image without its defect
    # gives the same pixels outside the mask, which the tests use to prove the masks exact.
    key = [seed, cls_index, _SPLIT_CODE[split], index]
    rng = np.random.default_rng([*key, 0])
    color = np.asarray(_COLORS[kind], np.float32)
    img, inside, cover = _MAKERS[kind](rng, size, color)
    img = img * _lighting(rng, size)
    mask = np.zeros((size, size), bool)
    if defect is not None:
        img, mask = _apply(kind, defect, np.random.default_rng([*key, 1]), img, inside, cover, color)
    return _to_uint8(img, np.random.default_rng([*key, 2]), grey=kind == "grid"), mask


def _class_names(classes: int) -> list[tuple[str, str]]:
    """``(name, kind)`` per class; beyond the 7 kinds, names repeat with a numeric suffix."""
    out = []
    for i in range(classes):
        kind = KINDS[i % len(KINDS)]
        out.append((kind if i < len(KINDS) else f"{kind}{i // len(KINDS) + 1}", kind))
    return out


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        marker = out / MARKER
        if not marker.is_file():
            raise DataError(
                f"{out}: folder is not empty and was not made by 'mambaad synth'; choose a new folder"
            )
        try:
            old = json.loads(marker.read_text())
            names = [str(c) for c in old["classes"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{marker}: unreadable synth marker; delete the folder by hand") from exc
        for name in names:
            target = out / name
            if target.is_dir() and target.parent == out:
                shutil.rmtree(target)
        marker.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _save(arr: Array, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def make_synthetic_dataset(
    out: Path | str, classes: int = 4, seed: int = 0, size: int = 256, train: int = 60, test: int = 30
) -> Path:
    """Write a synthetic multi-class defect data set in the MVTec/folder layout.

    Per class: ``train`` normal training images, ``test`` test images of which ``test // 2`` are defective
    (defect types spread evenly), masks in ``ground_truth/<type>/<stem>_mask.png`` (0/255). A folder made
    earlier by this function is regenerated in place; any other non-empty folder is refused.

    Args:
        out: Output folder.
        classes: Number of classes (textures and objects alternate; see :data:`KINDS`).
        seed: Random seed; the same seed gives byte-identical files.
        size: Square image size in pixels (>= 64).
        train: Normal training images per class.
        test: Test images per class (half defective, rounded down).

    Returns:
        The output folder.
    """
    if classes < 1 or size < 64 or train < 1 or test < 2:
        raise ConfigError(
            f"synth: need classes >= 1, size >= 64, train >= 1, test >= 2 (got {classes}, {size}, {train}, {test})"
        )
    out = Path(out).expanduser().absolute()
    _prepare_out(out)
    names = _class_names(classes)
    n_bad = test // 2
    for ci, (name, kind) in enumerate(names):
        root = out / name
        for i in range(train):
            _save(render(kind, seed, ci, "train", i, size)[0], root / "train" / "good" / f"{i:03d}.png")
        for i in range(test - n_bad):
            _save(render(kind, seed, ci, "test_good", i, size)[0], root / "test" / "good" / f"{i:03d}.png")
        types = DEFECTS[kind]
        counters = dict.fromkeys(types, 0)
        for i in range(n_bad):
            d = types[i % len(types)]
            img, mask = render(kind, seed, ci, "test_bad", i, size, defect=d)
            j = counters[d]
            counters[d] += 1
            _save(img, root / "test" / d / f"{j:03d}.png")
            _save(mask.astype(np.uint8) * 255, root / "ground_truth" / d / f"{j:03d}_mask.png")
    meta: dict[str, object] = {
        "generator": "mambaad synth",
        "seed": seed,
        "size": size,
        "train": train,
        "test": test,
    }
    meta["classes"] = [n for n, _ in names]
    (out / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
    return out
