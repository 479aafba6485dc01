"""The training loop: data, model, its optimiser recipe, periodic evaluation, checkpoints, resume, logs.

One call, :func:`train`, turns a :class:`~mambaad.config.RunConfig` into a run folder::

    RUN_DIR/config.yaml                 the resolved config
    RUN_DIR/train.log                   one line per epoch / evaluation / checkpoint
    RUN_DIR/checkpoints/last.*          weights after the latest epoch
    RUN_DIR/checkpoints/best.*          weights with the best mean mAD among the evaluations
    RUN_DIR/checkpoints/last_state.*    everything resuming needs
    RUN_DIR/metrics.{md,csv,json}, report.html   the final evaluation

Resuming after a crash or ``kill -9`` (``train(cfg, resume=True)``) restores weights, optimizer, RNG
states and the epoch counter; as data order depends only on (seed, epoch), the resumed run ends with the
same weights as an uninterrupted one. Only the main process (:mod:`mambaad.engine.distributed`) writes.

A model may follow the run's progress: before every optimizer step the loop calls its optional
``set_train_progress(step, total_steps)`` (:func:`report_progress`; DeSTSeg's two-step schedule uses it).
``step`` is the global step, restored on resume, so such schedules resume exactly too.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same call trains with DDP: ``train.batch_size`` is the global
batch split over the ranks, ``train.lr`` the learning rate of that global batch, trainable BatchNorm
layers are synchronised and the evaluation is sharded (docs/benchmarks.md, "Multi-GPU").
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mambaad.config import RunConfig, config_from_dict, config_to_dict, dump_yaml
from mambaad.data.sample import Sample
from mambaad.deploy.calibrate import calibrate_run, split_holdout
from mambaad.engine import distributed as dist
from mambaad.engine.checkpoint import (
    checkpoint_dir,
    load_checkpoint,
    load_state,
    save_checkpoint,
    weights_meta,
)
from mambaad.engine.data import load_samples, load_val_samples, split_samples, verify_files
from mambaad.engine.evaluator import EvalResult, autocast_context, evaluate_model, write_reports
from mambaad.engine.optim import (
    build_optimizer,
    flatten_optimizer_state,
    lr_factor,
    restore_base_lrs,
    set_lr_factor,
    unflatten_optimizer_state,
)
from mambaad.engine.seed import capture_rng_state, restore_rng_state, seed_everything
from mambaad.engine.step import (
    TrainStep,
    compile_forward,
    prepare_nccl_for_capture,
    side_stream,
    use_cuda_graph,
)
from mambaad.errors import CheckpointError, ConfigError, MambaADError

LOSS_EVERY = 10  # steps between loss reads (a host sync on GPU) for the progress bar
STATE_FILE = "last_state.safetensors"


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    epochs: int
    iterations: int
    final: EvalResult
    best_mad: float
    reports: dict[str, Path] = field(default_factory=dict)


class RunLog:
    """Timestamped lines to ``RUN_DIR/train.log`` (main process) and to the terminal."""

    def __init__(self, path: Path | None, echo: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.echo = echo

    def __call__(self, message: str) -> None:
        if self.echo is not None:
            self.echo(message)
        if self.path is not None and dist.is_main_process():
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{stamp} {message}\n")


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """``auto`` -> CUDA when available else CPU; an unknown or unavailable device is a ConfigError that
    names ``option`` (the config key, or the command-line option of a verb without a config)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{option}: unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}: {name} requested but CUDA is not available (use --device cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option}: {name} requested but MPS is not available (use --device cpu)")
    return device


def build_model(cfg: RunConfig) -> nn.Module:
    """The model the config describes (``model.*`` plus the map smoothing of ``eval.gaussian_sigma``).

    ``model.options`` go to the model's builder as keyword options (baselines' own settings such as
    SimpleNet's ``noise_std``); an unknown name is a one-line ConfigError.
    """
    from mambaad.models import create_model

    m = cfg.model
    options: dict[str, object] = {
        "encoder": m.encoder,
        "encoder_weights": m.encoder_weights,
        "gaussian_sigma": cfg.eval.gaussian_sigma,
    }
    if m.model == "mambaad":  # the scan/decoder settings exist only for MambaAD
        options.update(
            scan=m.scan,
            directions=m.directions,
            distinct_directions=m.distinct_directions,
            depths=tuple(m.depths),
            d_state=m.d_state,
            expand=m.expand,
            drop_path_rate=m.drop_path_rate,
            lss_branches=m.lss_branches,
            local_kernels=tuple(m.local_kernels),
            scan_backend=m.scan_backend,
        )
    clash = sorted(set(m.options) & set(options))
    if clash:
        raise ConfigError(f"model.options.{clash[0]}: set it with its own option (model.{clash[0]} / eval.*)")
    options.update(m.options)
    try:
        return create_model(m.model, **options)
    except TypeError as err:  # a builder without **options: an unknown option name
        raise ConfigError(f"model.options for {m.model}: {err}") from None


