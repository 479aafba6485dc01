"""One optimisation step (forward + loss, backward, gradient clipping, optimizer), eager or from a CUDA graph.

A training step of MambaAD launches about 1,500 kernels; on one GPU the host keeps up, but under DDP the
host-side work of SyncBatchNorm and the gradient buckets made the step host-bound (docs/benchmarks.md,
"Multi-GPU"). With ``cuda_graph=True`` the whole step (forward, backward with DDP's all-reduce, clipping
and the fused AdamW update) is captured once and then replayed with one launch: the host only copies the
next batch into the graph's input buffer. PyTorch's recipe is followed: a few eager warm-up steps on a side
stream first (11 under DDP), the optimizer ``capturable``, the gradients allocated inside the capture.

The learning rate is a number baked into the captured update, so a schedule change (``set_lr_factor``)
triggers a new capture at the next step; MambaAD's schedule changes once per run. The batch shape must not
change between steps (the trainer drops the last partial batch).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from mambaad.errors import ConfigError

WARMUP_STEPS = 3  # eager steps before the capture (lazy initialisation: cuBLAS, Triton, AdamW state)
DDP_WARMUP_STEPS = 11  # DDP needs this many eager iterations before a full-backward capture (PyTorch docs)


def graph_unsupported(model: nn.Module, device: torch.device) -> str | None:
    """Why the training step of ``model`` on ``device`` cannot be captured, or None when it can.

    The captured step must be the same every time and must not read values on the host. Only MambaAD's
    step is captured (and checked on a GPU, ``benchmarks/check_train_graph.py``); the baselines run eager:
    DeSTSeg's step changes with the iteration (``set_train_progress``), UniAD's forward reads a value on
    the host, and the others were never checked under capture.
    """
    if device.type != "cuda":
        return f"train.cuda_graph needs a CUDA device, got {device}"
    name = type(model).__name__
    if name != "MambaAD" or hasattr(model, "set_train_progress"):
        return f"train.cuda_graph supports the mambaad model only, got {name}"
    return None


def use_cuda_graph(setting: bool | None, model: nn.Module, device: torch.device) -> bool:
    """``train.cuda_graph``: None = wherever it works, True = required (ConfigError if it cannot), False = off."""
    if setting is False:
        return False
    reason = graph_unsupported(model, device)
    if reason is not None and setting is True:
        raise ConfigError(reason)
    return reason is None


def prepare_nccl_for_capture() -> None:
    """Before ``init_process_group``: NCCL's asynchronous error handling polls the work of a captured
    all-reduce from its watchdog thread; PyTorch's recipe for capturing DDP's backward switches it off."""
    for name in ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING"):
        os.environ.setdefault(name, "0")


@contextlib.contextmanager
def side_stream(stream: torch.cuda.Stream | None) -> Iterator[None]:
    """Run the block on ``stream`` (None: the current stream), ordered after and before the current one.

    Warm-up steps before a capture and the construction of DDP must not run on the default stream.
    """
    if stream is None:
        yield
        return
    stream.wait_stream(torch.cuda.current_stream(stream.device))
    with torch.cuda.stream(stream):
        yield
    torch.cuda.current_stream(stream.device).wait_stream(stream)


@contextlib.contextmanager
def matmul_tf32(enabled: bool) -> Iterator[None]:
    """Inside the block fp32 matrix products may use TF32 tensor cores (10-bit mantissa inputs, fp32
    accumulation) when ``enabled``; the previous setting is restored after it."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = before or enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


# Versions dynamo may compile of one function (its default: 8) before it runs it eagerly; see compile_forward.
RECOMPILE_LIMIT = 64


def compile_forward(model: nn.Module) -> nn.Module:
    """``torch.compile`` the model's forward in place (once; a second call changes nothing).

    Inductor fuses the LayerNorms, activations, gating and residual sums around the scan, whose fused
    kernels stay out of the graph (``SS2D._scan_fused`` is ``torch.compiler.disable``), and the model's
    ``anomaly_map`` where it has one (the cosine maps, upsampling and Gaussian blur). The first steps
    compile (a minute or two on a GPU machine); the CUDA-graph capture comes after them. On an H200:
    10-25 % more img/s in training and inference (docs/benchmarks.md, sessions 7-8).

    The graph breaks at the scans make every block's forward its own compiled function, specialised per
    stage shape and per mode (training, no-grad evaluation, autocast): one process that trains and
    evaluates passed dynamo's default of 8 versions per function, past which it runs that function eagerly
    without saying so in the results. Hence :data:`RECOMPILE_LIMIT`."""
    if not getattr(model, "_forward_compiled", False):
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
        model.forward = torch.compile(model.forward)
        if callable(getattr(model, "anomaly_map", None)):  # maps + blur fused: -0.5 ms per batch of 16
            model.anomaly_map = torch.compile(model.anomaly_map)
        model._forward_compiled = True
    return model


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Let ``optimizer.step()`` be captured: every group ``capturable`` and every ``step`` counter a float32
    tensor on its parameter's device (a state loaded from a CPU run keeps it on the CPU)."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and "step" in state:
                state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(p.device)


