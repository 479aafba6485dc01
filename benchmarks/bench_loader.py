"""Training data loader throughput: can decode + resize keep up with the GPU step?

    PYTHONPATH=src python benchmarks/bench_loader.py [--root DATA] [--size 1024] [--workers 2] [--epochs 3]

Iterates the trainer's own loader (``engine.trainer.train_loader``: one loader for the run, workers kept
between epochs) over the training images of ``--root`` (default: a synthetic set written at ``--size`` px,
as large as MVTec's images), once with every image decoded each epoch and once with
``data.cache_images`` (decoded, resized and cropped once, kept as uint8). Prints the one-off cache build
time and items/s per epoch, plus the single-process decode rate. Compare with the GPU step: 205 img/s
on one H200, 400 on two (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mambaad.config import load_config
from mambaad.data import AnomalyDataset, make_synthetic_dataset, read_dataset
from mambaad.engine.trainer import train_loader


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", help="a data set root (default: synthetic images at --size px)")
    p.add_argument("--size", type=int, default=1024, help="synthetic image size")
    p.add_argument("--per-class", type=int, default=48, help="synthetic training images per class")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (
            Path(args.root)
            if args.root
            else make_synthetic_dataset(
                Path(tmp) / "set", classes=2, seed=0, size=args.size, train=args.per_class, test=2
            )
        )
        samples = [s for s in read_dataset(root) if s.split == "train"]
        cfg = load_config(
            None,
            [f"data.num_workers={args.workers}", f"train.batch_size={args.batch_size}", "train.device=cpu"],
        )
        t0 = time.perf_counter()
        for s in samples[:16]:
            AnomalyDataset([s])[0]
        print(f"{len(samples)} training images; 1 process: {16 / (time.perf_counter() - t0):.1f} items/s")
        for cache in (False, True):
            t0 = time.perf_counter()
            ds = AnomalyDataset(samples, cfg.data.image_size, cfg.data.crop_size, cache=cache)
            build = time.perf_counter() - t0
            loader, sampler = train_loader(ds, cfg, 0, torch.device("cpu"))
            rates = []
            for epoch in range(args.epochs):
                sampler.set_epoch(epoch)
                t0 = time.perf_counter()
                n = sum(batch["image"].shape[0] for batch in loader)
                rates.append(n / (time.perf_counter() - t0))
            print(
                f"cache={cache!s:5} build {build:6.2f} s; {args.workers} workers, items/s per epoch: "
                + ", ".join(f"{r:.1f}" for r in rates)
            )
            del loader
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
