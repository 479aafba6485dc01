"""Latency of the deployed model, batch 1: onnxruntime on the exported graph vs eager PyTorch.

``--model official`` (default): the official configuration (ResNet34, Hilbert, 8 directions, depths
3/4/6/3), written as an official-format ``.pth`` with random weights (latency does not depend on them)
and loaded the way ``mambaad export`` / ``predict`` load one, so a run also checks that path.
``--model demo``: configs/demo.yaml's model (EfficientNet-Lite0, 4 directions, depths 1/1/1/1).
Eager PyTorch runs the same end-to-end module (normalisation, map, smoothing, score) with each scan
backend of ``--backends``; onnxruntime runs the graph ``mambaad export`` writes (``chunked`` scan).
The 1-minute load average is printed before and after every timed runtime (the machine is shared).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_deploy.py --threads 1 --onnx /tmp/official.onnx
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_deploy.py --threads 2 --onnx /tmp/official.onnx

``--onnx FILE`` exports there once and reuses the file in later runs (export of the official model
takes minutes on a CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def median_ms(fn: Callable[[], object], warmup: int, reps: int) -> tuple[float, float]:
    """(median, min) wall time of ``fn`` in ms after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def load1() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def build_deployed(kind: str, folder: Path) -> torch.nn.Module:
    """The end-to-end module of ``kind`` with random weights (seed 0)."""
    from mambaad.deploy.graph import DeployedModel
    from mambaad.deploy.predict import deployed_from_checkpoint
    from mambaad.models import create_model
    from mambaad.models.mambaad import MambaAD
    from mambaad.models.official import official_state_dict

    torch.manual_seed(0)
    if kind == "official":
        pth = folder / "mambaad_official_random.pth"
        torch.save({"net": official_state_dict(MambaAD().eval())}, pth)
        deployed, _ = deployed_from_checkpoint(pth, "cpu")  # the path of `mambaad export x.pth`
        deployed.threshold.fill_(0.5)
        return deployed.eval()
    model = create_model(
        "mambaad",
        encoder="efficientnet_lite0",
        encoder_weights=None,
        scan="hilbert",
        directions=4,
        depths=(1, 1, 1, 1),
        drop_path_rate=0.0,
        gaussian_sigma=4.0,
    ).eval()
    return DeployedModel(model, threshold=0.5).eval()


def main() -> None:
    import onnxruntime as ort

    from mambaad.deploy.export import export_onnx, scan_backend

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["official", "demo"], default="official")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads and onnxruntime intra-op threads")
    p.add_argument("--backends", default="sequential", help="eager scan backends, comma-separated")
    p.add_argument("--onnx", type=Path, default=None, help="export here once, reuse it afterwards")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        deployed = build_deployed(args.model, Path(tmp))
        x = torch.randint(0, 256, (1, 3, args.size, args.size), dtype=torch.uint8)
        path = args.onnx or Path(tmp) / "m.onnx"
        export_s = None
        if not path.is_file():
            t0 = time.perf_counter()
            export_onnx(deployed, path, args.size)
            export_s = time.perf_counter() - t0
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {"image": x.numpy()}
        before = load1()
        med, lo = median_ms(lambda: sess.run(None, feed), args.warmup, args.reps)
        rows.append(("onnxruntime " + ort.__version__ + " (exported graph)", med, lo, before, load1()))
        with torch.no_grad():
            ref = deployed(x)[0].numpy()
        diff = float(np.abs(sess.run(None, feed)[0] - ref).max())
        size_mb = path.stat().st_size / 2**20
    for backend in [b for b in args.backends.split(",") if b]:
        with torch.no_grad(), scan_backend(deployed, backend):
            before = load1()
            med, lo = median_ms(lambda: deployed(x), args.warmup, args.reps)
            rows.append((f"eager torch {torch.__version__} (`{backend}` scan)", med, lo, before, load1()))
    export = f"export {export_s:.0f} s" if export_s is not None else f"reused {path}"
    print(
        f"model {args.model}, size {args.size}, batch 1, {args.threads} thread(s) "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), {export}, onnx {size_mb:.0f} MiB, "
        f"max |map diff| onnx vs eager {diff:.2e}, {args.reps} timed runs after {args.warmup} warm-up"
    )
    print("| runtime | median ms | min ms | load avg before / after |\n|---|---:|---:|---|")
    for name, med, lo, b, a in rows:
        print(f"| {name} | {med:.0f} | {lo:.0f} | {b:.2f} / {a:.2f} |")


if __name__ == "__main__":
    main()
