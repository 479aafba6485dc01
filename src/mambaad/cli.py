"""The ``mambaad`` command line: ``mambaad <verb> [options]``.

Each verb is a pair of small functions, ``add_<verb>_args(parser)`` and ``cmd_<verb>(args) -> int``,
registered in the one table :data:`VERBS`; adding a verb means adding one row. User errors
(:class:`~mambaad.errors.MambaADError`) are printed as a single ``error: ...`` line on stderr with exit
status 1 (``--debug`` shows the traceback instead); argparse usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mambaad import __version__
from mambaad.config import split_dotted_args
from mambaad.errors import CheckpointError, ConfigError, MambaADError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mambaad.config import RunConfig
    from mambaad.data.summary import ClassSummary


# --------------------------------------------------------------------------------------------- data
def add_data_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad data``."""
    from mambaad.data.formats import list_formats

    p.add_argument("root", type=Path, help="data set root folder")
    p.add_argument("--format", choices=list_formats(), default=None, help="layout (default: detect it)")
    p.add_argument("--meta", default=None, help="meta file name for --format meta (default meta.json)")
    p.add_argument("--check", action="store_true", help="decode every image and mask (finds corrupt files)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _format_table(fmt: str, root: Path, summaries: dict[str, ClassSummary], checked: bool) -> str:
    cols = ("train_good", "test_good", "test_anomalous", "masks")
    width = max([5, *(len(c) for c in summaries)])
    lines = [f"format: {fmt}   root: {root}", f"{'class':<{width}}  " + "  ".join(f"{c:>14}" for c in cols)]
    totals = dict.fromkeys(cols, 0)
    for name, s in summaries.items():
        vals = [getattr(s, c) for c in cols]
        for c, v in zip(cols, vals):
            totals[c] += v
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>14}" for v in vals))
    if len(summaries) > 1:
        lines.append(f"{'total':<{width}}  " + "  ".join(f"{totals[c]:>14}" for c in cols))
    problems = [f"  {name}: {msg}" for name, s in summaries.items() for msg in s.problems]
    lines.append("problems:" if problems else "problems: none")
    if not checked:
        lines.append(
            "(files were not decoded; --check reads every image and mask, finding corrupt files and empty masks)"
        )
    lines.extend(problems)
    return "\n".join(lines)


def _progress(done: int, total: int) -> None:
    if done % 500 == 0 or done == total:
        end = "\n" if done == total else ""
        print(f"\rchecked {done}/{total} files", end=end, file=sys.stderr, flush=True)


def cmd_data(args: argparse.Namespace) -> int:
    """Detect (or take) the layout of a data root and print per-class counts and problems."""
    from mambaad.data.folder import check_root
    from mambaad.data.formats import detect_format, read_dataset
    from mambaad.data.meta import read_meta
    from mambaad.data.summary import check_files, summarize

    root = check_root(args.root)
    fmt = args.format or detect_format(root)
    if args.meta and fmt != "meta":
        raise ConfigError(f"--meta: only used with --format meta (layout here: {fmt})")
    samples = read_meta(root, args.meta) if args.meta else read_dataset(root, fmt)
    summaries = summarize(samples)
    if args.check:
        check_files(samples, summaries, progress=_progress if sys.stderr.isatty() else None)
    if args.json:
        out = {"format": fmt, "root": str(root), "classes": {k: v.to_json() for k, v in summaries.items()}}
        print(json.dumps(out, indent=1))
    else:
        print(_format_table(fmt, root, summaries, args.check))
    return 0


