"""DDP training throughput on synthetic random batches, at a fixed per-GPU batch (run under torchrun).

    python -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/bench_ddp.py --per-gpu-batch 16

Each step is the engine's: SyncBN in the trainable BatchNorm layers, DDP gradient all-reduce, gradient
clipping at 5 and AdamW. Rank 0 prints one JSON line with the global images per second. Also runs as a
single process (world of 1, no DDP) for the 1-GPU baseline. Random images are enough for speed: the
data loader is not what is measured (see the short synthetic training in bench_ddp.sh for that).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mambaad.config import load_config
from mambaad.engine import distributed as dist
from mambaad.engine.optim import build_optimizer
from mambaad.engine.trainer import _wrap_ddp, build_model, resolve_device


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-gpu-batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=40, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--config", default=None, help="YAML run config (default: the official recipe)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.scan_backend=triton")
    args = p.parse_args()

    cfg = load_config(args.config, ["model.encoder_weights=none", *args.overrides])
    device = dist.init_from_env(resolve_device(cfg.train.device))
    world = dist.get_world_size()
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg).to(device)
    if world > 1:
        dist.convert_sync_batchnorm(model, device)
    optimizer = build_optimizer(model, cfg.train)
    ddp = _wrap_ddp(model, device, cfg) if world > 1 else None
    params = [q for _, q in model.trainable_parameters()]
    model.train()
    s = args.image_size
    images = torch.randn(args.per_gpu_batch, 3, s, s, device=device)  # (B, 3, S, S)

    def step() -> None:
        loss = ddp(images) if ddp is not None else model.training_loss(images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()
    seconds = time.perf_counter() - t0
    if dist.is_main_process():
        out = {
            "world_size": world,
            "per_gpu_batch": args.per_gpu_batch,
            "global_batch": args.per_gpu_batch * world,
            "image_size": s,
            "img_per_s": round(args.steps * args.per_gpu_batch * world / seconds, 1),
            "ms_per_step": round(1000 * seconds / args.steps, 2),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "scan_backend": cfg.model.scan_backend,
        }
        print(json.dumps(out), flush=True)
    dist.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
