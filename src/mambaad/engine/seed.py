"""Seeding and RNG state capture, for reproducible runs and exact resumes.

A resumed run must draw the same random numbers as an uninterrupted one (drop-path masks come from
torch's global generator), so the states of Python's, NumPy's and torch's generators are saved with
every training-state checkpoint and restored on resume. Data order does not depend on these states:
it comes from :func:`epoch_generator`, a function of (seed, epoch) only.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh generator for the shuffling of ``epoch``: data order depends only on (seed, epoch)."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return g


def capture_rng_state() -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The global RNG states as (JSON-able values, tensors) for a checkpoint."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    info = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, np.asarray(np_keys).tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    return info, tensors


def restore_rng_state(info: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Undo :func:`capture_rng_state` (CUDA states are restored only on a machine with those devices)."""
    py_version, py_state, py_gauss = info["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    kind, keys, pos, has_gauss, gauss = info["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