# --------------------------------------------------------------------------------------------- synth
def add_synth_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad synth``."""
    p.add_argument("out", type=Path, help="output folder (new, or one made earlier by this command)")
    p.add_argument("--classes", type=int, default=4, help="number of classes (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed = same bytes)")
    p.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    p.add_argument("--train", type=int, default=60, help="normal training images per class (default 60)")
    p.add_argument("--test", type=int, default=30, help="test images per class, half defective (default 30)")


def cmd_synth(args: argparse.Namespace) -> int:
    """Write the synthetic defect data set."""
    from mambaad.data.synth import make_synthetic_dataset

    t0 = time.perf_counter()
    out = make_synthetic_dataset(args.out, args.classes, args.seed, args.size, args.train, args.test)
    n = args.classes * (args.train + args.test)
    print(f"wrote {n} images ({args.classes} classes) to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------------------- train / test
# Short options and the config keys they set; they are applied after the YAML file and the dotted
# overrides, so an explicit flag always wins.
SHORT_OPTIONS: dict[str, str] = {
    "data": "data.root",
    "format": "data.format",
    "classes": "data.classes",
    "out": "out",
    "model": "model.model",
    "encoder": "model.encoder",
    "encoder_weights": "model.encoder_weights",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "device": "train.device",
    "seed": "train.seed",
}
THREADS_HELP = "CPU threads for torch (default: torch's choice; 1 is faster on a CPU shared with other jobs)"
DOTTED_HELP = "any config key as a dotted option, e.g. --train.epochs 50 --model.depths [2,2,2,2]"


def _add_run_options(
    p: argparse.ArgumentParser, data_help: str = "data set root(s), comma-separated"
) -> None:
    from mambaad.data.formats import list_formats

    p.add_argument("--config", type=Path, default=None, help="YAML run config (see configs/)")
    p.add_argument("--data", default=None, metavar="ROOT", help=data_help)
    p.add_argument("--format", choices=list_formats(), default=None, help="data layout (default: detect it)")
    p.add_argument("--classes", default=None, help="comma-separated classes (default: every class)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (default from the config)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="images per step")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad train``."""
    from mambaad.models.registry import list_models

    _add_run_options(p)
    p.add_argument("--model", choices=list_models(), default=None, help="model (default mambaad)")
    p.add_argument("--encoder", default=None, metavar="NAME", help="timm encoder, e.g. resnet34")
    p.add_argument("--encoder-weights", default=None, metavar="W", help="imagenet | none | PATH")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="training epochs")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument(
        "--gpus",
        type=int,
        default=None,
        metavar="N",
        help="DDP on N GPUs of this machine (runs torchrun --nproc_per_node N); --batch-size is the global batch",
    )
    p.epilog = DOTTED_HELP


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """The short options the user gave, as dotted ``key=value`` overrides."""
    out = []
    for name, key in SHORT_OPTIONS.items():
        value = getattr(args, name, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def _progress_on(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def strip_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE`` (to pass the rest on unchanged)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(f"{name}="):
            out.append(a)
    return out


def launch_torchrun(nproc: int, argv: Sequence[str]) -> int:
    """Run ``torchrun --standalone --nproc_per_node nproc -m mambaad ARGV`` and return its exit status.

    ``--standalone`` makes a single-node rendezvous on a free local port; for several machines call
    torchrun directly with its rendezvous flags (docs/benchmarks.md, "Multi-GPU").
    """
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "mambaad", *argv]
    print("launching: " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    return subprocess.call(cmd)


def check_gpu_count(gpus: int, device: str) -> None:
    """--gpus N on CUDA needs N devices (on a machine without CUDA the ranks run on the CPU, gloo)."""
    import torch

    from mambaad.engine.trainer import resolve_device

    if resolve_device(device).type == "cuda" and torch.cuda.device_count() < gpus:
        raise ConfigError(f"--gpus {gpus}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model (every class of the data set(s) unless --classes) and write its reports."""
    import os

    from mambaad.config import load_config
    from mambaad.engine import distributed
    from mambaad.engine.trainer import check_inputs, resume_config, train

    if args.gpus is not None:
        if args.gpus < 1:
            raise ConfigError(f"--gpus must be >= 1, got {args.gpus}")
        if "WORLD_SIZE" in os.environ:
            raise ConfigError("--gpus: already running under torchrun; drop --gpus")
    _set_threads(args)
    overrides = [*args._overrides, *_flag_overrides(args)]
    if args.resume is not None:
        if args.config is not None or args.out is not None:
            raise ConfigError("--resume: the run's stored config and folder are used; drop --config/--out")
        cfg = resume_config(args.resume, overrides)
    else:
        cfg = load_config(args.config, overrides)
        if args.config is None and cfg.model.model != "mambaad":  # start from that model's paper recipe
            from mambaad.models.recipes import recipe_overrides

            cfg = load_config(None, [*recipe_overrides(cfg.model.model), *overrides])
    if args.gpus is not None and args.gpus > 1:  # the ranks' inputs checked once, here, before they start
        check_gpu_count(args.gpus, cfg.train.device)
        check_inputs(cfg, resume=args.resume is not None)
        return launch_torchrun(args.gpus, strip_option(args._argv, "--gpus"))
    from mambaad.report import format_markdown

    try:
        result = train(cfg, resume=args.resume is not None, progress=_progress_on(args))
        main_rank = distributed.is_main_process()
    finally:
        distributed.shutdown()
    if result is None:  # only with stop_after_epoch, which the CLI never sets
        return 1
    if not main_rank:  # DDP: rank 0 prints the table
        return 0

    print(format_markdown(result.final.per_class), end="")
    print(f"report: {result.reports.get('html')}")
    return 0


def add_test_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad test``."""
    p.add_argument(
        "checkpoint", type=Path, help="checkpoint file (.safetensors), run folder, or official MambaAD .pth"
    )
    _add_run_options(p, data_help="data set root(s) (default: the ones the model was trained on)")
    p.epilog = DOTTED_HELP


def default_test_dir(checkpoint: Path) -> Path:
    """``<run>/test`` for a run folder or a file in ``<run>/checkpoints``; else next to the file."""
    if checkpoint.is_dir():
        return checkpoint / "test"
    parent = checkpoint.parent
    return (parent.parent if parent.name == "checkpoints" else parent) / "test"


def official_run_config() -> RunConfig:
    """The run config of an official MambaAD ``.pth``: the MVTec recipe (256 px, no crop), no data set."""
    from mambaad.config import RunConfig
    from mambaad.deploy.predict import OFFICIAL_SIZE

    cfg = RunConfig()
    cfg.model.encoder_weights = None  # the .pth carries the encoder
    cfg.data.image_size = cfg.data.crop_size = OFFICIAL_SIZE
    return cfg


def stored_test_config(checkpoint: Path) -> tuple[RunConfig, Path]:
    """(run config stored with the weights, checkpoint file) of a run folder, ``.safetensors`` or ``.pth``.

    An official ``.pth`` stores no config: it gets :func:`official_run_config`.
    """
    from mambaad.config import config_from_dict
    from mambaad.engine.checkpoint import resolve_checkpoint

    if checkpoint.suffix == ".pth":
        if not checkpoint.is_file():
            raise CheckpointError(f"{checkpoint}: checkpoint not found")
        return official_run_config(), checkpoint
    path = resolve_checkpoint(checkpoint)
    return config_from_dict(_meta_config(path), strict=False), path


def load_test_model(path: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, metadata) of a checkpoint file; an official ``.pth`` via ``load_official``."""
    if path.suffix == ".pth":
        from mambaad.models.official import load_official

        return load_official(path).to(device).eval(), {"source": "official"}
    from mambaad.engine.checkpoint import load_model

    return load_model(path, device)


def run_test(
    checkpoint: Path,
    overrides: list[str],
    out: Path | None,
    progress: bool,
) -> tuple[dict[str, dict[str, float]], dict[str, Path]]:
    """Evaluate a checkpoint per class and write the reports; returns (metrics, report paths).

    ``checkpoint`` is a run folder, a ``.safetensors`` file or an official MambaAD ``.pth``; for the
    latter the official recipe's geometry applies (256 px, no crop) and ``model.*`` cannot be changed.
    """
    from mambaad.config import apply_overrides
    from mambaad.engine.data import load_samples, split_samples, verify_files
    from mambaad.engine.evaluator import evaluate_model, write_reports
    from mambaad.engine.trainer import check_new_run_dir, resolve_device

    stored, path = stored_test_config(checkpoint)
    fixed = [o.partition("=")[0] for o in overrides if o.startswith("model.")]
    if path.suffix == ".pth" and fixed:
        raise ConfigError(f"{fixed[0]}: an official .pth fixes the model; drop the model.* options")
    cfg = apply_overrides(stored, overrides)
    out = out if out is not None else default_test_dir(checkpoint)
    check_new_run_dir(out)
    if not cfg.data.root:
        raise ConfigError("--data: the checkpoint names no data set; give --data ROOT")
    device = resolve_device(cfg.train.device)
    _, test_samples, classes = split_samples(load_samples(cfg.data))
    verify_files(test_samples)
    model, meta = load_test_model(path, device)
    if cfg.eval.gaussian_sigma != stored.eval.gaussian_sigma:  # the map smoothing lives in the model
        model_cfg = getattr(model, "config", None)
        if not hasattr(model_cfg, "gaussian_sigma"):
            raise ConfigError(
                f"eval.gaussian_sigma: model {cfg.model.model!r} has no map smoothing to change"
            )
        model_cfg.gaussian_sigma = cfg.eval.gaussian_sigma
    result = evaluate_model(
        model,
        test_samples,
        cfg.data,
        cfg.eval,
        device,
        cfg.train.batch_size,
        bf16=cfg.eval_bf16,
        channels_last=cfg.train.channels_last,
        progress=progress,
    )
    info = {
        "checkpoint": str(path),
        "epoch": meta.get("epoch"),
        "device": str(device),
        "classes": len(classes),
    }
    return result.per_class, write_reports(result, out, cfg.data, info)


def _meta_config(path: Path) -> dict:
    from mambaad.engine.checkpoint import read_metadata

    return dict(read_metadata(path).get("config") or {})


def cmd_test(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint per class; print the table and write metrics + report.html."""
    from mambaad.report import format_markdown

    _set_threads(args)
    flags = [o for o in _flag_overrides(args) if not o.startswith("out=")]
    out = Path(args.out) if args.out is not None else None
    per_class, paths = run_test(args.checkpoint, [*args._overrides, *flags], out, _progress_on(args))
    print(format_markdown(per_class), end="")
    print(f"report: {paths['html']}")
    return 0


# ---------------------------------------------------------------------------------------------- demo
DEMO_CONFIG = Path("configs/demo.yaml")
DEMO_SYNTH = {"classes": 4, "seed": 0, "size": 128, "train": 32, "test": 30}


def add_demo_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad demo``."""
    p.add_argument("--config", type=Path, default=DEMO_CONFIG, help=f"demo config (default {DEMO_CONFIG})")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default from the config)")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default from the config)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="training epochs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)
    p.epilog = DOTTED_HELP


def _free_dir(path: Path) -> Path:
    """``path`` if absent or empty, else the first free ``path-2``, ``path-3``, ... (never overwrite)."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return path
    i = 2
    while (cand := path.with_name(f"{path.name}-{i}")).exists():
        i += 1
    return cand


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic data (if absent) -> train -> test -> report, with the demo config."""
    from mambaad.config import load_config
    from mambaad.data.synth import make_synthetic_dataset
    from mambaad.engine.trainer import train
    from mambaad.report import format_markdown

    t0 = time.perf_counter()
    _set_threads(args)
    overrides = [*args._overrides, *_flag_overrides(args)]
    cfg = load_config(args.config, overrides)
    if not cfg.data.root:
        raise ConfigError(f"{args.config}: data.root must name the demo data folder")
    data = Path(cfg.data.root[0])
    if not data.is_dir() or not any(data.iterdir()):
        print(f"writing the synthetic data set to {data} ...", flush=True)
        make_synthetic_dataset(data, **DEMO_SYNTH)
    run_dir = _free_dir(Path(cfg.out))
    cfg.out = str(run_dir)
    progress = _progress_on(args)
    train(cfg, progress=progress)
    per_class, paths = run_test(run_dir, [], run_dir / "test", progress)
    print(format_markdown(per_class), end="")
    print(f"report: {paths['html']}")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0


# ------------------------------------------------------------------------------------- predict / export
CKPT_HELP = "run folder, .safetensors checkpoint, official MambaAD .pth, or (predict only) exported .onnx"


def add_predict_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad predict``."""
    p.add_argument("checkpoint", type=Path, help=CKPT_HELP)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    p.add_argument("--threshold", type=float, default=None, metavar="X", help="image/pixel threshold to use")
    p.add_argument(
        "--threshold-kind",
        choices=["fpr", "f1"],
        default=None,
        help="stored image threshold to decide with: fpr (default; for eval.target_fpr on held-out normals) "
        "or f1 (F1-optimal on the labelled data.val_root set)",
    )
    p.add_argument("--overlay", type=Path, default=None, metavar="DIR", help="write heat-map overlay PNGs")
    p.add_argument("--mask", type=Path, default=None, metavar="DIR", help="write binary mask PNGs")
    p.add_argument("--jsonl", type=Path, default=None, metavar="FILE", help="write one JSON line per image")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout instead of the table")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward (default 8)")
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default auto)")
    p.add_argument(
        "--tf32",
        action="store_true",
        help="CUDA: fp32 matrix products on TF32 tensor cores (faster; as eval.tf32)",
    )
    p.add_argument("--bf16", action="store_true", help="CUDA: bf16 autocast (faster still; as eval.bf16)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)
    p.epilog = (
        "Exit status 0 when at least one image was scored (unreadable ones are reported on stderr and "
        "skipped), 1 when none was."
    )


def _predict_row(rec: dict) -> str:
    decision = "-" if rec["anomalous"] is None else ("ANOMALOUS" if rec["anomalous"] else "normal")
    norm = rec.get("normalized_score")
    norm_s = f"{norm:>10.3f}" if norm is not None else f"{'-':>10}"
    return f"{rec['score']:>10.5f}  {norm_s}  {decision:<9}  {rec['path']}"


def cmd_predict(args: argparse.Namespace) -> int:
    """Score images: table (or JSON lines), optional overlays and masks; bad files are skipped."""
    from mambaad.deploy.predict import expand_inputs, load_predictor, predict_paths, with_threshold
    from mambaad.engine.trainer import resolve_device

    _set_threads(args)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threshold is not None and args.threshold_kind is not None:
        raise ConfigError("--threshold and --threshold-kind: give one of them")
    predictor = load_predictor(
        args.checkpoint,
        resolve_device(args.device, "--device"),
        args.threshold_kind or "fpr",
        tf32=args.tf32,
        bf16=args.bf16,
    )
    if args.threshold is not None:
        with_threshold(predictor, args.threshold)
    problems = 0

    def report(message: str) -> None:
        nonlocal problems
        problems += 1
        print(f"skipped: {' '.join(message.split())}", file=sys.stderr)

    paths = expand_inputs(args.inputs, report)
    thr = predictor.threshold
    if thr is None:
        print(
            f"note: {args.checkpoint} has no calibrated threshold: scores only (give --threshold X)",
            file=sys.stderr,
        )
        if args.mask is not None:
            print("note: --mask needs a threshold; no masks written", file=sys.stderr)
    elif not args.json:
        print(
            f"threshold {thr['image']:.5f} ({thr.get('source', '?')}); normalized: 0 median normal, 1 threshold"
        )
    if not args.json:
        print(f"{'score':>10}  {'normalized':>10}  {'decision':<9}  path")
    try:
        jsonl = open(args.jsonl, "w", encoding="utf-8") if args.jsonl is not None else None
    except OSError as exc:
        raise ConfigError(f"--jsonl {args.jsonl}: cannot write ({exc.strerror})") from None
    n = 0
    try:
        for rec in predict_paths(predictor, paths, args.batch_size, args.overlay, args.mask, report):
            n += 1
            line = json.dumps(rec)
            if jsonl is not None:
                jsonl.write(line + "\n")
            print(line if args.json else _predict_row(rec), flush=True)
    finally:
        if jsonl is not None:
            jsonl.close()
    if n == 0:
        raise MambaADError(f"no image could be scored ({problems} problems reported above)")
    if problems:
        print(f"{n} images scored, {problems} skipped", file=sys.stderr)
    return 0


def add_export_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad export``."""
    from mambaad.deploy.export import DEFAULT_OPSET

    p.add_argument("checkpoint", type=Path, help="run folder, .safetensors checkpoint or official .pth")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default onnx)")
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, metavar="N", help=f"ONNX opset ({DEFAULT_OPSET})"
    )
    p.add_argument("--dynamic-batch", action="store_true", help="free batch dimension (default: batch 1)")
    p.add_argument("--input-dtype", choices=["uint8", "float32"], default="uint8", help="graph input type")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="output file (default model.onnx)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def default_export_path(checkpoint: Path) -> Path:
    """``<run>/model.onnx`` for a run folder or a file in ``<run>/checkpoints``; else next to the file."""
    if checkpoint.is_dir():
        return checkpoint / "model.onnx"
    parent = checkpoint.parent
    return (parent.parent if parent.name == "checkpoints" else parent) / f"{checkpoint.stem}.onnx"


