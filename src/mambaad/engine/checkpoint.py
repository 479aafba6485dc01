"""Checkpoints: safetensors weights plus JSON metadata, written atomically, read without unpickling.

A run folder holds ``checkpoints/last.safetensors`` and ``checkpoints/best.safetensors`` (the whole model
state, so a checkpoint stands alone without the encoder's ImageNet file) and
``checkpoints/last_state.safetensors`` (what resuming needs: model, optimizer tensors, RNG states). Each
file carries its metadata twice: in the safetensors header (authoritative, so weights and metadata can
never disagree) and in a sidecar ``.json`` for people and tools. Every write goes to a temporary file
that is then renamed over the target, so a kill at any moment leaves either the old or the new file,
never a truncated one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mambaad import __version__
from mambaad.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
FORMAT = "mambaad-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "mambaad"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_replace(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk, give it the usual permissions, and rename it over ``path`` (atomic)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates owner-only files
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    _fsync_replace(tmp, path)
    return path


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` to ``path`` (.safetensors) with ``meta`` in its header and in ``path.json``.

    Args:
        path: Target file; its folder is created.
        tensors: Flat name -> tensor dict (moved to CPU, made contiguous, shared storage copied).
        meta: JSON-able metadata; ``format`` and ``format_version`` are added.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    text = json.dumps(meta, indent=1, allow_nan=True)
    seen: set[int] = set()
    flat: dict[str, Tensor] = {}
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel() > 0:  # safetensors refuses tensors that share memory
            t = t.clone()
        seen.add(ptr)
        flat[name] = t
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(flat, str(tmp), metadata={_META_KEY: text})
    _fsync_replace(tmp, path)
    atomic_write_text(path.with_suffix(".json"), text + "\n")
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint file, read from its safetensors header only (no tensors loaded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        meta = json.loads(header[_META_KEY])
    except KeyError:
        raise CheckpointError(f"{path}: not a mambaad checkpoint (no metadata in its header)") from None
    except Exception as exc:  # truncated header, not safetensors at all, bad JSON
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a mambaad checkpoint (format {meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {meta['format_version']} is newer than this mambaad reads "
            f"({FORMAT_VERSION}); upgrade mambaad"
        )
    return meta


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors on CPU, metadata) of a checkpoint; truncation or corruption gives a CheckpointError."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__})") from None
    return tensors, meta


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the best (else last) checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        for cand in (checkpoint_dir(path) / "best.safetensors", checkpoint_dir(path) / "last.safetensors"):
            if cand.is_file():
                return cand
        raise CheckpointError(f"{path}: no checkpoints/best.safetensors or last.safetensors in this folder")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path


def weights_meta(
    config: dict[str, Any],
    model: nn.Module,
    classes: list[str],
    epoch: int,
    iteration: int,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata every weights checkpoint carries (``threshold`` is reserved for calibration)."""
    model_cfg = model.config_dict()
    return {
        "kind": "weights",
        "version": __version__,
        "model": model_cfg,
        "encoder": model_cfg.get("encoder"),
        "classes": list(classes),
        "config": config,
        "epoch": epoch,
        "iteration": iteration,
        "metrics": metrics or {},
        "threshold": None,
    }


def model_from_meta(meta: dict[str, Any], path: Path) -> nn.Module:
    """Build the model a checkpoint describes, with random weights (they are loaded next)."""
    from mambaad.models import create_model

    options = dict(meta.get("model") or {})
    name = options.pop("model", None)
    if not name:
        raise CheckpointError(f"{path}: checkpoint metadata names no model")
    return create_model(str(name), encoder_weights=None, **options)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint file or run folder; returns (model in eval mode, metadata)."""
    path = resolve_checkpoint(path)
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") not in ("weights", "train_state"):
        raise CheckpointError(f"{path}: unknown checkpoint kind {meta.get('kind')!r}")
    model = model_from_meta(meta, path)
    state = {
        k.removeprefix("model."): v
        for k, v in tensors.items()
        if meta["kind"] == "weights" or k.startswith("model.")
    }
    load_state(model, state, path)
    return model.to(device).eval(), meta


def load_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """``load_state_dict(strict=True)`` with a one-line CheckpointError on any mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise CheckpointError(
            f"{path}: weights do not fit the model ({what}, {len(missing)} missing, {len(extra)} extra)"
        )
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        raise CheckpointError(
            f"{path}: tensor {wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, model needs {tuple(own[wrong[0]].shape)}"
        )
    model.load_state_dict(state, strict=True)