def report_progress(model: nn.Module, step: int, total_steps: int) -> None:
    """Tell the model which optimizer step comes next: ``model.set_train_progress(step, total_steps)``.

    An optional hook for models whose training follows the run's progress (DeSTSeg's two-step schedule:
    its student first, then its segmentation head); models without it are left alone. ``step`` is the
    0-based global step about to run, so after a resume it continues from the saved iteration counter.
    """
    hook = getattr(model, "set_train_progress", None)
    if callable(hook):
        hook(step, total_steps)


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to train into a folder that already holds results: nothing earlier is ever overwritten."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir}: exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        hint = (
            f"continue it with --resume {run_dir}" if (checkpoint_dir(run_dir) / STATE_FILE).is_file() else ""
        )
        hint = f"{hint} or choose another --out" if hint else "choose another --out"
        raise ConfigError(f"--out {run_dir}: folder already holds a run; {hint}")


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "train.tensorboard: needs the tensorboard package (pip install tensorboard)"
        ) from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def load_train_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The resume checkpoint of a run folder, with a one-line error when there is none."""
    path = checkpoint_dir(run_dir) / STATE_FILE
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume {run_dir}: run folder not found")
    if not path.is_file():
        raise CheckpointError(
            f"--resume {run_dir}: no checkpoints/{STATE_FILE} (no epoch finished yet?); start a new run"
        )
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != "train_state":
        raise CheckpointError(f"{path}: not a training-state checkpoint")
    return tensors, meta


def resume_config(run_dir: Path, overrides: list[str] | None = None) -> RunConfig:
    """The config stored in a run's resume checkpoint, with optional dotted overrides on top."""
    from mambaad.config import apply_overrides

    _, meta = load_train_state(run_dir)
    cfg = config_from_dict(meta["config"], strict=False)
    cfg.out = str(run_dir)
    return apply_overrides(cfg, overrides or [])


def train_loader(
    ds: Dataset, cfg: RunConfig, epoch: int, device: torch.device
) -> tuple[DataLoader, dist.ShardedEpochSampler]:
    """The training loader of this process and its sampler (``sampler.set_epoch(e)`` before epoch e).

    Rank r takes its slice of every global batch of the (seed, epoch) permutation (one process: all of
    it). One loader serves the whole run and keeps its workers between epochs; the workers' seeds come
    from ``train.seed``, not from the global RNG (which the model's drop path uses).
    """
    world = dist.get_world_size()
    sampler = dist.ShardedEpochSampler(
        len(ds), cfg.train.batch_size, cfg.train.seed, epoch, dist.get_rank(), world
    )
    loader = DataLoader(
        ds,
        batch_size=dist.per_rank_batch(cfg.train.batch_size),
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.data.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    return loader, sampler


def _wrap_ddp(model: nn.Module, device: torch.device, cfg: RunConfig) -> nn.Module:
    """``DistributedDataParallel`` around ``model.training_loss`` (gradients averaged over the ranks).

    The ``train.ddp_*`` options tune it (:func:`mambaad.engine.distributed.wrap_ddp`). Models other than
    MambaAD may leave parameters unused in a step, so DDP looks for them there.
    """
    return dist.wrap_ddp(
        dist.LossModule(model), device, cfg.train, find_unused_parameters=cfg.model.model != "mambaad"
    )


def build_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, cfg: RunConfig, device: torch.device, cuda_graph: bool
) -> tuple[TrainStep, nn.Module | None]:
    """The run's training step and, with several processes, the DDP wrapper it steps (built on the step's
    warm-up stream when the step is captured, as PyTorch's recipe for capturing DDP asks)."""
    stream = torch.cuda.Stream(device) if cuda_graph else None
    with side_stream(stream):
        ddp = _wrap_ddp(model, device, cfg) if dist.get_world_size() > 1 else None
    step = TrainStep(
        ddp if ddp is not None else model.training_loss,
        optimizer,
        [p for _, p in model.trainable_parameters()],
        cfg.train.grad_clip,
        lambda: autocast_context(device, cfg.train.bf16),
        cuda_graph=cuda_graph,
        stream=stream,
        ddp=ddp is not None,
        tf32=cfg.train.tf32,
    )
    return step, ddp


