"""Typed run configuration: dataclasses, YAML files and dotted command-line overrides.

One :class:`RunConfig` holds everything a run needs, in four sections (``model``, ``data``, ``train``,
``eval``) plus the output folder. Values come, in order, from the dataclass defaults, a YAML file (which may
inherit from another one with ``base: other.yaml``), and dotted overrides such as ``train.epochs=50``.
Every value is checked against the field's type hint, so a typo or a wrong type fails at start-up with a
one-line :class:`~mambaad.errors.ConfigError` instead of deep inside training. The resolved config is a
plain dict via :func:`config_to_dict`, which checkpoints store and :func:`config_from_dict` rebuilds.

Example:
    >>> cfg = load_config(None, ["train.epochs=50", "data.root=a,b"])
    >>> cfg.train.epochs, cfg.data.root
    (50, ['a', 'b'])
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mambaad.errors import ConfigError

__all__ = [
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_yaml",
    "load_config",
    "scaled_lr",
    "split_dotted_args",
]

BASE_LR = 0.005  # official AdamW learning rate for a batch of BASE_BATCH_SIZE
BASE_BATCH_SIZE = 16
OPTIMIZERS = ("adamw", "adam", "sgd")
DDP_COMM_HOOKS = ("none", "bf16", "fp16")
DDP_SYNC_BN = ("allreduce", "torch")
LSS_BRANCHES = ("both", "hss", "conv")


def _check(ok: bool, key: str, what: str, value: Any) -> None:
    """Raise a ConfigError naming the dotted key when a range check fails."""
    if not ok:
        raise ConfigError(f"{key} {what}, got {value!r}")


@dataclass
class ModelConfig:
    """Architecture of the MambaAD network (spec §2-§5)."""

    model: str = "mambaad"
    encoder: str = "resnet34"
    encoder_weights: str | None = "imagenet"  # None (random) | "imagenet" | path to a weights file
    scan: str = "hilbert"
    directions: int = 8  # K scan directions per HSS block
    distinct_directions: bool = False
    depths: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    d_state: int = 16  # N in the SSM
    expand: int = 2  # E: inner width = E * channels
    drop_path_rate: float = 0.2
    lss_branches: str = "both"  # LSS parts: both | hss (global scans only) | conv (local convolutions only)
    local_kernels: list[int] = field(
        default_factory=lambda: [5, 7]
    )  # depthwise kernels of the local branches
    scan_backend: str = "auto"
    # options of the chosen model's builder beyond the fields above, e.g. {noise_std: 0.05} for simplenet
    # (each baseline's Config dataclass lists them); command line: --model.options.noise_std 0.05
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.directions > 0, "model.directions", "must be > 0", self.directions)
        _check(self.d_state > 0, "model.d_state", "must be > 0", self.d_state)
        _check(self.expand > 0, "model.expand", "must be > 0", self.expand)
        _check(
            len(self.depths) == 4, "model.depths", "must list 4 stage depths (deep to shallow)", self.depths
        )
        _check(
            self.lss_branches in LSS_BRANCHES,
            "model.lss_branches",
            f"must be one of {', '.join(LSS_BRANCHES)}",
            self.lss_branches,
        )
        _check(
            all(k > 0 and k % 2 == 1 for k in self.local_kernels),
            "model.local_kernels",
            "must be odd sizes > 0",
            self.local_kernels,
        )
        _check(
            self.lss_branches != "conv" or len(self.local_kernels) > 0,
            "model.local_kernels",
            "must name at least one kernel when model.lss_branches is conv",
            self.local_kernels,
        )
        _check(all(d >= 0 for d in self.depths), "model.depths", "must be >= 0", self.depths)
        _check(
            0.0 <= self.drop_path_rate < 1.0, "model.drop_path_rate", "must be in [0, 1)", self.drop_path_rate
        )


@dataclass
class DataConfig:
    """Where the images are and how they are resized (spec §7: 256 px resize, 256 px centre crop)."""

    root: list[str] = field(default_factory=list)  # one or several data set roots
    format: str | None = None  # None: detect the layout from the folder
    classes: list[str] | None = None  # None: every class found
    image_size: int = 256
    crop_size: int = 256
    num_workers: int = 4
    # Keep the training images decoded and resized in memory (uint8), decoding each file once instead of
    # every epoch: null (default) = when they take at most a quarter of the RAM, true / false = always /
    # never (mambaad.data.dataset.should_cache).
    cache_images: bool | None = None
    holdout_fraction: float = 0.0  # normal train images held out for threshold calibration
    # A labelled validation set (normal and anomalous images, labels from its layout, every split) for
    # the F1-optimal image threshold stored next to the FPR one; None: no F1 threshold.
    val_root: str | None = None
    val_format: str | None = None  # layout of data.val_root; None: detect it

    def __post_init__(self) -> None:
        _check(self.image_size > 0, "data.image_size", "must be > 0", self.image_size)
        _check(
            0 < self.crop_size <= self.image_size,
            "data.crop_size",
            "must be in (0, data.image_size]",
            self.crop_size,
        )
        _check(self.num_workers >= 0, "data.num_workers", "must be >= 0", self.num_workers)
        _check(
            0.0 <= self.holdout_fraction < 1.0,
            "data.holdout_fraction",
            "must be in [0, 1)",
            self.holdout_fraction,
        )
        _check(
            self.val_format is None or self.val_root is not None,
            "data.val_format",
            "is only used with data.val_root",
            self.val_format,
        )


@dataclass
class TrainConfig:
    """Optimiser and schedule (spec §7: AdamW 5e-3, wd 1e-4, x0.1 at 80 % of the epochs, clip 5).

    The defaults are MambaAD's recipe; other models' recipes (``RECIPE`` in each model module,
    ``configs/<model>.yaml``) set ``optimizer``, ``lr``, ``betas``/``momentum``, ``weight_decay``, the schedule
    and ``grad_clip``. Per-part learning rates come from the model's ``param_groups`` as ratios of ``lr``.

    The ``ddp_*`` fields tune ``DistributedDataParallel`` for multi-GPU runs (ignored on one process);
    they change speed and memory, not the result, except ``ddp_comm_hook`` which all-reduces rounded
    gradients. Sweep them with ``benchmarks/bench_ddp.py --variants`` (docs/benchmarks.md, "Multi-GPU").
    """

    epochs: int = 100
    batch_size: int = 16
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float | None = None  # None: the spec's rule 0.005 x batch_size / 16 (see base_lr)
    weight_decay: float = 1e-4  # MambaAD: not applied to 1-D tensors and biases
    betas: tuple[float, float] = (0.9, 0.999)  # adam / adamw
    momentum: float = 0.9  # sgd
    lr_decay_at: float = 0.8  # fraction of the epochs after which lr is multiplied by lr_decay
    lr_decay: float = 0.1
    grad_clip: float = 5.0  # global L2 norm; 0 disables
    seed: int = 42
    eval_every: int = 0  # epochs between evaluations; 0 = only at the end
    bf16: bool = False
    channels_last: bool = False
    # Capture the whole training step (forward, backward with DDP's all-reduce, clip, fused AdamW) in a
    # CUDA graph after a few eager steps and replay it (mambaad.engine.step): null (default) = on where it
    # works (mambaad on CUDA), true = required (an error elsewhere), false = off. On 2 H200s it took DDP
    # from 1.44x to 1.95x the 1-GPU speed (docs/benchmarks.md, "Multi-GPU").
    cuda_graph: bool | None = None
    # fp32 matrix products of the training step on TF32 tensor cores (10-bit mantissa inputs, fp32 sums);
    # evaluation keeps full fp32. ~10 % faster on an H200; off by default: image AUROC moved by up to 0.84
    # points against fp32 runs (within their seed-to-seed spread, not within 0.2; docs/benchmarks.md).
    tf32: bool = False
    # torch.compile the model's forward (the fused scan kernels stay as they are; inductor fuses the rest):
    # the first steps compile for a minute or two, then training ran 11-15 % faster on an H200
    # (docs/benchmarks.md, sessions 7-8). Off by default: compiling costs more than it saves in short runs.
    # The run's own evaluations then use the compiled forward too, whatever eval.compile says.
    compile: bool = False
    tensorboard: bool = False
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    # DistributedDataParallel settings (only used under torchrun / --gpus N; the defaults are PyTorch's).
    # Gradient bucket size in MiB: larger buckets mean fewer, larger all-reduces; 25 is PyTorch's default
    # (with its small 1 MiB first bucket), any other value sizes every bucket, the first one included.
    ddp_bucket_mb: float = 25.0
    # Compress gradients to bf16 / fp16 for the all-reduce (half the bytes; averaged in that precision,
    # then written back as fp32): "none" | "bf16" | "fp16".
    ddp_comm_hook: str = "none"
    # The same parameters get gradients in the same order every step: DDP may skip its per-step
    # graph search and reorder buckets once after the first step.
    ddp_static_graph: bool = False
    # Gradients become views into DDP's all-reduce buckets (no copy into the bucket, less memory).
    ddp_gradient_as_bucket_view: bool = False
    # Re-broadcast rank 0's buffers (BatchNorm statistics) before every forward. Off is safe here: the
    # frozen encoder's buffers never change and SyncBatchNorm keeps the trainable ones equal.
    ddp_broadcast_buffers: bool = True
    # Copy a bucket's gradients with one batched kernel instead of one per parameter (PyTorch >= 2.14).
    ddp_batched_grad_copy: bool = False
    # Synchronised BatchNorm of the trainable layers: "torch" (nn.SyncBatchNorm on CUDA, the official
    # recipe's; on other devices the "allreduce" one, the only one gloo runs) or "allreduce" (ours: one
    # differentiable all-reduce of the per-channel sums, no host synchronisation, but more small kernels:
    # on 2 H200s it trained at 240 img/s against nn.SyncBatchNorm's 305, docs/benchmarks.md).
    ddp_sync_bn: str = "torch"

    def __post_init__(self) -> None:
        _check(self.epochs > 0, "train.epochs", "must be > 0", self.epochs)
        _check(self.batch_size > 0, "train.batch_size", "must be > 0", self.batch_size)
        _check(
            self.optimizer in OPTIMIZERS,
            "train.optimizer",
            f"must be one of {', '.join(OPTIMIZERS)}",
            self.optimizer,
        )
        _check(self.lr is None or self.lr > 0, "train.lr", "must be > 0 or null (scaled)", self.lr)
        _check(0.0 <= self.momentum < 1.0, "train.momentum", "must be in [0, 1)", self.momentum)
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0", self.weight_decay)
        _check(all(0.0 <= b < 1.0 for b in self.betas), "train.betas", "must both be in [0, 1)", self.betas)
        _check(0.0 < self.lr_decay_at <= 1.0, "train.lr_decay_at", "must be in (0, 1]", self.lr_decay_at)
        _check(0.0 < self.lr_decay <= 1.0, "train.lr_decay", "must be in (0, 1]", self.lr_decay)
        _check(self.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables clipping)", self.grad_clip)
        _check(
            self.eval_every >= 0, "train.eval_every", "must be >= 0 (0 = only at the end)", self.eval_every
        )
        _check(
            0 < self.ddp_bucket_mb < math.inf,
            "train.ddp_bucket_mb",
            "must be a finite number > 0 (MiB)",
            self.ddp_bucket_mb,
        )
        _check(
            self.ddp_comm_hook in DDP_COMM_HOOKS,
            "train.ddp_comm_hook",
            f"must be one of {', '.join(DDP_COMM_HOOKS)}",
            self.ddp_comm_hook,
        )
        _check(
            self.ddp_sync_bn in DDP_SYNC_BN,
            "train.ddp_sync_bn",
            f"must be one of {', '.join(DDP_SYNC_BN)}",
            self.ddp_sync_bn,
        )

    @property
    def base_lr(self) -> float:
        """The learning rate in use: ``lr`` when set, else 0.005 x the global batch / 16 (spec §7).

        Kept unresolved in the config so that ``--batch-size 64`` alone rescales it (4 GPUs x 16 images
        train at 0.02 like the official multi-GPU recipe), while an explicit ``train.lr`` always wins.
        """
        return self.lr if self.lr is not None else scaled_lr(self.batch_size)


@dataclass
class EvalConfig:
    """How anomaly maps become scores and metrics (spec §6.3, §8)."""

    metric_mode: str = "exact"  # "exact" metrics, or the paper's "ader" approximations
    gaussian_sigma: float = 4.0  # smoothing of the anomaly map; 0 disables
    score: str = "max"  # image score from the map: "max" | "mean" | "topk"
    topk: int | None = None  # pixels averaged when score == "topk"
    target_fpr: float = 0.01  # false-positive rate on held-out normals for the calibrated threshold
    # fp32 matrix products of evaluation on TF32 tensor cores (CUDA; 10-bit mantissa inputs, fp32 sums):
    # faster inference, anomaly maps no longer within 1e-4 of the fp32 path (docs/benchmarks.md, session 6)
    tf32: bool = False
    # torch.compile the model's forward for evaluation (as train.compile; fp32 maps within 1e-6 of eager)
    compile: bool = False
    # bf16 autocast for evaluation (CUDA): null (default) = as train.bf16. With tf32 and compile the fastest
    # inference on an H200 (1,574 img/s at batch 16, 1,442 with TF32 alone; docs/benchmarks.md, session 15)
    bf16: bool | None = None

    def __post_init__(self) -> None:
        _check(self.gaussian_sigma >= 0, "eval.gaussian_sigma", "must be >= 0", self.gaussian_sigma)
        _check(self.topk is None or self.topk > 0, "eval.topk", "must be > 0 or null", self.topk)
        _check(0.0 < self.target_fpr < 1.0, "eval.target_fpr", "must be in (0, 1)", self.target_fpr)


@dataclass
class RunConfig:
    """Everything one run needs; stored resolved in every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    out: str = "runs/latest"

    @property
    def eval_bf16(self) -> bool:
        """Whether evaluation runs under bf16 autocast: ``eval.bf16``, or ``train.bf16`` when that is null."""
        return self.train.bf16 if self.eval.bf16 is None else self.eval.bf16


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
_TOP_LEVEL = ("out",)  # scalar keys of RunConfig itself
_BASE_KEY = "base"  # YAML-only: inherit from another file, relative to this one


