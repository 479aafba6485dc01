"""A/B of the inference-only speed choices: compiled inference with some of them switched back off.

Each choice computes the same maps as the plain form it replaces; this script times the model with a chosen
set switched off (one process per row: every row compiles afresh), or checks compiled against eager maps.

    inproj in_proj as two products (off: one product and its chunk)
    blur   the anomaly map compiled, its blur as shifted slices (off: the eager map and its convolutions)
    dwcl   the local branches' depthwise convolutions on channels-last input (off: as the 1x1 conv leaves it)
  under autocast (--bf16) only:
    encoder  the encoder's stages channels-last, its features in fp32 (off: as timm runs it)
    u32      SS2D casts the scan's u to fp32 in the compiled graph (off: the scan casts it)
    delta16  the low-rank delta products in autocast's dtype (off: in fp32)
    proj     x_proj as one Triton kernel writing fp32 rows by direction (off: the product and its copy)
  in eval mode without autograd:
    consts   SS2D's -exp(A_logs) and cast x_proj weight kept (off: computed per call)

    PYTHONPATH=src python benchmarks/ab_infer.py                      # all on (the landed code)
    PYTHONPATH=src python benchmarks/ab_infer.py --off inproj,blur    # those two off
    PYTHONPATH=src python benchmarks/ab_infer.py --bf16 --profile 40  # bf16 autocast, then a kernel profile
    PYTHONPATH=src python benchmarks/ab_infer.py --bf16 --on rows     # a candidate (CANDIDATES) on
    PYTHONPATH=src python benchmarks/ab_infer.py --bf16 --scan-set PROJ_BLOCK_L=64  # a triton_scan setting
    PYTHONPATH=src python benchmarks/ab_infer.py --check              # compiled vs eager maps, fp32 convolutions
    PYTHONPATH=src python benchmarks/ab_infer.py --mode max-autotune-no-cudagraphs --inductor freezing=1
One JSON line per row: img/s, ms per batch, peak GB, and the switches and options it ran with.
"""

from __future__ import annotations

import argparse
import functools
import json
import types

import torch
import torch._inductor.config
import torch.nn.functional as F
from profile_step import print_kernel_table
from torch import nn

from mambaad.bench import make_step, measure
from mambaad.engine.step import compile_forward
from mambaad.models import decoder, encoder
from mambaad.models.registry import create_model
from mambaad.scan import triton_scan

CHOICES = ("inproj", "blur", "dwcl", "encoder", "u32", "delta16", "proj", "consts")
# built but not yet timed, switched on with --on:
#   rows  x_proj's output copied into rows by direction by a Triton kernel (triton_scan.ROWS_KERNEL; only
#         where the proj kernel is off)
CANDIDATES = ("rows",)


def switch_on(names: set[str]) -> None:
    """Switch the named candidates on (before the model is built)."""
    if "rows" in names:
        triton_scan.ROWS_KERNEL = True


def switch_off(names: set[str]) -> None:
    """Patch the named choices back to their plain forms (before the model is built and compiled)."""
    if "inproj" in names:
        decoder.SS2D._in_proj = lambda self, x: self.in_proj(x).chunk(2, dim=-1)
    if "dwcl" in names:
        decoder.LocalBranch.forward = lambda self, x: self.pw_out(self.dw(self.pw_in(x)))
    if "encoder" in names:
        encoder.Encoder._inference_under_autocast = torch.no_grad()(lambda self, x: self.body(x))
    if "u32" in names:
        decoder.SS2D._scan_u = staticmethod(lambda x, needs_grad: x)
    if "delta16" in names:
        triton_scan._autocast_dtype = lambda device, default: default
    if "proj" in names:
        triton_scan.PROJECTION_KERNEL = False
    if "consts" in names:  # the exponential and the weight cast each call
        kept = decoder.SS2D._scan_constants
        decoder.SS2D._scan_constants = lambda self, dtype: (
            decoder._SCAN_CONSTANTS.clear(),
            kept(self, dtype),
        )[1]


def build(names: set[str], device: torch.device) -> nn.Module:
    model = create_model("mambaad", encoder="resnet34", scan_backend="triton").to(device)
    compile_forward(model)
    if "blur" in names:  # the eager map again
        model.anomaly_map = types.MethodType(type(model).anomaly_map, model)
    return model


