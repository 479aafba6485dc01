"""ONNX export of a :class:`~mambaad.deploy.graph.DeployedModel`: one graph, RGB in, map/score/decision out.

The graph takes ``image``: (B, 3, S, S) RGB at the model's input size, uint8 (default) or float32 in
[0, 255]; resizing an arbitrary photo to S x S stays outside (``mambaad predict`` does it with the same
PIL resize as training). It returns ``map`` (B, S, S) float32, the smoothed anomaly map; ``score`` (B,)
float32; ``anomalous`` (B,) bool, score > the stored threshold (always False without one). The
calibration (threshold, normalisation statistics) and the input geometry travel in the model's
metadata (``metadata_props``) so ``mambaad predict model.onnx`` needs nothing else.

Export uses the TorchScript tracer (``dynamo=False``), with the ``chunked`` selective scan (a loop over
chunks, none over positions, so the traced graph stays small). The model code itself traces cleanly:
the hybrid scan freezes its orders into constant index tensors for the traced grid sizes and the scan
splits time with explicit piece lengths (:func:`mambaad.scan.selective_scan.piece_sizes`), so nothing is
patched here.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mambaad.deploy.graph import DeployedModel
from mambaad.errors import ConfigError

DEFAULT_OPSET = 17
OUTPUT_NAMES = ["map", "score", "anomalous"]
METADATA_KEY = "mambaad"
EXPORT_BACKEND = "chunked"


@contextlib.contextmanager
def scan_backend(model: nn.Module, backend: str) -> Iterator[None]:
    """Temporarily switch every SS2D layer of ``model`` to ``backend``."""
    layers = [m for m in model.modules() if hasattr(m, "backend") and hasattr(m, "d_state")]
    before = [m.backend for m in layers]
    for m in layers:
        m.backend = backend
    try:
        yield
    finally:
        for m, b in zip(layers, before):
            m.backend = b


def export_onnx(
    deployed: DeployedModel,
    out: str | Path,
    size: int,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    input_dtype: str = "uint8",
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Trace ``deployed`` at (1, 3, size, size) into ``out`` and attach ``metadata`` as JSON.

    The graph is written beside ``out`` and moved over it once whole: a failed export leaves an earlier file
    at ``out`` as it was.

    Args:
        deployed: The end-to-end module (CPU, eval mode).
        out: Target ``.onnx`` file (its folder is created).
        size: Input side S (the model's crop size).
        opset: ONNX opset (>= 14).
        dynamic_batch: Leave the batch dimension free (else the graph takes batch 1 only).
        input_dtype: ``uint8`` or ``float32`` (values in [0, 255] either way).
        metadata: JSON-able dict stored under the ``mambaad`` metadata key.
    """
    if input_dtype not in ("uint8", "float32"):
        raise ConfigError(f"--input-dtype must be uint8 or float32, got {input_dtype!r}")
    if opset < 14:
        raise ConfigError(f"--opset must be >= 14, got {opset}")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give the model's file name (e.g. {out / 'model.onnx'})")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    meta = {
        **(metadata or {}),
        "input_size": size,
        "input_dtype": input_dtype,
        "dynamic_batch": dynamic_batch,
    }
    try:
        _write_onnx(deployed, partial, size, opset, dynamic_batch, input_dtype, meta)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def _write_onnx(
    deployed: DeployedModel,
    path: Path,
    size: int,
    opset: int,
    dynamic_batch: bool,
    input_dtype: str,
    meta: dict[str, Any],
) -> None:
    """Trace ``deployed`` into ``path`` (the ``chunked`` scan) and store ``meta`` under the metadata key."""
    import onnx

    dtype = torch.uint8 if input_dtype == "uint8" else torch.float32
    example = torch.zeros(1, 3, size, size, dtype=dtype)
    axes = {n: {0: "batch"} for n in ["image", *OUTPUT_NAMES]} if dynamic_batch else None
    deployed = deployed.cpu().eval()
    with (
        scan_backend(deployed, EXPORT_BACKEND),
        torch.no_grad(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # tracer warnings about shapes turned into constants
        torch.onnx.export(
            deployed,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=OUTPUT_NAMES,
            dynamic_axes=axes,
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(proto, str(path))


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The ``mambaad`` metadata of an exported model ({} for a foreign ONNX file)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return dict(json.loads(entry.value))
    return {}