def _save_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    other_ranks_rng: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] | None = None,
) -> None:
    index, optim_tensors = flatten_optimizer_state(optimizer)
    rng_info, rng_tensors = capture_rng_state()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optim_tensors)
    tensors.update(rng_tensors)
    if other_ranks_rng:  # DDP: ranks 1.. keep their own generators across a resume
        meta = {**meta, "rng_ranks": [info for info, _ in other_ranks_rng]}
        for r, (_, rank_tensors) in enumerate(other_ranks_rng, start=1):
            tensors.update({f"rank{r}.{k}": v for k, v in rank_tensors.items()})
    save_checkpoint(path, tensors, {**meta, "kind": "train_state", "optimizer": index, "rng": rng_info})


def _restore_rank_rng(meta: dict[str, Any], tensors: dict[str, torch.Tensor], seed: int) -> bool:
    """Restore this rank's saved RNG state; False (and a seed of ``seed + rank``) when none was saved."""
    rank = dist.get_rank()
    if rank == 0:
        restore_rng_state(meta["rng"], tensors)
        return True
    saved = meta.get("rng_ranks") or []
    if len(saved) + 1 != dist.get_world_size():
        seed_everything(seed + rank)
        return False
    prefix = f"rank{rank}."
    restore_rng_state(
        saved[rank - 1], {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    )
    return True


@dataclass
class RunInputs:
    """A run's samples: training (less the hold-out), hold-out normals (threshold), test, labelled validation."""

    train: list[Sample]
    holdout: list[Sample]
    test: list[Sample]
    val: list[Sample]
    classes: list[str]


def check_inputs(cfg: RunConfig, resume: bool = False) -> RunInputs:
    """The run's samples, after every check of the user's input that needs no model: a data root given, a new
    run folder free (not for a resume), a batch no larger than the training set, every image and mask
    readable and each mask its image's size. ``mambaad train --gpus N`` runs it before it starts the ranks, so
    that such a mistake is one line, not one per rank and torchrun's report."""
    if not cfg.data.root:
        raise ConfigError("data.root: no data set given (use --data ROOT)")
    if not resume:
        check_new_run_dir(Path(cfg.out))
    train_samples, test_samples, classes = split_samples(load_samples(cfg.data))
    train_samples, holdout = split_holdout(train_samples, cfg.data.holdout_fraction, cfg.train.seed)
    if len(train_samples) < cfg.train.batch_size:
        raise ConfigError(
            f"train.batch_size {cfg.train.batch_size} is larger than the {len(train_samples)} training images"
        )
    val_samples = load_val_samples(cfg.data)  # labelled, for the F1 threshold (data.val_root)
    verify_files(train_samples + holdout + test_samples + val_samples)
    return RunInputs(train_samples, holdout, test_samples, val_samples, classes)


def train(
    cfg: RunConfig,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
) -> TrainResult | None:
    """Train ``cfg`` into ``cfg.out`` (or continue that run with ``resume=True``).

    Args:
        cfg: The resolved run config (for a resume: :func:`resume_config`).
        resume: Continue from ``cfg.out/checkpoints/last_state.safetensors``.
        stop_after_epoch: Stop (as if killed) after this epoch, without the final evaluation; for tests
            of resuming. Returns None then.
        progress: Show a tqdm bar with the loss and images per second (terminal only).
        echo: Where log lines also go (None: only the log file).

    Raises:
        ConfigError, DataError, CheckpointError: user errors, all raised before the first step.
    """
    from tqdm import tqdm

    from mambaad.data.dataset import AnomalyDataset, cache_bytes, should_cache

    run_dir = Path(cfg.out)
    if cfg.train.cuda_graph is not False and cfg.model.model == "mambaad":
        prepare_nccl_for_capture()
    device = dist.init_from_env(resolve_device(cfg.train.device))  # cuda:LOCAL_RANK under torchrun
    world = dist.get_world_size()
    local_batch = dist.per_rank_batch(cfg.train.batch_size)  # train.batch_size is the global batch
    if resume:
        state_tensors, state_meta = load_train_state(run_dir)
    inputs = check_inputs(cfg, resume)
    train_samples, holdout, test_samples, val_samples = inputs.train, inputs.holdout, inputs.test, inputs.val
    classes = inputs.classes
    dist.barrier()  # DDP: every rank has checked the (still empty) run folder before rank 0 writes to it
    writer = None
    if cfg.train.tensorboard and dist.is_main_process():
        writer = _tensorboard(run_dir)

    seed_everything(cfg.train.seed)
    model = build_model(cfg).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_sync_bn = dist.convert_sync_batchnorm(model, device, cfg.train.ddp_sync_bn) if world > 1 else 0
    if cfg.train.compile:
        compile_forward(model)
    optimizer = build_optimizer(model, cfg.train)
    graph = use_cuda_graph(cfg.train.cuda_graph, model, device)
    train_step, _ = build_train_step(model, optimizer, cfg, device, graph)  # (step, its DDP wrapper)
    if world > 1:  # same initial weights everywhere, but per-rank randomness (drop-path), seed + rank
        seed_everything(cfg.train.seed + dist.get_rank())
    params = train_step.params
    steps_per_epoch = len(train_samples) // cfg.train.batch_size  # drop_last
    total = steps_per_epoch * cfg.train.epochs

    start_epoch, iteration, best_mad, history = 0, 0, -math.inf, []
    rng_restored = True
    if resume:
        load_state(model, {k[6:]: v for k, v in state_tensors.items() if k.startswith("model.")}, run_dir)
        base_lrs = [g["base_lr"] for g in optimizer.param_groups]
        optimizer.load_state_dict(unflatten_optimizer_state(state_meta["optimizer"], state_tensors))
        restore_base_lrs(optimizer, base_lrs)
        if world > 1:
            rng_restored = _restore_rank_rng(state_meta, state_tensors, cfg.train.seed)
        else:
            restore_rng_state(state_meta["rng"], state_tensors)
        start_epoch, iteration = int(state_meta["epoch"]), int(state_meta["iteration"])
        best = state_meta.get("best_mad")
        best_mad = -math.inf if best is None else float(best)
        history = list(state_meta.get("history", []))
    main = dist.is_main_process()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(cfg, run_dir / "config.yaml")
    log = RunLog(run_dir / "train.log" if main else None, echo if main else None)
    n_train = sum(p.numel() for p in params)
    if resume:
        log(f"resuming {run_dir} at epoch {start_epoch + 1}/{cfg.train.epochs} (iteration {iteration})")
    else:
        log(
            f"training {cfg.model.model} ({cfg.model.encoder}, {n_train / 1e6:.2f} M trainable) on "
            f"{len(classes)} classes, {len(train_samples)} images, {cfg.train.epochs} epochs, device {device}"
        )
        groups = ", ".join(
            f"{g['name']} lr {g['base_lr']:.3g} wd {g['weight_decay']:.3g}" for g in optimizer.param_groups
        )
        log(f"optimizer {cfg.train.optimizer}: {groups}; grad clip {cfg.train.grad_clip or 'off'}")
    if graph:
        log(
            f"training step: captured in a CUDA graph after {train_step.warmup} eager steps (train.cuda_graph)"
        )
    if world > 1:
        log(
            f"DDP: {world} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), global batch "
            f"{cfg.train.batch_size} = {local_batch} per process, lr {cfg.train.base_lr:.4g} for the global "
            f"batch ({'train.lr' if cfg.train.lr is not None else 'the spec: 0.005 x global batch / 16'}), "
            f"{n_sync_bn} SyncBatchNorm layers"
            + (f"; DDP options {ddp_opts}" if (ddp_opts := dist.describe_ddp(cfg.train)) else "")
        )
        if resume and not rng_restored:
            log(f"resume: no RNG state saved for {world} processes; ranks 1.. reseeded with seed + rank")
    config_dict = config_to_dict(cfg)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun: processes on this machine
    cache = should_cache(cfg.data.cache_images, len(train_samples), cfg.data.crop_size, local_ranks)
    if cache:
        gb = cache_bytes(len(train_samples), cfg.data.crop_size) / 2**30
        log(f"caching the {len(train_samples)} training images in memory ({gb:.2f} GB, data.cache_images)")
    ds = AnomalyDataset(train_samples, cfg.data.image_size, cfg.data.crop_size, cache=cache)
    final: EvalResult | None = None
    ckpt = checkpoint_dir(run_dir)

    loader, sampler = train_loader(ds, cfg, start_epoch, device)

    for epoch in range(start_epoch, cfg.train.epochs):
        model.train()
        sampler.set_epoch(epoch)
        loss_sum = torch.zeros((), device=device)
        t0 = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            unit="batch",
            disable=not (progress and main) or None,
            file=sys.stderr,
            leave=False,
        )
        for step, batch in enumerate(bar):
            images = batch["image"].to(device, non_blocking=True)  # (B, 3, S, S)
            if cfg.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            report_progress(model, iteration, total)
            set_lr_factor(optimizer, lr_factor(iteration, total, cfg.train))
            loss = train_step(images)  # forward, backward, clip, optimizer (eager or a graph replay)
            iteration += 1
            loss_sum += loss.float()
            if (step + 1) % LOSS_EVERY == 0 or step == 0:
                rate = (step + 1) * images.shape[0] / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.1f}")
        bar.close()
        if world > 1:  # the logged loss is the mean over every rank's batches
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= world
        mean_loss = loss_sum.item() / max(steps_per_epoch, 1)
        if not math.isfinite(mean_loss):
            raise MambaADError(f"training diverged: loss is {mean_loss} in epoch {epoch + 1}; lower train.lr")
        seconds = time.perf_counter() - t0
        log(
            f"epoch {epoch + 1}/{cfg.train.epochs} loss {mean_loss:.5f} lr {optimizer.param_groups[0]['lr']:.3g} "
            f"{steps_per_epoch * cfg.train.batch_size / seconds:.1f} img/s"
        )
        if writer is not None:
            writer.add_scalar("train/loss", mean_loss, epoch + 1)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], epoch + 1)

        last_epoch = epoch + 1 == cfg.train.epochs
        every = cfg.train.eval_every
        result: EvalResult | None = None
        if last_epoch or (every and (epoch + 1) % every == 0):
            result = evaluate_model(
                model,
                test_samples,
                cfg.data,
                cfg.eval,
                device,
                cfg.train.batch_size,
                cfg.eval_bf16,
                cfg.train.channels_last,
                progress and main,
            )
            m = result.per_class["mean"]
            log(
                f"eval epoch {epoch + 1}: image AUROC {m.get('image_auroc', math.nan):.4f} "
                f"pixel AUROC {m.get('pixel_auroc', math.nan):.4f} mAD {result.mean_mad:.4f}"
            )
            history.append({"epoch": epoch + 1, "mean": m})
            if writer is not None:
                for k, v in m.items():
                    writer.add_scalar(f"eval/{k}", v, epoch + 1)
        metrics = result.per_class if result is not None else {}
        other_rng = None
        if world > 1:  # a collective: every rank hands its RNG state to rank 0 for the resume file
            gathered = dist.gather_to_main(capture_rng_state())
            other_rng = gathered[1:] if gathered is not None else None
        if main:
            improved = result is not None and (
                result.mean_mad > best_mad or (math.isnan(result.mean_mad) and best_mad == -math.inf)
            )
            if improved:
                best_mad = result.mean_mad if not math.isnan(result.mean_mad) else best_mad
            weights = {k: v for k, v in model.state_dict().items()}
            meta = weights_meta(config_dict, model, classes, epoch + 1, iteration, metrics)
            _save_state(
                ckpt / STATE_FILE,
                model,
                optimizer,
                {
                    **meta,
                    "best_mad": None if best_mad == -math.inf else best_mad,
                    "history": history,
                },
                other_rng,
            )
            save_checkpoint(ckpt / "last.safetensors", weights, meta)
            if improved:
                save_checkpoint(ckpt / "best.safetensors", weights, meta)
                log(f"saved best checkpoint (epoch {epoch + 1}, mAD {result.mean_mad:.4f})")
        dist.barrier()
        if result is not None and last_epoch:
            final = result
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and not last_epoch:
            return None
    if writer is not None:
        writer.close()
    if final is None:  # resumed a run whose last epoch had finished: evaluate the last weights again
        final = evaluate_model(
            model, test_samples, cfg.data, cfg.eval, device, cfg.train.batch_size, progress=progress
        )
    reports: dict[str, Path] = {}
    if main:
        info = {
            "run": str(run_dir),
            "checkpoint": str(ckpt / "last.safetensors"),
            "epochs": cfg.train.epochs,
            "device": str(device),
            "classes": len(classes),
        }
        reports = write_reports(final, run_dir, cfg.data, info)
        bs = cfg.train.batch_size
        calibrate_run(  # thresholds -> checkpoint metadata
            ckpt, holdout, train_samples, cfg.data, cfg.eval, device, bs, log, val_samples
        )
        log(f"report: {reports['html']}")
    return TrainResult(run_dir, cfg.train.epochs, iteration, final, best_mad, reports)


__all__ = [
    "RunInputs",
    "RunLog",
    "TrainResult",
    "build_model",
    "check_inputs",
    "check_new_run_dir",
    "report_progress",
    "resolve_device",
    "resume_config",
    "train",
]