class TrainStep:
    """Callable ``step(images) -> loss`` (a detached 0-d tensor on the device; no host sync).

    Args:
        loss_fn: images (B, 3, S, S) -> scalar loss (the model's ``training_loss`` or its DDP wrapper).
        optimizer: Steps the ``params``; with ``cuda_graph`` it must accept ``capturable=True`` (Adam,
            AdamW: :func:`make_capturable` is applied before the first step).
        params: The trainable parameters (for clipping).
        grad_clip: Global L2 norm clip; 0 disables.
        autocast: Context manager entered around the forward (bf16 autocast or a null context).
        cuda_graph: Capture the step after the warm-up and replay it.
        warmup: Eager steps before the capture (default 3; 11 when ``ddp``).
        stream: The side stream for the warm-up (create it before wrapping DDP, which must be built on
            it: :func:`side_stream`); None: a new one.
        ddp: The step runs a DDP module (more warm-up steps).
        tf32: fp32 matrix products of the forward and backward on TF32 tensor cores (``train.tf32``);
            evaluation, outside the step, keeps full fp32.
    """

    def __init__(
        self,
        loss_fn: Callable[[Tensor], Tensor],
        optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
        grad_clip: float,
        autocast: Callable[[], contextlib.AbstractContextManager],
        cuda_graph: bool = False,
        warmup: int | None = None,
        stream: torch.cuda.Stream | None = None,
        ddp: bool = False,
        tf32: bool = False,
    ) -> None:
        self.loss_fn, self.optimizer, self.params, self.tf32 = loss_fn, optimizer, params, tf32
        self.grad_clip, self.autocast, self.cuda_graph = grad_clip, autocast, cuda_graph
        self.warmup = warmup if warmup is not None else (DDP_WARMUP_STEPS if ddp else WARMUP_STEPS)
        self.captures = 0  # how many times the step was captured (1 + one per learning-rate change)
        self._stream = stream
        self._graph: torch.cuda.CUDAGraph | None = None
        self._images: Tensor | None = None  # the graph's input buffer (B, 3, S, S)
        self._loss: Tensor | None = None  # the graph's output
        self._lrs: list[float] = []  # learning rates baked into the captured update
        self._eager_steps = 0

    def _run(self, images: Tensor) -> Tensor:
        """The step itself: forward + loss, backward, clip, update; returns the detached loss."""
        with matmul_tf32(self.tf32):
            with self.autocast():
                loss = self.loss_fn(images)
            loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def __call__(self, images: Tensor) -> Tensor:
        if not self.cuda_graph:
            self.optimizer.zero_grad(set_to_none=True)
            return self._run(images)
        if self._eager_steps < self.warmup:
            if self._eager_steps == 0:  # here, not at construction: a resume loads the optimizer after it
                make_capturable(self.optimizer)
            self._eager_steps += 1
            if self._stream is None:
                self._stream = torch.cuda.Stream(images.device)
            self.optimizer.zero_grad(set_to_none=True)
            with side_stream(self._stream):
                return self._run(images).clone()
        lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        if self._graph is None or lrs != self._lrs or images.shape != self._images.shape:
            self._capture(images, lrs)
        assert self._images is not None and self._graph is not None and self._loss is not None
        self._images.copy_(images)
        self._graph.replay()
        return self._loss

    def _capture(self, images: Tensor, lrs: list[float]) -> None:
        """Record one step into a new CUDA graph; its gradients and temporaries live in the graph's pool."""
        self._graph = None  # free the previous graph (and its pool) first
        self.optimizer.zero_grad(set_to_none=True)  # backward inside the capture allocates the gradients
        torch.cuda.synchronize(images.device)
        self._images = torch.empty_like(images)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the data loader's pin-memory thread and NCCL's watchdog may call CUDA meanwhile
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._loss = self._run(self._images)
        self._graph, self._lrs = graph, lrs
        self.captures += 1


__all__ = [
    "TrainStep",
    "compile_forward",
    "graph_unsupported",
    "make_capturable",
    "matmul_tf32",
    "prepare_nccl_for_capture",
    "side_stream",
    "use_cuda_graph",
]
