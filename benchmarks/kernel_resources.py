"""Registers, spills and shared memory of the Triton step kernels on Hopper, computed without a GPU.

    PYTHONPATH=src python benchmarks/kernel_resources.py [--stages 1 2] [--arch 90] [--maxnreg 200 168]

Compiles each step kernel of ``mambaad.scan._triton_kernels`` for ``sm_<arch>`` with Triton's own
compiler and runs the ``ptxas -v`` that ships with Triton on its PTX: a register count near 255 or any
spill means few warps per SM, the first thing to check before spending GPU time on a kernel change.
Launch settings as ``triton_scan`` uses them for MambaAD (32 channels per program, N = 16, fp32 inputs,
chunk 16), for every ``PIPELINE_STAGES`` value given (the forward kernels have none). As at run time,
pointers, sizes and the strides that are multiples of 16 at MambaAD's shapes are specialised as such
(Triton's divisibility hints) and the strides equal to 1 as the constant 1: without them the kernels
vectorise differently and get other layouts and register counts. The GPU machine's Triton (3.6)
compiles differently from the one here (3.8); to see its registers, layouts and SASS, put it first on the
path: ``pip install --no-deps --target /tmp/t36 triton==3.6.0`` and ``PYTHONPATH=/tmp/t36:src`` (its
counts were within a register of Nsight Compute's on the H200, session 6). Compiling this way before a
GPU run also catches what the CPU interpreter lets through (session 10: constexprs inside a tuple).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from mambaad.scan import _triton_kernels as kern
from mambaad.scan.triton_scan import BWD_SEG_UNROLL, GATHER_MODE, ROW_SPLIT_UNROLL, ROW_UNROLL

# strides that are 1 at MambaAD's layouts (channels / states innermost): Triton specialises an integer
# argument equal to 1 as the constant 1
ONES = {"su_d": 1, "sd_d": 1, "sb_n": 1, "sc_n": 1, "so_d": 1}
BASE = {
    **ONES,
    "HAS_D": True,
    "HAS_BIAS": True,
    "SOFTPLUS": True,
    "BLOCK_D": 32,
    "BLOCK_N": 16,
    "ROW_VEC": True,
}
KERNELS = {
    "fwd_seq_kernel": {
        **BASE,
        "SAVE_STATES": True,
        "UNROLL": ROW_UNROLL,
        "SAVE_EVERY": 16,
        "SPLIT": True,
        "RANK": 0,  # dt_proj applied in the kernel only when L is not split (``triton_scan.ROW_LOW_RANK``)
    },
    "fwd_seg_kernel": {**BASE, "UNROLL": ROW_SPLIT_UNROLL},
    "bwd_seg_kernel": {**BASE, "UNROLL": BWD_SEG_UNROLL, "GATHER": GATHER_MODE["bwd_seg"]},
    "bwd_seq_kernel": {**BASE, "CHUNK": 16, "SPLIT": True},
}


def signature(fn: triton.JITFunction, constexprs: dict) -> dict[str, str]:
    """Argument types: fp32 tensors, int32 orders, int32 sizes and strides."""
    out = {}
    for name in fn.arg_names:
        if name in constexprs:
            out[name] = "constexpr"
        elif name.endswith("_ptr"):
            out[name] = "*i32" if name.startswith("ord") else "*fp32"
        else:
            out[name] = "i32"
    return out


def divisibility(fn: triton.JITFunction, constexprs: dict) -> dict:
    """Triton's run-time specialisation: 16-byte aligned pointers, D, L, N and every stride divisible by
    16 but the per-position ones of B and C (``sb_l``, ``sc_l``: rows of R + 2N elements); those of u,
    delta and the output are D, a multiple of 16 at every MambaAD stage."""
    attrs = {}
    for i, name in enumerate(fn.arg_names):
        wide = (
            name.endswith("_ptr")
            or name in ("D", "L", "N")
            or (name[0] == "s" and name not in ("sb_l", "sc_l"))
        )
        if name not in constexprs and wide:
            attrs[(i,)] = [["tt.divisibility", 16]]
    return attrs


def resources(fn: triton.JITFunction, constexprs: dict, arch: int, maxnreg: int | None = None) -> str:
    """ptxas's one-line summary (registers, spills) and Triton's shared-memory size of one compilation."""
    sig = signature(fn, constexprs)
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=divisibility(fn, constexprs))
    options = {"num_warps": 1, **({"maxnreg": maxnreg} if maxnreg else {})}
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(compiled.asm["ptx"])
    try:
        run = subprocess.run(
            [ptxas, f"-arch=sm_{arch}a", "-v", f.name, "-o", os.devnull], capture_output=True, text=True
        )
    finally:
        os.unlink(f.name)
    lines = [
        ln.split(":", 1)[-1].strip() for ln in (run.stdout + run.stderr).splitlines() if "registers" in ln
    ]
    spills = re.findall(r"(\d+) bytes spill stores", run.stdout + run.stderr)
    return f"{'; '.join(lines)}; spill stores {spills[0] if spills else '?'} B; shared {compiled.metadata.shared} B"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stages", type=int, nargs="*", default=[1, 2])
    p.add_argument("--arch", type=int, default=90)
    p.add_argument("--maxnreg", type=int, nargs="*", default=[], help="register caps to compile bwd_seq with")
    args = p.parse_args()
    for name, constexprs in KERNELS.items():
        fn = getattr(kern, name)
        for stages in args.stages if "STAGES" in fn.arg_names else [1]:
            used = {k: v for k, v in {**constexprs, "STAGES": stages}.items() if k in fn.arg_names}
            print(f"{name:15s} stages {stages}: {resources(fn, used, args.arch)}")
            for cap in args.maxnreg if name == "bwd_seq_kernel" else []:
                print(f"{name:15s} stages {stages} maxnreg {cap}: {resources(fn, used, args.arch, cap)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
