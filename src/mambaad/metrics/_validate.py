"""Turn user inputs (numpy arrays, torch tensors, lists) into checked numpy arrays.

Kept apart from the metric math so the pure functions can assume clean inputs: labels in {0, 1}, finite
float scores, boolean masks and float maps of the same (N, H, W) shape. Every problem is a one-line
:class:`~mambaad.errors.DataError` naming the argument and what is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from mambaad.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

    ArrayInput: TypeAlias = np.ndarray | torch.Tensor
else:
    ArrayInput: TypeAlias = Any

MODES = ("exact", "ader")


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Zero-copy view of a CPU tensor or array; GPU tensors are copied to the host, bf16/fp16 widened."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch.Tensor, without importing torch here
        t = x.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            return t.float().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: cannot be read as an array ({exc})") from None


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not a metrics mode; choose one of {', '.join(MODES)}")
    return mode


def check_labels(labels: Any) -> np.ndarray:
    """(N,) int8 array of 0/1; bools and 0./1. floats are accepted."""
    arr = to_numpy(labels, "labels")
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise DataError(f"labels: expected a non-empty 1-D array (N,), got shape {tuple(arr.shape)}")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if not (np.issubdtype(arr.dtype, np.number)) or np.any((arr != 0) & (arr != 1)):
        bad = np.unique(arr)[:5].tolist() if np.issubdtype(arr.dtype, np.number) else arr.dtype
        raise DataError(f"labels: must be 0 (normal) or 1 (anomalous), got values {bad}")
    return arr.astype(np.int8)


def check_scores(scores: Any, n: int) -> np.ndarray:
    """(N,) float64 image scores; NaN/inf would make every ranking metric meaningless."""
    arr = to_numpy(scores, "scores")
    if arr.shape != (n,):
        raise DataError(f"scores: expected shape ({n},) to match labels, got {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"scores: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"scores: contains {int(np.sum(~np.isfinite(arr)))} NaN or infinite value(s)")
    return arr


def check_masks(masks: Any, n: int) -> np.ndarray:
    """(N, H, W) bool. 0/1 integers or floats are converted; 0/255 PNG masks are refused with a hint."""
    arr = to_numpy(masks, "masks")
    if arr.ndim == 4 and arr.shape[1] == 1:  # (N, 1, H, W) as data loaders yield them
        arr = arr[:, 0]
    if arr.ndim != 3 or arr.shape[0] != n:
        raise DataError(f"masks: expected shape ({n}, H, W) to match labels, got {tuple(arr.shape)}")
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"masks: expected bool or 0/1 values, got dtype {arr.dtype}")
    if np.any((arr != 0) & (arr != 1)):
        raise DataError(f"masks: values must be 0/1 or bool, got max {arr.max()}; binarize first (mask > 0)")
    return arr.astype(bool)


def check_maps(maps: Any, shape: tuple[int, ...]) -> np.ndarray:
    """(N, H, W) float32 or float64 maps (other dtypes widened). Finiteness is checked after sorting."""
    arr = to_numpy(maps, "maps")
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != shape:
        raise DataError(f"maps: shape {tuple(arr.shape)} does not match masks shape {shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"maps: expected real numbers, got dtype {arr.dtype}")
    if arr.dtype in (np.float32, np.float64):
        return arr
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    return arr.astype(np.float64)


def check_pixel_pair(masks: Any, maps: Any, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both or neither: a mask without a map (or the reverse) is almost surely a caller mistake."""
    if masks is None and maps is None:
        return None, None
    if masks is None or maps is None:
        missing = "masks" if masks is None else "maps"
        raise DataError(f"{missing}: is None while the other pixel input is given; pass both or neither")
    m = check_masks(masks, n)
    return m, check_maps(maps, m.shape)


def check_finite_sorted(sorted_vals: np.ndarray, name: str) -> None:
    """NaN sorts last and -inf/inf sit at the ends, so two reads check a sorted array for non-finite values."""
    if sorted_vals.size and not (np.isfinite(sorted_vals[0]) and np.isfinite(sorted_vals[-1])):
        raise DataError(f"{name}: contains NaN or infinite values")
