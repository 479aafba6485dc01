"""The paper's Table-1 comparison on one data root: every model, the same encoder, epochs, batch and metrics.

    PYTHONPATH=src python benchmarks/table1.py --data ROOT --encoder efficientnet_lite0 --epochs 100 \\
        --batch-size 16 --out runs/table1 --device cuda [--models mambaad rd4ad ...] [--image-size 256] \\
        [--encoder-weights imagenet] [--num-workers 4] [--timeout SECONDS] [--set train.bf16=true ...]

Each model trains with its own paper recipe (optimizer, per-part learning rates, schedule, clipping: the
``RECIPE`` of its module, as ``mambaad train --model X`` does), but with the shared encoder, epochs, batch
size, image size and evaluation, in its own process (``python -m mambaad train``), so a model that fails or
runs out of memory is reported in the table and the others still run. Logs: ``OUT/<model>.log``; runs:
``OUT/<model>/``. A rerun skips models whose ``metrics.json`` exists and resumes interrupted ones.

Writes ``OUT/table1.md`` (a mean table with the best value per metric in bold, then per class) and
``OUT/table1.csv`` (class, model, metric fractions).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from mambaad.models.recipes import recipe_overrides
from mambaad.report.tables import METRIC_COLUMNS, format_percent

MODELS = ("mambaad", "rd4ad", "uniad", "simplenet", "destseg")
STATUS_FILE = "table1_status.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data root (any layout mambaad reads)")
    p.add_argument("--encoder", required=True, help="timm encoder shared by every model")
    p.add_argument("--encoder-weights", default="imagenet", help="imagenet | none | PATH")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of each run")
    p.add_argument("--timeout", type=float, default=None, help="seconds per model (then reported as failed)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra dotted overrides for all")
    return p.parse_args(argv)


def train_command(model: str, args: argparse.Namespace) -> list[str]:
    """``python -m mambaad train`` for one model: its recipe, then the shared settings."""
    shared = [
        f"model.model={model}",
        f"model.encoder={args.encoder}",
        f"model.encoder_weights={args.encoder_weights}",
        f"data.root={args.data}",
        f"data.image_size={args.image_size}",
        f"data.crop_size={args.image_size}",
        f"data.num_workers={args.num_workers}",
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch_size}",
        f"train.device={args.device}",
        "train.eval_every=0",
        f"out={args.out / model}",
    ]
    cmd = [sys.executable, "-m", "mambaad", "train", "--no-progress"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd + [f"--{o}" for o in [*recipe_overrides(model), *shared, *args.set]]


def run_model(model: str, args: argparse.Namespace) -> dict:
    """Train + evaluate one model unless done before; returns its status record."""
    run_dir = args.out / model
    status_path = args.out / f"{model}.{STATUS_FILE}"
    if (run_dir / "metrics.json").is_file():
        record = json.loads(status_path.read_text()) if status_path.is_file() else {"seconds": None}
        return {**record, "status": "skipped (done earlier)"}
    cmd = train_command(model, args)
    state = run_dir / "checkpoints" / "last_state.safetensors"
    if run_dir.is_dir() and not state.is_file():  # died before its first checkpoint: start it again
        leftovers = {p.name for p in run_dir.iterdir()}
        if not leftovers <= {"config.yaml", "train.log"}:
            return {"seconds": None, "status": "failed", "error": f"{run_dir} holds another run; remove it"}
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()
    if state.is_file():  # interrupted: continue it
        cmd = [*cmd[: cmd.index("train") + 1], "--no-progress", "--resume", str(run_dir)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
    log = args.out / f"{model}.log"
    print(f"[{model}] {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    try:
        with open(log, "w", encoding="utf-8") as f:
            rc = subprocess.run(
                cmd, stdout=f, stderr=subprocess.STDOUT, timeout=args.timeout, env=env
            ).returncode
        error = "" if rc == 0 else last_error(log, rc)
    except subprocess.TimeoutExpired:
        error = f"timed out after {args.timeout:.0f} s (rerun to resume)"
    seconds = time.perf_counter() - t0
    record = {"seconds": seconds, "status": "done" if not error else "failed", "error": error}
    status_path.write_text(json.dumps(record) + "\n")
    print(f"[{model}] {record['status']} in {seconds:.0f} s {error}", flush=True)
    return record


def last_error(log: Path, rc: int) -> str:
    """The ``error: ...`` line of a failed run (or its last line) as one line."""
    lines = [
        ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()
    ]
    errors = [ln for ln in lines if ln.startswith("error:") or "Error" in ln]
    text = (errors or lines or [f"exit status {rc}"])[-1]
    return " ".join(text.split())[:300]


def read_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text(encoding="utf-8"))
    return {cls: {k: math.nan if v is None else v for k, v in row.items()} for cls, row in rows.items()}


def _num(value: object) -> float:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return f


def format_tables(results: dict[str, dict], args: argparse.Namespace) -> tuple[str, str]:
    """(Markdown, CSV) of every model's metrics: the mean table (best in bold), then per class."""
    keys = [k for k, _ in METRIC_COLUMNS]
    titles = [t for _, t in METRIC_COLUMNS]
    means = {m: r["metrics"].get("mean", {}) for m, r in results.items()}
    best = {}
    for k in keys:
        vals = [_num(means[m].get(k)) for m in results]
        finite = [v for v in vals if math.isfinite(v)]
        best[k] = max(finite) if finite else None
    md = [
        f"Data: `{args.data}`; encoder `{args.encoder}` ({args.encoder_weights}); {args.epochs} epochs, batch "
        f"{args.batch_size}, {args.image_size} px, device {args.device}; each model with its paper's optimiser "
        "recipe. Metrics in percent (class means); best per column in bold.",
        "",
        "| model | " + " | ".join(titles) + " | train (s) | status |",
        "|---|" + "---:|" * (len(keys) + 1) + "---|",
    ]
    for m, r in results.items():
        cells = []
        for k in keys:
            v = _num(means[m].get(k))
            text = format_percent(v)
            cells.append(f"**{text}**" if best[k] is not None and math.isfinite(v) and v == best[k] else text)
        secs = "n/a" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        md.append(f"| {m} | " + " | ".join(cells) + f" | {secs} | {status.replace('|', '/')} |")
    classes = list(dict.fromkeys(c for r in results.values() for c in r["metrics"] if c != "mean"))
    md += [
        "",
        "Per class:",
        "",
        "| class | model | " + " | ".join(titles) + " |",
        "|---|---|" + "---:|" * len(keys),
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", "model", *keys, "status"])
    for cls in [*classes, "mean"]:
        for m, r in results.items():
            row = r["metrics"].get(cls, {})
            md.append(f"| {cls} | {m} | " + " | ".join(format_percent(row.get(k)) for k in keys) + " |")
            vals = [_num(row.get(k)) for k in keys]
            writer.writerow([cls, m, *("" if not math.isfinite(v) else repr(v) for v in vals), r["status"]])
    return "\n".join(md) + "\n", buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"error: --data {args.data}: not a folder", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for model in args.models:
        record = run_model(model, args)
        results[model] = {**record, "metrics": read_metrics(args.out / model)}
    md, table_csv = format_tables(results, args)
    (args.out / "table1.md").write_text(md, encoding="utf-8")
    (args.out / "table1.csv").write_text(table_csv, encoding="utf-8")
    print(md)
    print(f"tables: {args.out / 'table1.md'} {args.out / 'table1.csv'}")
    failed = [m for m, r in results.items() if r["status"] == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)} (see OUT/<model>.log)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
