"""report.html: self-contained content, global heat-map scale, and a real render in headless Chromium."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mambaad.report import image_curves, select_gallery, write_html_report
from mambaad.report.tables import METRIC_COLUMNS

KEYS = [k for k, _ in METRIC_COLUMNS]
# Colours set in the report's CSS; the screenshot check looks for them.
TABLE_HEADER_RGB = (0xE8, 0xED, 0xF3)


def _item(cls: str, label: int, k: int, size: int = 128) -> dict:
    """A grey textured image; anomalous ones have a square defect that the map and mask both mark."""
    rng = np.random.default_rng(k)
    img = (110 + 30 * rng.random((size, size, 1))).repeat(3, axis=2).astype(np.uint8)
    amap = 0.05 * rng.random((64, 64)).astype(np.float32)  # map at half resolution, like a model output
    mask = np.zeros((size, size), dtype=bool)
    if label:
        amap[16:40, 16:40] = 1.0
        mask[32:80, 32:80] = True
    return {
        "image": img,
        "mask": mask,
        "amap": amap,
        "cls": cls,
        "path": f"/data/{cls}/test/{'bad' if label else 'good'}/{k:03d}.png",
        "score": float(amap.max()),
        "label": label,
    }


def _report(tmp_path: Path) -> tuple[Path, list[dict]]:
    items = [
        _item(cls, label, k)
        for k, (cls, label) in enumerate([(c, lb) for c in ("bottle", "cable") for lb in (1, 0, 1, 0)])
    ]
    picks = select_gallery(
        [it["cls"] for it in items], [it["score"] for it in items], [it["label"] for it in items]
    )
    gallery = [items[i] for i in picks]
    per_class = {
        "bottle": {k: 0.9 for k in KEYS} | {"pixel_ap": float("nan")},
        "cable": {k: 0.8 for k in KEYS},
        "mean": {k: 0.85 for k in KEYS},
    }
    curves = {}
    for cls in ("bottle", "cable"):
        sel = [it for it in items if it["cls"] == cls]
        curves[cls] = image_curves(
            np.array([it["label"] for it in sel]), np.array([it["score"] for it in sel])
        )
    path = write_html_report(
        tmp_path / "run", per_class, curves, gallery, title="Test <report>", info={"device": "cpu"}
    )
    return path, gallery


def _data_pngs(html: str) -> list[np.ndarray]:
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB")) for u in uris]


def test_report_is_self_contained(tmp_path: Path) -> None:
    path, gallery = _report(tmp_path)
    assert path == tmp_path / "run" / "report.html"
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "<link" not in html.lower()
    # The only URL is the SVG namespace, which is a name, not something fetched.
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    assert re.findall(r'src="([^"]{0,22})', html) == ["data:image/png;base64,"] * (1 + 4 * len(gallery))
    assert "Test &lt;report&gt;" in html  # user text is escaped
    assert html.count("<tr") >= 1 + 3  # metrics header + 2 classes + mean
    assert "n/a" in html and html.count("<polyline") == 4  # ROC and PR for two classes
    pngs = _data_pngs(html)
    assert pngs[1].shape[:2] == (128, 128)  # images under the thumbnail size are embedded as they are


def test_heat_maps_share_one_scale(tmp_path: Path) -> None:
    path, gallery = _report(tmp_path)
    pngs = _data_pngs(path.read_text(encoding="utf-8"))[1:]  # drop the colour bar
    heats = [pngs[4 * i + 2] for i in range(len(gallery))]
    anomalous = [h for h, it in zip(heats, gallery) if it["label"] == 1]
    normal = [h for h, it in zip(heats, gallery) if it["label"] == 0]
    assert anomalous and normal
    # The defect is at the top of the scale (red); a normal image's small noise stays blue. A per-image
    # min/max would stretch that noise to full red.
    for h in anomalous:
        y, x = h.shape[0] * 28 // 64, h.shape[1] * 28 // 64
        r, g, b = (int(c) for c in h[y, x])
        assert r > 100 and g < 60 and b < 60
    for h in normal:
        assert h[..., 0].max() < 40 and h[..., 2].min() > 100


def _have_chromium() -> str:
    """Path of chromium; installs the Debian package when absent and we are root, else fails loudly."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.geteuid() != 0:
        pytest.fail(
            "chromium is not installed and this user cannot apt-get it: run 'apt-get install -y chromium'"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900, env=env)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            pytest.fail(f"could not install chromium ({' '.join(cmd)} failed): {exc} {detail[-300:]}")
    exe = shutil.which("chromium")
    if not exe:
        pytest.fail("apt-get installed chromium but no 'chromium' executable is on PATH")
    return exe


@pytest.fixture(scope="session")
def chromium() -> str:
    return _have_chromium()


def test_report_renders_in_headless_chromium(tmp_path: Path, chromium: str) -> None:
    path, _ = _report(tmp_path)
    shot = tmp_path / "shot.png"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        path.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium wrote no screenshot (rc {proc.returncode}): {proc.stderr[-500:]}"
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)  # (H, W, 3)
    assert px.shape[:2] == (2000, 1200)
    gray = px.mean(axis=2)
    assert gray.std() > 20, "screenshot is blank"
    assert (gray > 245).mean() > 0.3, "page background is not white"

    # The metrics table: its header cells have a known background; inside their bounding box there is
    # dark text on that light background.
    header = np.abs(px - np.array(TABLE_HEADER_RGB)).max(axis=2) <= 4
    assert header.sum() > 2000, "no table header background found in the screenshot"
    ys, xs = np.nonzero(header)
    box = gray[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert (box > 200).mean() > 0.6, "table area is not light"
    assert (box < 90).sum() > 200, "no dark text in the table area"

    # Heat maps: the jet colours at both ends of the global scale.
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    strong_red = (r > 100) & (g < 40) & (b < 40)  # the hot end of jet is dark red
    strong_blue = (b > 110) & (r < 40) & (g < 40)  # the cold end of jet is dark blue
    assert strong_red.sum() > 5000, "no red heat-map pixels in the screenshot"
    assert strong_blue.sum() > 5000, "no blue heat-map pixels in the screenshot"
