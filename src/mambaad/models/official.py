"""Load checkpoints of the official MambaAD code (``net_t`` / ``mff_oce`` / ``net_s`` state dicts).

The official MVTec configuration is ResNet34, Hilbert scan, 8 directions, depths [3, 4, 6, 3]. Its
state dict names map onto ours by the renaming rules below; its scan-index tensors are checked
against our own orders (a mismatch would mean another scan) and then dropped.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from torch import Tensor

from mambaad.errors import CheckpointError
from mambaad.models.encoder import read_state_dict
from mambaad.models.mambaad import MambaAD
from mambaad.scan.orders import inverse_orders, scan_orders

# (official pattern, our replacement), applied in order to every key
RENAMES: list[tuple[str, str]] = [
    (r"^net_t\.", "encoder.body."),
    (r"^mff_oce\.bn_layer\.", "bottleneck.oce."),
    (r"^mff_oce\.conv1\.", "bottleneck.down1.conv."),
    (r"^mff_oce\.bn1\.", "bottleneck.down1.bn."),
    (r"^mff_oce\.conv21\.", "bottleneck.lateral2.conv."),
    (r"^mff_oce\.bn21\.", "bottleneck.lateral2.bn."),
    (r"^mff_oce\.conv2\.", "bottleneck.down2.conv."),
    (r"^mff_oce\.bn2\.", "bottleneck.down2.bn."),
    (r"^mff_oce\.conv31\.", "bottleneck.lateral3.conv."),
    (r"^mff_oce\.bn31\.", "bottleneck.lateral3.bn."),
    (r"^mff_oce\.convf\.", "bottleneck.fuse.conv."),
    (r"^mff_oce\.bnf\.", "bottleneck.fuse.bn."),
    (r"^net_s\.layers_up\.", "decoder.stages."),
    (r"\.smm_blocks\.", ".hss."),
    (r"\.ln_1\.", ".norm."),
    (r"\.self_attention\.", ".ss2d."),
    (r"\.conv1b5\.", ".local.0.pw_in."),
    (r"\.conv55\.", ".local.0.dw."),
    (r"\.conv1a5\.", ".local.0.pw_out."),
    (r"\.conv1b7\.", ".local.1.pw_in."),
    (r"\.conv77\.", ".local.1.dw."),
    (r"\.conv1a7\.", ".local.1.pw_out."),
    (r"\.finalconv11\.", ".fuse."),
]
SCAN_INDEX = re.compile(r"\.scans\.index_flat(_inv)?$")
# The inverse renaming; ``.norm.`` and ``.fuse.`` also name modules that keep their official names
# (PatchExpand's norm, the bottleneck's fuse), so their inverses are tied to the block they live in.
_CONTEXT_INVERSES: dict[str, tuple[str, str]] = {
    r"\.ln_1\.": (r"(\.hss\.\d+)\.norm\.", r"\1.ln_1."),
    r"\.finalconv11\.": (r"(\.blocks\.\d+)\.fuse\.", r"\1.finalconv11."),
}


def official_to_ours(name: str) -> str:
    """Rename one official state-dict key to this package's module layout."""
    for pattern, replacement in RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def ours_to_official(name: str) -> str:
    """The official state-dict key of one of our keys (the inverse of :func:`official_to_ours`)."""
    for pattern, replacement in reversed(RENAMES):
        if pattern in _CONTEXT_INVERSES:
            inv_pattern, inv_replacement = _CONTEXT_INVERSES[pattern]
        else:
            anchor = "^" if pattern.startswith("^") else ""
            inv_pattern = anchor + re.escape(replacement)
            inv_replacement = pattern.removeprefix("^").replace("\\", "")
        name = re.sub(inv_pattern, inv_replacement, name)
    return name


def official_state_dict(model: MambaAD) -> dict[str, Tensor]:
    """``model``'s weights under the official names (without the scan-index buffers).

    What :func:`load_official` reads back; it lets weights trained here be run by the official code
    and makes official-format test checkpoints.
    """
    out = {}
    for key, value in model.state_dict().items():
        name = ours_to_official(key)
        if official_to_ours(name) != key:  # a renaming rule without an exact inverse
            raise ValueError(f"no official name for {key!r} (got {name!r})")
        out[name] = value
    return out


def convert_official_state_dict(state: dict[str, Tensor], model: MambaAD) -> dict[str, Tensor]:
    """Rename keys, check the scan indices against ``model``'s orders, drop them."""
    converted = {}
    for key, value in state.items():
        if SCAN_INDEX.search(key):
            _check_scan_index(key, value, model)
            continue
        converted[official_to_ours(key)] = value
    return converted


def _check_scan_index(key: str, value: Tensor, model: MambaAD) -> None:
    side = math.isqrt(value.numel())
    base = scan_orders(model.config.scan, side, side, model.config.directions)[0]
    expected = inverse_orders(base[None])[0] if key.endswith("_inv") else base
    if value.flatten().long().tolist() != expected.tolist():
        raise CheckpointError(f"{key}: scan order differs from {model.config.scan!r} on a {side}x{side} grid")


def load_official(source: dict[str, Tensor] | str | Path, scan_backend: str = "auto") -> MambaAD:
    """Build the official MVTec configuration and load an official state dict (or ``.pth`` path).

    Returns the model in eval mode. Files are read with ``weights_only=True`` (no code is unpickled).
    """
    state = source if isinstance(source, dict) else read_state_dict(source)
    where = "" if isinstance(source, dict) else f"{source}: "  # errors name the file
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = MambaAD(encoder="resnet34", scan="hilbert", directions=8, scan_backend=scan_backend)
    try:
        converted = convert_official_state_dict(state, model)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}{exc}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise CheckpointError(
            f"{where}not an official MambaAD (MVTec configuration) state dict: {len(missing)} missing and "
            f"{len(unexpected)} unexpected tensors, e.g. {what}"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{where}official tensor for {key!r} has shape {tuple(value.shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in converted.items()})
    return model.eval()