def cmd_export(args: argparse.Namespace) -> int:
    """Export one ONNX graph: uint8/float RGB -> anomaly map, image score, decision."""
    from mambaad.deploy.export import export_onnx
    from mambaad.deploy.predict import deployed_from_checkpoint

    if args.checkpoint.suffix == ".onnx":
        raise ConfigError(f"{args.checkpoint}: already an ONNX model")
    out = args.out if args.out is not None else default_export_path(args.checkpoint)
    if out.is_file() and not args.force:  # a folder: export_onnx says so
        raise ConfigError(f"--out {out}: file exists (use --force to overwrite)")
    deployed, info = deployed_from_checkpoint(args.checkpoint, "cpu")
    meta = {"source": str(args.checkpoint), "image_size": info["image_size"], "threshold": info["threshold"]}
    t0 = time.perf_counter()
    export_onnx(deployed, out, info["crop_size"], args.opset, args.dynamic_batch, args.input_dtype, meta)
    thr = "no threshold (decision always false)" if info["threshold"] is None else "threshold included"
    print(
        f"wrote {out} ({info['crop_size']}x{info['crop_size']} input, {thr}) in {time.perf_counter() - t0:.1f} s"
    )
    return 0


# -------------------------------------------------------------------------------------------- ablate
def add_ablate_args(p: argparse.ArgumentParser) -> None:
    """Options of ``mambaad ablate``."""
    p.add_argument("grid", type=Path, help="grid file (see configs/ablations/)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: the grid's 'out')")
    p.add_argument("--data", default=None, metavar="ROOT", help="data set root(s), comma-separated")
    p.add_argument("--classes", default=None, help="comma-separated classes (default: every class)")
    p.add_argument("--encoder", default=None, metavar="NAME", help="timm encoder for every point")
    p.add_argument("--encoder-weights", default=None, metavar="W", help="imagenet | none | PATH")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="training epochs of every point")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="images per step")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)
    p.epilog = (
        "Each point trains and is evaluated in OUT/<point>; finished points are skipped on a rerun and "
        "interrupted ones resumed. Writes OUT/ablation.md and OUT/ablation.csv. " + DOTTED_HELP
    )