def scaled_lr(batch_size: int, base_lr: float = BASE_LR, base_batch_size: int = BASE_BATCH_SIZE) -> float:
    """Learning rate for ``batch_size`` under the linear scaling rule of the official recipe.

    The released configs write lr as ``0.005 * batch_size / 16``, so a different batch keeps the same
    per-sample step size.

    >>> scaled_lr(32)
    0.01
    """
    if batch_size <= 0:
        raise ConfigError(f"train.batch_size must be > 0, got {batch_size!r}")
    return base_lr * batch_size / base_batch_size


# --------------------------------------------------------------------------------------------- schema


def _field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass (the module uses postponed annotations)."""
    return typing.get_type_hints(cls)


def _all_keys() -> list[str]:
    """Every valid dotted key, e.g. ``train.epochs``; used for suggestions."""
    keys = [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)]
    return keys + list(_TOP_LEVEL)


def _suggest(key: str) -> str:
    """A ' (did you mean ...?)' suffix for an unknown dotted key, or ''."""
    candidates = _all_keys()
    leaf = key.rsplit(".", 1)[-1]
    leaves = {c: c.rsplit(".", 1)[-1] for c in candidates}
    close = [c for c, lf in leaves.items() if lf == leaf]  # right name, wrong section
    close = close or difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:  # typo in the leaf and a wrong or missing section
        near = difflib.get_close_matches(leaf, list(leaves.values()), n=1, cutoff=0.6)
        close = [c for c, lf in leaves.items() if near and lf == near[0]]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown(key: str, source: str) -> ConfigError:
    return ConfigError(f"unknown config key '{key}' in {source}{_suggest(key)}")


# ------------------------------------------------------------------------------------------- coercion

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to the type hint ``tp``.

    Strings are parsed for every target type, so ``"50"`` from the command line and ``5e-3`` (which PyYAML
    reads as a string) both work. Raises ConfigError naming the key and the source otherwise.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(value, a, key, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    bad = ConfigError(f"{key} in {source} must be {_type_name(tp)}, got {value!r}")
    if value is None:
        raise ConfigError(f"{key} in {source} must be {_type_name(tp)}, got null")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    f = float(value.strip())
                except ValueError:
                    raise bad from None
                if f.is_integer():
                    return int(f)
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, Path):
            return str(value)
        raise bad
    if tp is dict or origin is dict:
        if isinstance(value, str):  # from the command line: "{noise_std: 0.05}"
            value = _yaml_scalar(value, key, source)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} in {source} must be a mapping of names to values, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if origin in (list, tuple):
        items = _as_items(value, key, source, bad)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"{key} in {source} must have {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, key, source) for v, a in zip(items, args))
        elem = args[0] if args else Any
        out = [v if elem is Any else _coerce(v, elem, key, source) for v in items]
        return tuple(out) if origin is tuple else out
    raise TypeError(f"unsupported config field type {tp!r} for {key}")  # programming error


def _as_items(value: Any, key: str, source: str, bad: ConfigError) -> list[Any]:
    """List items from a YAML list, a ``"[a, b]"`` string, a ``"a,b"`` string or a single scalar."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                raise ConfigError(f"{key} in {source}: cannot parse list {value!r}") from None
            if not isinstance(parsed, list):
                raise bad
            return parsed
        return [] if text == "" else [p.strip() for p in text.split(",")]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    raise bad


