"""Time mambaad.metrics.evaluate on an MVTec-AD-sized test set: 1,725 float32 maps of 256x256 (113M pixels).

Synthetic data: 467 normal and 1,258 anomalous images (MVTec-AD's test split sizes); each anomalous mask has
1-3 elliptical blobs of radius 3-40 px (some touching), maps are float32 noise plus a low-frequency field
plus a per-blob response, so nearly every pixel value is distinct (the worst case for exact thresholds).

    PYTHONPATH=src python benchmarks/bench_metrics.py --mode both
    PYTHONPATH=src python benchmarks/bench_metrics.py --mode exact --classes 15

Prints seconds per mode and peak RSS (resource.getrusage, whole process, data included). Run one mode per
process for a clean peak.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from mambaad.metrics import evaluate, evaluate_per_class

N_NORMAL, N_ANOMALOUS, SIZE = 467, 1258, 256


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """labels (N,), scores (N,), masks (N, H, W) bool, maps (N, H, W) float32."""
    rng = np.random.default_rng(seed)
    n = N_NORMAL + N_ANOMALOUS
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)  # (H, W)
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    maps = np.empty((n, SIZE, SIZE), dtype=np.float32)
    for i in range(n):
        field = rng.random((8, 8), dtype=np.float32)
        maps[i] = np.repeat(np.repeat(field, SIZE // 8, 0), SIZE // 8, 1) * 0.3  # low frequency
        maps[i] += rng.random((SIZE, SIZE), dtype=np.float32) * 0.4  # pixel noise
        if i < N_NORMAL:
            continue
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(20, SIZE - 20, 2)
            ry, rx = rng.uniform(3, 40, 2)
            d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2  # (H, W)
            blob = d <= 1.0
            masks[i] |= blob
            maps[i] += rng.uniform(0.1, 0.6) * np.exp(-d / 2.0, dtype=np.float32)  # response with a halo
    labels = masks.reshape(n, -1).any(1).astype(np.int64)
    scores = maps.reshape(n, -1).max(1)
    return labels, scores, masks, maps


def check_against_sklearn(
    labels: np.ndarray, scores: np.ndarray, masks: np.ndarray, maps: np.ndarray, n: int
) -> None:
    """Exactness at scale: pixel AUROC/AP/F1-max on the first n images (both kinds) against sklearn."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    idx = np.r_[: n // 2, N_NORMAL : N_NORMAL + n - n // 2]
    got = evaluate(labels[idx], scores[idx], masks[idx], maps[idx])
    y, s = masks[idx].ravel(), maps[idx].ravel()
    t0 = time.perf_counter()
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * p * r / (p + r)
    ref = {
        "pixel_auroc": roc_auc_score(y, s),
        "pixel_ap": average_precision_score(y, s),
        "pixel_f1max": float(np.max(f1[np.isfinite(f1)])),
    }
    dt = time.perf_counter() - t0
    diffs = " ".join(f"{k}: |d|={abs(got[k] - v):.1e}" for k, v in ref.items())
    print(f"check vs sklearn on {len(idx)} maps ({y.size / 1e6:.1f}M px, sklearn {dt:.1f} s): {diffs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["exact", "ader", "both"], default="both")
    parser.add_argument("--classes", type=int, default=1, help="split the set into this many classes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", type=int, default=0, help="compare with sklearn on this many images first")
    args = parser.parse_args()

    t0 = time.perf_counter()
    labels, scores, masks, maps = make_data(args.seed)
    print(
        f"data: {maps.shape[0]} maps {maps.shape[1]}x{maps.shape[2]} ({maps.size / 1e6:.0f}M px, "
        f"{masks.mean() * 100:.2f}% anomalous) in {time.perf_counter() - t0:.1f} s; RSS {peak_rss_mib():.0f} MiB"
    )
    if args.check:
        check_against_sklearn(labels, scores, masks, maps, args.check)
    classes = [f"c{i % args.classes}" for i in range(len(labels))]  # interleaved: each has both kinds
    for mode in ["exact", "ader"] if args.mode == "both" else [args.mode]:
        t0 = time.perf_counter()
        if args.classes == 1:
            out = evaluate(labels, scores, masks, maps, mode=mode)
        else:
            out = evaluate_per_class(classes, labels, scores, masks, maps, mode=mode)["mean"]
        dt = time.perf_counter() - t0
        values = " ".join(f"{k}={v:.4f}" for k, v in out.items())
        print(f"{mode:5s} classes={args.classes}: {dt:.2f} s, peak RSS {peak_rss_mib():.0f} MiB | {values}")


if __name__ == "__main__":
    main()
