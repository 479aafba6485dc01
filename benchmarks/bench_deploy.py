"""Latency of the deployed model, batch 1: onnxruntime on the exported graph vs eager PyTorch.

The demo's model (configs/demo.yaml: EfficientNet-Lite0 encoder, Hilbert scan, 4 directions, depths
[1,1,1,1]) at 256 x 256 with random weights (latency does not depend on them). Eager PyTorch runs the
same end-to-end module (normalisation, map, smoothing, score) with each CPU scan backend.

    PYTHONPATH=src python benchmarks/bench_deploy.py --size 256 --reps 20 --threads 2
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    import onnxruntime as ort

    from mambaad.deploy.export import export_onnx, scan_backend
    from mambaad.deploy.graph import DeployedModel
    from mambaad.models import create_model

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
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
    deployed = DeployedModel(model, threshold=0.5)
    x = torch.randint(0, 256, (1, 3, args.size, args.size), dtype=torch.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        t0 = time.perf_counter()
        export_onnx(deployed, path, args.size)
        export_s = time.perf_counter() - t0
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {"image": x.numpy()}
        rows.append(
            (
                "onnxruntime " + ort.__version__,
                *median_ms(lambda: sess.run(None, feed), args.warmup, args.reps),
            )
        )
        with torch.no_grad():
            ref = deployed(x)[0].numpy()
        diff = float(np.abs(sess.run(None, feed)[0] - ref).max())
    for backend in ("sequential", "chunked"):
        with torch.no_grad(), scan_backend(deployed, backend):
            rows.append(
                (
                    f"eager torch {torch.__version__} ({backend})",
                    *median_ms(lambda: deployed(x), args.warmup, args.reps),
                )
            )
    print(
        f"size {args.size}, batch 1, {args.threads} threads, export {export_s:.1f} s, max |map diff| {diff:.2e}"
    )
    print("| runtime | median ms | min ms |\n|---|---:|---:|")
    for name, med, lo in rows:
        print(f"| {name} | {med:.1f} | {lo:.1f} |")


if __name__ == "__main__":
    main()
