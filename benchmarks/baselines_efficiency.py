"""Parameters and FLOPs of every registered model at its paper configuration (CPU, batch 1).

    PYTHONPATH=src python benchmarks/baselines_efficiency.py [--image-size 256] [--models rd4ad uniad ...]

MambaAD's count runs the reference selective scan on CPU (minutes at 256 px).

Prints a Markdown table for docs/results.md. Encoder weights are not needed (random init): the counts
do not depend on the values.
"""

from __future__ import annotations

import argparse
import time

import torch

from mambaad.models import create_model
from mambaad.models.efficiency import efficiency_report

PAPER_ENCODERS = {
    "mambaad": "resnet34",
    "rd4ad": "wide_resnet50_2",
    "uniad": "efficientnet_b4",
    "simplenet": "wide_resnet50_2",
    "destseg": "resnet18",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--models", nargs="+", default=list(PAPER_ENCODERS), choices=list(PAPER_ENCODERS))
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        "| model | encoder | params (M) | trainable (M) | GFLOPs | of which scan | GMACs | count time (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        encoder = PAPER_ENCODERS[name]
        options = {"image_size": args.image_size} if name == "uniad" else {}
        model = create_model(name, encoder=encoder, **options)
        start = time.perf_counter()
        r = efficiency_report(model, args.image_size)
        took = time.perf_counter() - start
        print(
            f"| {name} | {encoder} | {r['params'] / 1e6:.2f} | {r['trainable'] / 1e6:.2f} | {r['gflops']:.2f} "
            f"| {r['gflops_scan']:.2f} | {r['gmacs']:.2f} | {took:.1f} |"
        )


if __name__ == "__main__":
    main()
