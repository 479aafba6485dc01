"""``mambaad predict``: score images with a checkpoint, an official ``.pth`` or an exported ``.onnx``.

Every source becomes a :class:`Predictor`: the input geometry, the calibration (or none), and a
function from a (B, S, S, 3) uint8 batch to (maps, scores). Images are read and resized exactly as in
training (PIL bilinear to ``data.image_size``, centre crop to ``data.crop_size``). A file that cannot
be read is reported through ``on_error`` and skipped; the run goes on.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mambaad.data.sample import IMAGE_EXTS
from mambaad.deploy.calibrate import select_threshold
from mambaad.deploy.graph import DeployedModel
from mambaad.engine.evaluator import autocast_context
from mambaad.engine.step import matmul_tf32
from mambaad.errors import CheckpointError, ConfigError, MambaADError

OFFICIAL_SIZE = 256  # the official MVTec recipe: 256 px, no crop


@dataclass
class Predictor:
    """A loaded model ready to score uint8 RGB batches."""

    name: str
    image_size: int  # resize side
    crop_size: int  # network input side S
    threshold: dict[str, Any] | None  # the calibration dict (``image``, ``pixel``, stats), or None
    run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # (B, S, S, 3) uint8 -> (B, S, S), (B,)
    max_batch: int | None = None  # a graph exported without --dynamic-batch takes batch 1 only


def deployed_from_checkpoint(
    checkpoint: str | Path, device: str | torch.device = "cpu", threshold_kind: str = "fpr"
) -> tuple[DeployedModel, dict[str, Any]]:
    """(end-to-end module, info) of a run folder, ``.safetensors`` or official ``.pth`` checkpoint.

    ``info`` holds ``image_size``, ``crop_size`` and ``threshold`` (the calibration dict or None), with
    the ``threshold_kind`` image threshold (``fpr`` | ``f1``, see :func:`select_threshold`) in use.
    """
    path = Path(checkpoint)
    if path.suffix == ".pth":
        from mambaad.models.official import load_official

        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found")
        model = load_official(path).to(device)
        threshold = select_threshold(None, threshold_kind, str(path))
        info = {"image_size": OFFICIAL_SIZE, "crop_size": OFFICIAL_SIZE, "threshold": threshold}
        return DeployedModel(model).to(device), info
    from mambaad.engine.checkpoint import load_model

    model, meta = load_model(path, device)
    cfg = meta.get("config") or {}
    data, ev = cfg.get("data") or {}, cfg.get("eval") or {}
    threshold = select_threshold(meta.get("threshold"), threshold_kind, str(path))
    deployed = DeployedModel(
        model,
        score=ev.get("score", "max"),
        topk=ev.get("topk"),
        threshold=threshold["image"] if threshold else None,
    ).to(device)
    size = int(data.get("image_size", 256))
    info = {"image_size": size, "crop_size": int(data.get("crop_size", size)), "threshold": threshold}
    return deployed, info


def _torch_predictor(
    path: Path, device: torch.device, threshold_kind: str, tf32: bool, bf16: bool
) -> Predictor:
    deployed, info = deployed_from_checkpoint(path, device, threshold_kind)

    @torch.no_grad()
    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)  # (B, 3, S, S) uint8
        with matmul_tf32(tf32), autocast_context(device, bf16):
            maps, scores, _ = deployed(x)
        return maps.float().cpu().numpy(), scores.float().cpu().numpy()

    return Predictor(str(path), info["image_size"], info["crop_size"], info["threshold"], run)


def _onnx_predictor(path: Path, device: torch.device, threshold_kind: str) -> Predictor:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MambaADError("running an .onnx model needs onnxruntime (pip install onnxruntime)") from None
    from mambaad.deploy.export import read_onnx_metadata

    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        meta = read_onnx_metadata(path)
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    if "input_size" not in meta:
        raise CheckpointError(f"{path}: not exported by mambaad (no 'mambaad' metadata)")
    dtype = np.uint8 if meta.get("input_dtype", "uint8") == "uint8" else np.float32

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(dtype)  # (B, 3, S, S)
        maps, scores, _ = session.run(None, {"image": x})
        return maps, scores

    size = int(meta["input_size"])
    return Predictor(
        str(path),
        int(meta.get("image_size", size)),
        size,
        select_threshold(meta.get("threshold"), threshold_kind, str(path)),
        run,
        None if meta.get("dynamic_batch") else 1,
    )


def load_predictor(
    checkpoint: str | Path,
    device: str | torch.device = "cpu",
    threshold_kind: str = "fpr",
    tf32: bool = False,
    bf16: bool = False,
) -> Predictor:
    """A :class:`Predictor` for a run folder, ``.safetensors``, official ``.pth`` or exported ``.onnx``.

    ``threshold_kind``: ``fpr`` decides with the threshold calibrated for ``eval.target_fpr``, ``f1``
    with the F1-optimal one of the labelled validation set (``data.val_root``; a ConfigError if absent).
    ``tf32`` / ``bf16`` (PyTorch models on CUDA; no-ops on the CPU): fp32 matrix products on TF32 tensor
    cores, as ``eval.tf32``; bf16 autocast, as ``eval.bf16``.
    """
    path, device = Path(checkpoint), torch.device(device)
    if path.suffix == ".onnx":
        for name, on in (("--tf32", tf32), ("--bf16", bf16)):
            if on:
                raise ConfigError(
                    f"{name}: {path} runs in onnxruntime; the option is for PyTorch checkpoints"
                )
        return _onnx_predictor(path, device, threshold_kind)
    return _torch_predictor(path, device, threshold_kind, tf32, bf16)


def with_threshold(predictor: Predictor, value: float) -> Predictor:
    """``--threshold X``: X decides images and marks mask pixels; stored statistics are kept."""
    base = dict(predictor.threshold or {})
    base.update(image=float(value), pixel=float(value), source="--threshold")
    predictor.threshold = base
    return predictor


def expand_inputs(inputs: Sequence[str], on_error: Callable[[str], None]) -> list[Path]:
    """Image files from files, folders (recursive, image suffixes only) and glob patterns, in order.

    An input that names nothing is reported through ``on_error``. Duplicates are dropped.
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        if p not in seen:
            seen.add(p)
            out.append(p)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
            if not found:
                on_error(f"{p}: folder holds no images ({', '.join(IMAGE_EXTS)})")
            for f in found:
                add(f)
        elif p.is_file():
            add(p)  # any suffix: the reader decides and reports
        elif glob.has_magic(item):
            found = sorted(Path(f) for f in glob.glob(item, recursive=True) if Path(f).is_file())
            if not found:
                on_error(f"{item}: pattern matches no file")
            for f in found:
                add(f)
        else:
            on_error(f"{p}: no such file or folder")
    return out


