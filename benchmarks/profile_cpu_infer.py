"""Where the time of one CPU inference goes: encoder, bottleneck, decoder (scan vs the rest), anomaly maps.

Official configuration (ResNet34, Hilbert, 8 directions, depths 3/4/6/3, random weights), batch 1, 256^2.
Wall-clock per part from forward hooks (the minimum over ``--repeats`` runs after a warm-up), plus the
top torch operators of one run.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/profile_cpu_infer.py --backend auto --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

# isort: off
import mambaad  # noqa: F401  (before torch, as in the mambaad command: sets libgomp's spin, mambaad._openmp)
import torch

# isort: on
from mambaad.models import decoder as decoder_mod
from mambaad.models.registry import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (convolutions and matmuls)")
    p.add_argument("--ops", type=int, default=15, help="rows of the operator table (0: none)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model("mambaad", encoder="resnet34", scan_backend=args.backend).eval()
    x = torch.randn(args.batch_size, 3, 256, 256)
    times: dict[str, float] = defaultdict(float)

    def timed(name: str, module: torch.nn.Module) -> None:
        start: list[float] = []
        module.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))
        module.register_forward_hook(
            lambda *_: times.__setitem__(name, times[name] + time.perf_counter() - start.pop())
        )

    timed("encoder", model.encoder)
    timed("bottleneck", model.bottleneck)
    for i, stage in enumerate(model.decoder.stages):
        timed(f"decoder stage {i}", stage)
    for m in model.decoder.modules():
        if isinstance(m, decoder_mod.SS2D):
            timed("  SS2D (all stages)", m)
    for method in ("_scan_fused", "_scan_gathered"):  # the scan incl. projections, per SS2D call
        original = getattr(decoder_mod.SS2D, method)

        def wrapper(self, *a, _f=original, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = _f(self, *a, **kw)
            times["    scan + x/dt projections"] += time.perf_counter() - t0
            return out

        setattr(decoder_mod.SS2D, method, wrapper)

    best: dict[str, float] = {}
    for rep in range(args.repeats + 1):
        times.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=args.bf16):
            model.predict(x)
        times["total (predict)"] = time.perf_counter() - t0
        times["CPU time of the process"] = time.process_time() - c0
        enc_dec = times["encoder"] + times["bottleneck"] + sum(times[f"decoder stage {i}"] for i in range(4))
        times["maps + scores"] = times["total (predict)"] - enc_dec
        if rep:  # rep 0 is the warm-up (compiles numba, builds scan orders)
            best = {k: min(v, best.get(k, v)) for k, v in times.items()}
    print(
        f"backend={args.backend} threads={args.threads} batch={args.batch_size} bf16={args.bf16} "
        f"(min of {args.repeats}; wall-clock unless noted)"
    )
    for name in ["total (predict)", "CPU time of the process", "encoder", "bottleneck", *[f"decoder stage {i}" for i in range(4)],
                 "  SS2D (all stages)", "    scan + x/dt projections", "maps + scores"]:  # fmt: skip
        print(f"  {name:30s} {1000 * best.get(name, 0.0):9.1f} ms")
    if args.ops:
        with (
            torch.profiler.profile() as prof,
            torch.inference_mode(),
            torch.autocast("cpu", torch.bfloat16, enabled=args.bf16),
        ):
            model.predict(x)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


if __name__ == "__main__":
    main()