def cmd_ablate(args: argparse.Namespace) -> int:
    """Run every point of a grid and write one comparison table."""
    from mambaad.engine.ablate import format_ablation_markdown, load_grid, run_grid

    _set_threads(args)
    grid = load_grid(args.grid)
    flags = [o for o in _flag_overrides(args) if not o.startswith("out=")]
    out = Path(args.out or grid.out or f"runs/ablate_{args.grid.stem}")
    results, paths = run_grid(grid, out, [*args._overrides, *flags], progress=_progress_on(args))
    print(format_ablation_markdown(results, grid.keys), end="")
    print(f"tables: {paths['md']} {paths['csv']}")
    failed = [r.point.name for r in results if r.status == "failed"]
    if failed:
        print(f"error: {len(failed)} point(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Verb:
    """One sub-command: its name, one-line help, argument setup and handler."""

    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# -------------------------------------------------------------------------------------------- bench
def add_bench_args(p: argparse.ArgumentParser) -> None:
    from mambaad.bench import add_arguments

    add_arguments(p)


def cmd_bench(args: argparse.Namespace) -> int:
    from mambaad.bench import run

    return run(args)


VERBS: tuple[Verb, ...] = (
    Verb("data", "summarize a data set: layout, per-class counts, problems", add_data_args, cmd_data),
    Verb("synth", "write the synthetic defect data set (folder layout)", add_synth_args, cmd_synth),
    Verb("train", "train a model on one or more data sets (all classes at once)", add_train_args, cmd_train),
    Verb("test", "evaluate a checkpoint per class and write the reports", add_test_args, cmd_test),
    Verb("demo", "synthetic data, training, test and report on the CPU in minutes", add_demo_args, cmd_demo),
    Verb(
        "ablate",
        "run an ablation grid (one run per point) and write one comparison table",
        add_ablate_args,
        cmd_ablate,
    ),
    Verb("bench", "training and inference img/s and peak memory per scan backend", add_bench_args, cmd_bench),
    Verb("predict", "score images: decision, heat-map overlays, masks", add_predict_args, cmd_predict),
    Verb(
        "export",
        "export a checkpoint to one ONNX graph (RGB -> map, score, decision)",
        add_export_args,
        cmd_export,
    ),
)
DOTTED_VERBS = ("train", "test", "demo", "ablate")  # verbs that take dotted config options


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per row of :data:`VERBS`."""
    parser = argparse.ArgumentParser(prog="mambaad", description="MambaAD anomaly detection.")
    parser.add_argument("--version", action="version", version=f"mambaad {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an absent sub-command --debug must not overwrite a top-level `mambaad --debug <verb>`.
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for verb in VERBS:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.help, parents=[common])
        verb.add_args(p)
        p.set_defaults(_run=verb.run)
    return parser


def user_message(exc: MambaADError) -> str:
    """The error's message on one line. One raised in a DataLoader worker comes back wrapped in the worker's
    traceback (torch re-raises it as "Caught DataError in DataLoader worker process 0. Original Traceback
    ..."), whose last line holds the original message."""
    text = str(exc)
    if text.startswith("Caught ") and "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]  # "mambaad.errors.DataError: <message>"
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mambaad`` console script; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        rest, overrides = split_dotted_args(argv)
    except ConfigError as exc:
        print(f"mambaad: error: {exc}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(rest)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    if overrides and args.verb not in DOTTED_VERBS:
        print(
            f"mambaad {args.verb}: error: dotted config options are for train/test/demo/ablate",
            file=sys.stderr,
        )
        return 2
    args._overrides = overrides
    args._argv = argv
    try:
        return int(args._run(args))
    except MambaADError as exc:
        if args.debug:
            raise
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