# ------------------------------------------------------------------------------------- dict <-> config


def _section_from_dict(name: str, cls: type, values: Any, source: str, strict: bool) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"section '{name}' in {source} must be a mapping of keys to values, got {values!r}")
    hints = _field_types(cls)
    kwargs = {}
    for k, v in values.items():
        if k not in hints:
            if strict:
                raise _unknown(f"{name}.{k}", source)
            continue
        kwargs[k] = _coerce(v, hints[k], f"{name}.{k}", source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {source})") from None


def _from_dict(d: Mapping[str, Any], source: str, strict: bool = True) -> RunConfig:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source} must hold a mapping of sections, got {type(d).__name__}")
    sections: dict[str, Any] = {}
    top: dict[str, Any] = {}
    hints = _field_types(RunConfig)
    for k, v in d.items():
        if k in _SECTIONS:
            sections[k] = _section_from_dict(k, _SECTIONS[k], v if v is not None else {}, source, strict)
        elif k in _TOP_LEVEL:
            top[k] = _coerce(v, hints[k], k, source)
        elif strict:
            raise _unknown(str(k), source)
    return RunConfig(**sections, **top)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict of ``cfg`` (lists instead of tuples), safe for YAML, JSON and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def config_from_dict(d: Mapping[str, Any], strict: bool = True) -> RunConfig:
    """Rebuild a RunConfig from :func:`config_to_dict` output (e.g. stored in a checkpoint).

    Missing keys take their defaults. With ``strict=False`` unknown keys are ignored, so a checkpoint
    written by a newer version with extra options still loads.
    """
    return _from_dict(d, "config dict", strict=strict)


