"""Parameters, FLOPs and measured inference img/s of every registered model at its paper configuration.

    PYTHONPATH=src python benchmarks/baselines_efficiency.py [--image-size 256] [--models rd4ad uniad ...]
        [--device cpu|cuda] [--batch-sizes 1 8] [--steps 5] [--threads N] [--no-flops] [--no-speed]

FLOPs are counted on CPU at batch 1 (MambaAD's count runs the reference selective scan: minutes at 256 px
on a CPU). img/s is ``model.predict`` (forward, anomaly map, smoothing, image score) on random images on
``--device``, after warm-up, averaged over ``--steps`` batches (``mambaad.bench.measure``).

Prints a Markdown table for docs/results.md, then the device and the load average. Encoder weights are not
needed (random init): neither counts nor speed depend on the values.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mambaad.bench import measure
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
    parser.add_argument("--device", default="cpu", help="device of the img/s measurement (cpu, cuda, ...)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="img/s at these batches")
    parser.add_argument("--steps", type=int, default=5, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-flops", action="store_true", help="skip the (slow on CPU) FLOP count")
    parser.add_argument("--no-speed", action="store_true", help="skip the img/s measurement")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    speed_cols = [] if args.no_speed else [f"img/s b{b}" for b in args.batch_sizes]
    head = ["model", "encoder", "params (M)", "trainable (M)"]
    if not args.no_flops:
        head += ["GFLOPs", "of which scan", "GMACs"]
    head += speed_cols
    print("| " + " | ".join(head) + " |")
    print("|---|---|" + "---:|" * (len(head) - 2))
    for name in args.models:
        encoder = PAPER_ENCODERS[name]
        options = {"image_size": args.image_size} if name == "uniad" else {}
        model = create_model(name, encoder=encoder, **options)
        cells = [name, encoder]
        if args.no_flops:
            total = sum(p.numel() for p in model.parameters())
            trainable = sum(p.numel() for _, p in model.trainable_parameters())
            cells += [f"{total / 1e6:.2f}", f"{trainable / 1e6:.2f}"]
        else:
            r = efficiency_report(model, args.image_size)
            cells += [f"{r['params'] / 1e6:.2f}", f"{r['trainable'] / 1e6:.2f}", f"{r['gflops']:.2f}"]
            cells += [f"{r['gflops_scan']:.2f}", f"{r['gmacs']:.2f}"]
        if not args.no_speed:
            model = model.to(device)
            for b in args.batch_sizes:
                res = measure(
                    model,
                    train=False,
                    batch_size=b,
                    image_size=args.image_size,
                    steps=args.steps,
                    warmup=args.warmup,
                )
                cells.append(f"{res.img_per_s:.2f}")
        print("| " + " | ".join(cells) + " |", flush=True)
    load = os.getloadavg()
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} thread(s)"
    )
    print(
        f"\ndevice: {where}; load average (1/5/15 min) at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"date: {time.strftime('%Y-%m-%d')}; torch {torch.__version__}")


if __name__ == "__main__":
    main()