def _read(path: Path, image_size: int, crop_size: int) -> np.ndarray:
    """(S, S, 3) uint8 RGB as the network sees it (training's resize and crop)."""
    from mambaad.data.imageio import load_rgb
    from mambaad.data.transforms import resize_crop

    return np.asarray(resize_crop(load_rgb(path), image_size, crop_size), dtype=np.uint8)


def _batches(
    paths: Sequence[Path], predictor: Predictor, batch_size: int, on_error: Callable[[str], None]
) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Readable images in batches; unreadable ones reported and skipped."""
    size = min(batch_size, predictor.max_batch or batch_size)
    done, images = [], []
    for p in paths:
        try:
            images.append(_read(p, predictor.image_size, predictor.crop_size))
            done.append(p)
        except MambaADError as exc:
            on_error(str(exc))
            continue
        if len(done) == size:
            yield done, np.stack(images)
            done, images = [], []
    if done:
        yield done, np.stack(images)


def _unique_png(folder: Path, stem: str, used: set[str]) -> Path:
    name, i = f"{stem}.png", 2
    while name in used:
        name, i = f"{stem}-{i}.png", i + 1
    used.add(name)
    return folder / name


def _heat_scale(amap: np.ndarray, threshold: dict[str, Any] | None) -> tuple[np.ndarray, float, float]:
    """The map on a fixed scale when calibrated (0 = median normal, 2 = twice the threshold margin)."""
    if threshold and "normal_pixel_stats" in threshold:
        from mambaad.deploy.calibrate import normalize_maps

        return normalize_maps(amap, threshold), 0.0, 2.0
    return amap, float(amap.min()), float(amap.max())  # uncalibrated: per-image scale


def predict_paths(
    predictor: Predictor,
    paths: Sequence[Path],
    batch_size: int = 8,
    overlay_dir: Path | None = None,
    mask_dir: Path | None = None,
    on_error: Callable[[str], None] = print,
) -> Iterator[dict[str, Any]]:
    """Score ``paths``; yields one JSON-able record per readable image.

    Record keys: ``path``, ``score``, ``threshold`` (None when uncalibrated), ``anomalous`` (None then),
    ``normalized_score`` (calibrated checkpoints only: 0 median normal, 1 threshold), ``overlay`` /
    ``mask`` (written PNG paths, when asked; a mask needs a threshold).
    """
    from PIL import Image

    from mambaad.deploy.calibrate import normalize_scores
    from mambaad.report.images import colorize, overlay

    thr = predictor.threshold
    used_overlay: set[str] = set()
    used_mask: set[str] = set()
    for kind, dir_ in (("overlay", overlay_dir), ("mask", mask_dir)):
        if dir_ is not None:
            try:
                dir_.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file of that name, no permission
                raise ConfigError(f"{kind} folder {dir_}: cannot create it ({exc.strerror})") from None
    for batch_paths, images in _batches(paths, predictor, batch_size, on_error):
        maps, scores = predictor.run(images)  # (B, S, S), (B,)
        for p, img, amap, score in zip(batch_paths, images, maps, scores):
            rec: dict[str, Any] = {"path": str(p), "score": float(score)}
            rec["threshold"] = None if thr is None else float(thr["image"])
            rec["anomalous"] = None if thr is None else bool(score > thr["image"])
            if thr and "normal_score_stats" in thr:
                rec["normalized_score"] = float(normalize_scores(np.array([score]), thr)[0])
            if overlay_dir is not None:
                heat, lo, hi = _heat_scale(amap, thr)
                out = _unique_png(overlay_dir, p.stem, used_overlay)
                Image.fromarray(overlay(img, colorize(heat, lo, hi))).save(out)
                rec["overlay"] = str(out)
            if mask_dir is not None and thr is not None:
                out = _unique_png(mask_dir, p.stem, used_mask)
                Image.fromarray((amap > thr["pixel"]).astype(np.uint8) * 255).save(out)
                rec["mask"] = str(out)
            yield rec
