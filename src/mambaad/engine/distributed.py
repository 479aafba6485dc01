"""Rank and world size in one place, so the single-process engine is ready for DDP later.

Every helper answers for the plain single-process case (rank 0 of a world of 1) when
``torch.distributed`` is not initialised; the engine asks only these functions, so adding DDP means
initialising the process group and wrapping the model, not hunting ``if rank == 0`` checks.
"""

from __future__ import annotations

import torch.distributed as dist


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