# ------------------------------------------------------------------------------------------------ YAML


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read one YAML file and, recursively, the files it names with ``base:``."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"config {path}: 'base' inheritance loops ({cycle})")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config {path} is not valid YAML: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping of sections, got {type(data).__name__}")
    base = data.pop(_BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"config {path}: 'base' must be a file name, got {base!r}")
    parent = _read_yaml(path.parent / base, (*chain, path))
    return _deep_merge(parent, data)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Defaults, then the YAML file at ``path`` (if any), then dotted ``overrides``.

    Args:
        path: YAML file with sections ``model``, ``data``, ``train``, ``eval`` and key ``out``; it may say
            ``base: other.yaml`` (relative to itself) to start from another file.
        overrides: ``"section.key=value"`` strings, applied last (see :func:`apply_overrides`).

    Raises:
        ConfigError: unknown key (with a suggestion), ill-typed or out-of-range value, missing file.
    """
    if path is None:
        cfg = RunConfig()
    else:
        p = Path(path)
        cfg = _from_dict(_read_yaml(p), str(p))
    return apply_overrides(cfg, overrides)


def dump_yaml(cfg: RunConfig, path: str | Path) -> Path:
    """Write the resolved ``cfg`` as YAML (loadable by :func:`load_config`); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------------- overrides