def check(device: torch.device) -> dict:
    """Compiled against eager maps on one random batch, cuDNN convolutions in fp32 (else the two runs may
    pick different TF32 algorithms, ~1e-4 apart)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = create_model("mambaad", encoder="resnet34", scan_backend="triton").to(device).eval()
    x = torch.randn(16, 3, 256, 256, device=device)
    with torch.no_grad():
        eager_map, eager_score = model.predict(x)
        compile_forward(model)
        maps, scores = model.predict(x)
    return {
        "check": "compiled vs eager",
        "map_max_abs": float((maps - eager_map).abs().max()),
        "score_max_abs": float((scores - eager_score).abs().max()),
        "map_max": float(eager_map.abs().max()),
        "ok": bool(F.l1_loss(maps, eager_map) < 1e-5 and (maps - eager_map).abs().max() < 1e-4),
    }


def names_in(p: argparse.ArgumentParser, option: str, value: str, known: tuple[str, ...]) -> set[str]:
    """The comma-separated names of ``option``; one not in ``known`` is a usage error."""
    names = {n for n in value.split(",") if n}
    if names - set(known):
        p.error(f"{option}: unknown name(s) {sorted(names - set(known))}; known: {', '.join(known)}")
    return names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--off", default="", help=f"comma-separated choices to switch off: {','.join(CHOICES)}")
    p.add_argument(
        "--on", default="", help=f"comma-separated candidates to switch on: {','.join(CANDIDATES)}"
    )
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--fp32", action="store_true", help="fp32 matrix products (default TF32)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast around the whole inference")
    p.add_argument("--profile", type=int, default=0, metavar="ROWS", help="then print a kernel profile")
    p.add_argument("--check", action="store_true", help="compiled vs eager maps instead of timing")
    p.add_argument("--mode", help="torch.compile mode (default: torch's default)")
    p.add_argument("--inductor", action="append", default=[], help="KEY=INT inductor config, repeatable")
    p.add_argument("--scan-set", action="append", default=[], help="KEY=INT triton_scan setting, repeatable")
    triton_scan.add_tuning_arguments(p)
    args = p.parse_args()
    triton_scan.apply_tuning_arguments(args)
    device = torch.device("cuda")
    if args.check:
        print(json.dumps(check(device)), flush=True)
        return 0
    names = names_in(p, "--off", args.off, CHOICES)
    on = names_in(p, "--on", args.on, CANDIDATES)
    switch_off(names)
    switch_on(on)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.mode:
        torch.compile = functools.partial(torch.compile, mode=args.mode)
    for item in args.inductor:
        key, value = item.split("=")
        setattr(torch._inductor.config, key, type(getattr(torch._inductor.config, key))(int(value)))
    for item in args.scan_set:
        key, value = item.split("=")
        if not isinstance(getattr(triton_scan, key, None), int):
            p.error(f"--scan-set: triton_scan has no integer setting {key!r}")
        setattr(triton_scan, key, int(value))
    model = build(names, device)
    r = measure(
        model,
        train=False,
        batch_size=args.batch_size,
        steps=args.steps,
        cuda_graph=True,
        tf32=not args.fp32,
        bf16=args.bf16,
    )
    row = {
        "off": sorted(names),
        "on": sorted(on),
        "bf16": args.bf16,
        "cudnn_benchmark": args.cudnn_benchmark,
        "mode": args.mode,
        "inductor": args.inductor,
        "triton_fwd": args.triton_fwd,
        "scan_set": args.scan_set,
        "img_per_s": round(r.img_per_s, 1),
        "ms": round(r.ms_per_step, 3),
    }
    row["peak_gb"] = round(r.peak_mem_gb or 0.0, 3)
    print(json.dumps(row), flush=True)
    if args.profile:  # the same compiled model, without the CUDA graph (the profiler names its kernels)
        x = torch.randn(args.batch_size, 3, 256, 256, device=device)
        step = make_step(model, x, train=False, bf16=args.bf16, tf32=not args.fp32)
        print_kernel_table(step, 3, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
