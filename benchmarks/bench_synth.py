"""Speed of the synthetic data generator (and of reading it back through AnomalyDataset).

Usage:
    PYTHONPATH=src python benchmarks/bench_synth.py [--classes 4] [--train 60] [--test 30] [--size 256] [--repeat 3]

Prints images/s of ``make_synthetic_dataset`` (render + PNG write, masks included in the time, not in the
count), the render-only rate, and the AnomalyDataset item rate (decode + resize + normalize, 1 process).
Reports the best of ``--repeat`` runs, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mambaad.data import AnomalyDataset, make_synthetic_dataset, read_dataset
from mambaad.data.synth import KINDS, render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--test", type=int, default=30)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n_images = args.classes * (args.train + args.test)

    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            t0 = time.perf_counter()
            out = make_synthetic_dataset(
                Path(tmp) / f"run{r}", args.classes, 0, args.size, args.train, args.test
            )
            best = min(best, time.perf_counter() - t0)
        print(f"make_synthetic_dataset: {n_images} images in {best:.2f} s -> {n_images / best:.1f} images/s")

        kinds = [KINDS[i % len(KINDS)] for i in range(args.classes)]
        t0 = time.perf_counter()
        for ci, kind in enumerate(kinds):
            for i in range(20):
                render(kind, 0, ci, "train", i, args.size)
        dt = time.perf_counter() - t0
        print(f"render only (normal images): {20 * len(kinds) / dt:.1f} images/s")

        ds = AnomalyDataset(read_dataset(out), image_size=256, crop_size=256)
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            best = min(best, time.perf_counter() - t0)
        print(f"AnomalyDataset items (256 px, 1 process): {len(ds) / best:.1f} items/s")


if __name__ == "__main__":
    main()
