#!/usr/bin/env bash
# Software pipelining of the Triton backward step kernels (triton_scan.PIPELINE_STAGES) on one GPU, ~5 minutes:
# correctness with 2 and 3 stages, one SS2D scan per stage shape, then the model's training step and
# inference, for each number of stages; last the training step with train.tf32. The per-kernel times of
# `profile_step.py --triton-stages N` pick each kernel's count in triton_scan.PIPELINE_STAGES (session 5:
# bwd_seq 3, bwd_seg 1; the forward kernels of then, fwd_seq 1 and fwd_seg 2, were replaced in session 10 by
# the row-layout ones, which are not software-pipelined).
#
#   PYTHON=python3 bash benchmarks/sweep_pipeline.sh
set -uo pipefail
PY=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-src}
for st in 2 3; do
  echo "== check_triton_scan --stages $st"
  timeout 150 $PY benchmarks/check_triton_scan.py --stages $st 2>&1 | grep -E "FAIL|ALL" | tail -3
done
for st in 1 2 3 4; do
  echo "== one SS2D scan per stage shape, stages $st"
  timeout 90 $PY benchmarks/bench_scan_gpu.py --methods triton --batch 16 1 --iters 10 --stages $st 2>&1 | tail -8
done
for st in 1 2 3; do
  echo "== model, stages $st"
  timeout 80 $PY -m mambaad.bench --backend triton --train --cuda-graph --batch-size 16 --steps 20 --triton-stages $st
  timeout 80 $PY -m mambaad.bench --backend triton --infer --cuda-graph --batch-size 16 --batch-size 1 --steps 30 \
    --triton-stages $st
done
echo "== model, training matrix products on TF32 (train.tf32), stages 1"
timeout 80 $PY -m mambaad.bench --backend triton --train --cuda-graph --tf32 --batch-size 16 --steps 20
