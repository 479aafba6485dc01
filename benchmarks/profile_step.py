"""Where the time of one training step or inference goes: CUDA kernels grouped by name (torch.profiler).

PYTHONPATH=src python benchmarks/profile_step.py --batch-size 16 --infer
PYTHONPATH=src python benchmarks/profile_step.py --batch-size 16 --train --bf16
PYTHONPATH=src python benchmarks/profile_step.py --batch-size 16 --infer --tf32 --rows 40
PYTHONPATH=src python benchmarks/profile_step.py --batch-size 16 --train --tf32 --compile
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from mambaad.bench import make_step
from mambaad.engine.step import compile_forward
from mambaad.models.registry import create_model
from mambaad.scan import triton_scan


def print_kernel_table(step: Callable[[], None], steps: int, rows: int) -> None:
    """Profile ``steps`` calls of ``step`` (after 3 untimed ones) and print the CUDA kernels grouped by
    name, the longest first: ms per step, share, launches per step."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    total = sum(e.self_device_time_total for e in events)
    print(f"total CUDA kernel time per step: {total / steps / 1000:.2f} ms")
    for e in events[:rows]:
        ms = e.self_device_time_total / steps / 1000
        print(
            f"{ms:8.3f} ms {100 * e.self_device_time_total / total:5.1f}% {e.count // steps:5d}x  {e.key[:90]}"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--train", action="store_true")
    p.add_argument("--infer", action="store_true")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--tf32", action="store_true", help="fp32 matrix products on TF32 tensor cores")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the model's forward (compile_forward)"
    )
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rows", type=int, default=25)
    triton_scan.add_tuning_arguments(p)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("profile_step: needs a CUDA device", file=sys.stderr)
        return 2
    triton_scan.apply_tuning_arguments(args)
    model = create_model("mambaad", encoder="resnet34").cuda()
    if args.compile:
        compile_forward(model)
    x = torch.randn(args.batch_size, 3, 256, 256, device="cuda")
    step = make_step(model, x, train=args.train, bf16=args.bf16, tf32=args.tf32)

    mode = "train" if args.train else "infer"
    print(
        f"== {mode} batch {args.batch_size} bf16={args.bf16} tf32={args.tf32} compile={args.compile}: "
        "CUDA time per step by kernel =="
    )
    print_kernel_table(step, args.steps, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