def apply_overrides(cfg: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """Return a copy of ``cfg`` with ``"section.key=value"`` overrides applied, checked like YAML values.

    Values are strings: lists are comma-separated (``data.root=a,b``) or YAML lists (``model.depths=[2,2]``),
    ``null``/``none`` gives None, and booleans accept true/false/yes/no/on/off/1/0.

    >>> cfg = apply_overrides(RunConfig(), ["train.bf16=yes", "model.encoder_weights=none"])
    >>> cfg.train.bf16, cfg.model.encoder_weights
    (True, None)
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    if not overrides:
        return cfg
    d = config_to_dict(cfg)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("--")
        source = f"override '{item}'"
        if not sep or not key:
            raise ConfigError(f"{source} must look like section.key=value (e.g. train.epochs=50)")
        section, dot, leaf = key.partition(".")
        option, is_option = _model_option(section, leaf)
        if is_option:  # model.options.NAME: a builder option, typed like YAML (0.05, true, [1, 2])
            d["model"].setdefault("options", {})[option] = _yaml_scalar(value, key, source)
            continue
        if not dot:
            if key not in _TOP_LEVEL:
                raise _unknown(key, source)
            d[key] = value
        elif section not in _SECTIONS or leaf not in _field_types(_SECTIONS[section]):
            raise _unknown(key, source)
        else:
            hint = _field_types(_SECTIONS[section])[leaf]
            d[section][leaf] = _coerce(value, hint, key, source)  # coerce here so errors name the override
    return _from_dict(d, "overrides")


def _model_option(section: str, leaf: str) -> tuple[str, bool]:
    """(NAME, True) for the dotted key ``model.options.NAME``, else ("", False)."""
    prefix, dot, name = leaf.partition(".")
    return name, section == "model" and prefix == "options" and bool(dot) and bool(name)


def _yaml_scalar(value: str, key: str, source: str) -> Any:
    """A command-line value read as YAML reads it (numbers, booleans, null, lists); else the string."""
    try:
        return yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        raise ConfigError(f"{source}: {key} value {value!r} is not valid YAML") from None


def _is_bool_key(key: str) -> bool:
    section, _, leaf = key.partition(".")
    cls = _SECTIONS.get(section)
    return cls is not None and _field_types(cls).get(leaf) is bool


def split_dotted_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate dotted config options from other command-line arguments.

    ``--train.epochs 50`` and ``--train.epochs=50`` both become ``"train.epochs=50"``; a bool option with
    no value (``--train.bf16`` followed by another option or nothing) means true. Everything else is
    returned unchanged, in order, for argparse.

    >>> split_dotted_args(["fit", "--train.epochs", "50", "--data.root=a,b", "-v"])
    (['fit', '-v'], ['train.epochs=50', 'data.root=a,b'])
    """
    rest: list[str] = []
    overrides: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        if "." not in name or "/" in name:
            rest.append(arg)
            i += 1
            continue
        if "=" in arg:
            overrides.append(arg[2:])
            i += 1
            continue
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if nxt is None or (nxt.startswith("--") and _is_bool_key(name)):
            if _is_bool_key(name):
                overrides.append(f"{name}=true")
                i += 1
                continue
            raise ConfigError(f"option --{name} needs a value (e.g. --{name} VALUE or --{name}=VALUE)")
        overrides.append(f"{name}={nxt}")
        i += 2
    return rest, overrides
