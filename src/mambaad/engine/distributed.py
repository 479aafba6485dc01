"""Rank and world size, process-group set-up, data sharding, SyncBN and gathers for DDP training.

Every helper answers for the plain single-process case (rank 0 of a world of 1) when
``torch.distributed`` is not initialised; the engine asks only these functions, so adding DDP means
initialising the process group and wrapping the model, not hunting ``if rank == 0`` checks.

A run launched by ``torchrun`` (``WORLD_SIZE > 1``) joins a process group in :func:`init_from_env`;
everything else here answers for the plain single-process case when no group exists.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Sampler

from mambaad.errors import ConfigError

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel

    from mambaad.config import TrainConfig


def is_initialized() -> bool:
    """True inside an initialised process group (DDP run)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank; 0 when not distributed."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """Number of processes; 1 when not distributed."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """Only the main process writes files (checkpoints, logs, reports) and shows progress bars."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (a no-op when not distributed)."""
    if is_initialized():
        dist.barrier()


# ------------------------------------------------------------------------------------- DDP set-up
def env_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when launched as a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group ``torchrun`` describes and return this rank's device.

    A no-op returning ``device`` for a plain single process (``WORLD_SIZE`` unset or 1) or when the
    group already exists. CUDA ranks use NCCL on ``cuda:LOCAL_RANK``; anything else uses gloo (the CPU
    test path).
    """
    if env_world_size() <= 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank}: only {torch.cuda.device_count()} CUDA devices on this node"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return device


def shutdown() -> None:
    """Leave the process group (a no-op when not distributed)."""
    if is_initialized():
        dist.destroy_process_group()


def per_rank_batch(global_batch: int) -> int:
    """This rank's share of ``train.batch_size`` (the global batch); it must split evenly."""
    world = get_world_size()
    if global_batch % world:
        raise ConfigError(
            f"train.batch_size {global_batch} (the global batch) must be divisible by the {world} processes"
        )
    return global_batch // world


class ShardedEpochSampler(Sampler[int]):
    """This rank's slice of each global batch of one seeded permutation (a DistributedSampler for us; one
    process takes the whole batches, so 1 and N processes see the same global batches).

    The permutation depends only on (seed, epoch) (:func:`~mambaad.engine.seed.epoch_generator`), so
    data order survives a resume. Global batch ``s`` is ``perm[s*G:(s+1)*G]``; rank ``r`` takes the
    ``r``-th contiguous slice of it, so the ranks' batches of one step, concatenated in rank order,
    are exactly the global batch. The incomplete tail is dropped (``drop_last``) as in training.
    """

    def __init__(self, n: int, global_batch: int, seed: int, epoch: int, rank: int, world: int) -> None:
        self.n, self.global_batch, self.seed, self.epoch = n, global_batch, seed, epoch
        self.rank, self.world = rank, world
        self.local = global_batch // world

    def set_epoch(self, epoch: int) -> None:
        """The permutation of ``epoch`` from the next iteration on (one loader serves every epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.n // self.global_batch) * self.local

    def __iter__(self) -> Iterator[int]:
        from mambaad.engine.seed import epoch_generator

        perm = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)).tolist()
        for s in range(self.n // self.global_batch):
            start = s * self.global_batch + self.rank * self.local
            yield from perm[start : start + self.local]


# ---------------------------------------------------------------------------------------- SyncBN
class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with a gradient: each rank's input feeds every rank's output, so grads are summed."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class AllReduceBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole global batch, on any device.

    It all-reduces the per-channel sum, sum of squares and count through a differentiable all-reduce, so
    forward and backward equal BatchNorm over the concatenated batch. Unlike ``nn.SyncBatchNorm`` (CUDA
    only) it runs on gloo too and never synchronises the host with the device (``nn.SyncBatchNorm`` drops
    empty ranks with a boolean mask: 3 host syncs per layer and step); every rank here has a non-empty
    batch (the sampler splits the global batch evenly). On 2 H200s it was nevertheless slower than
    ``nn.SyncBatchNorm`` (more, smaller kernels and per-layer all-reduces in the backward), so CUDA runs
    use ``nn.SyncBatchNorm`` unless ``train.ddp_sync_bn: allreduce``.
    """

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        if not (self.training and is_initialized()):
            return super().forward(x)
        c = x.shape[1]
        count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])  # (2C + 1,)
        stats = _AllReduceSum.apply(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c : 2 * c] / n - mean * mean  # biased, as BatchNorm normalises with
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * (n / (n - 1)).clamp(min=1)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
                self.num_batches_tracked.add_(1)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def _is_trainable_bn(m: nn.Module) -> bool:
    return isinstance(m, nn.BatchNorm2d) and any(p.requires_grad for p in m.parameters(recurse=False))


def convert_sync_batchnorm(model: nn.Module, device: torch.device, kind: str = "torch") -> int:
    """Swap every *trainable* BatchNorm2d of ``model`` for a synchronised one, in place; returns the count.

    The frozen encoder's BatchNorm (no trainable parameters, always eval) is left alone: converting it
    would only add communication. ``kind`` (``train.ddp_sync_bn``): ``"allreduce"`` =
    :class:`AllReduceBatchNorm` on any device, ``"torch"`` = ``nn.SyncBatchNorm`` on CUDA (elsewhere
    :class:`AllReduceBatchNorm`, the only one that runs on gloo). Parameters and buffers are kept.
    """
    if kind not in ("allreduce", "torch"):
        raise ConfigError(f"train.ddp_sync_bn: unknown kind {kind!r} (use allreduce or torch)")
    swaps: list[tuple[nn.Module, str, nn.BatchNorm2d]] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if _is_trainable_bn(child) and not isinstance(child, (nn.SyncBatchNorm, AllReduceBatchNorm)):
                swaps.append((parent, name, child))
    for parent, name, bn in swaps:
        cls = nn.SyncBatchNorm if kind == "torch" and device.type == "cuda" else AllReduceBatchNorm
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
        new.train(bn.training)
        setattr(parent, name, new)
    return len(swaps)


class LossModule(nn.Module):
    """``forward(images) = model.training_loss(images)``: DDP hooks only ``forward``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:  # (B, 3, S, S) -> ()
        return self.model.training_loss(images)


# ------------------------------------------------------------------------------------ DDP options
TORCH_DEFAULT_BUCKET_MB = 25.0  # DDP's bucket_cap_mb when not given (then with a 1 MiB first bucket)


def ddp_kwargs(train: TrainConfig) -> dict[str, Any]:
    """``DistributedDataParallel`` keyword arguments for the ``train.ddp_*`` options.

    Only options that differ from PyTorch's defaults are passed, so the defaults build exactly the DDP
    of a plain ``DistributedDataParallel(module)`` (``ddp_bucket_mb`` 25 passes nothing: PyTorch then
    also keeps its small first bucket). Buffer syncing is switched off through ``forward_sync_buffers``
    where this PyTorch has it (``broadcast_buffers`` is deprecated there), else ``broadcast_buffers``.

    Raises:
        ConfigError: ``ddp_batched_grad_copy`` with a PyTorch whose DDP lacks it.
    """
    from torch.nn.parallel import DistributedDataParallel

    accepted = inspect.signature(DistributedDataParallel.__init__).parameters
    kwargs: dict[str, Any] = {}
    if train.ddp_bucket_mb != TORCH_DEFAULT_BUCKET_MB:
        kwargs["bucket_cap_mb"] = train.ddp_bucket_mb
    if train.ddp_static_graph:
        kwargs["static_graph"] = True
    if train.ddp_gradient_as_bucket_view:
        kwargs["gradient_as_bucket_view"] = True
    if not train.ddp_broadcast_buffers:
        key = "forward_sync_buffers" if "forward_sync_buffers" in accepted else "broadcast_buffers"
        kwargs[key] = False
    if train.ddp_batched_grad_copy:
        if "batched_grad_copy" not in accepted:
            raise ConfigError(
                f"train.ddp_batched_grad_copy: this PyTorch ({torch.__version__}) has no batched_grad_copy "
                "in DistributedDataParallel; set it to false"
            )
        kwargs["batched_grad_copy"] = True
    return kwargs


def comm_hook(name: str) -> Any:
    """The DDP communication hook ``train.ddp_comm_hook`` names, or None for ``"none"``.

    ``bf16`` / ``fp16`` cast each gradient bucket to half precision, all-reduce it (half the bytes) and
    cast the average back to fp32; bf16 keeps fp32's range (no overflow), fp16 three more mantissa bits.
    """
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    hooks = {"bf16": default_hooks.bf16_compress_hook, "fp16": default_hooks.fp16_compress_hook}
    if name == "none":
        return None
    if name not in hooks:
        raise ConfigError(f"train.ddp_comm_hook: unknown hook {name!r} (use none, bf16 or fp16)")
    return hooks[name]


def wrap_ddp(
    module: nn.Module, device: torch.device, train: TrainConfig, find_unused_parameters: bool = False
) -> DistributedDataParallel:
    """``DistributedDataParallel(module)`` on ``device`` with the ``train.ddp_*`` options applied."""
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
        **ddp_kwargs(train),
    )
    hook = comm_hook(train.ddp_comm_hook)
    if hook is not None:
        ddp.register_comm_hook(None, hook)  # state None: the default process group
    return ddp


def describe_ddp(train: TrainConfig) -> str:
    """The ``train.ddp_*`` options that differ from the defaults, for the log ("" when none do)."""
    from mambaad.config import TrainConfig

    default = TrainConfig()
    names = [n for n in vars(default) if n.startswith("ddp_")]
    return ", ".join(
        f"{n[4:]}={getattr(train, n)}" for n in names if getattr(train, n) != getattr(default, n)
    )


# ------------------------------------------------------------------------------------- collectives
def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (in rank order), None elsewhere; ``[obj]`` when not distributed."""
    if not is_initialized():
        return [obj]
    out: list[Any] | None = [None] * get_world_size() if is_main_process() else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` on every rank (in rank order); ``[obj]`` when not distributed."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself when not distributed)."""
    if not is_initialized():
        return obj
    box = [obj if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
