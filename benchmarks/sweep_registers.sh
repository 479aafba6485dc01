#!/usr/bin/env bash
# Register cap of the Triton step-layout backward (triton_scan.MAX_REGISTERS['bwd_seq']) on one GPU, ~4 minutes:
# correctness with caps 200 and 168, then the training step for no cap / 224 / 200 / 184 / 168. At 249
# registers the kernel runs 8 warps per SM; a cap trades spills for warps. Set MAX_REGISTERS['bwd_seq'] to the
# fastest cap that passes. Session 6 on an H200: uncapped 220.8 img/s, 200 -> 213.7, 168 -> 195.8 (no cap).
#
#   PYTHON=python3 bash benchmarks/sweep_registers.sh
set -uo pipefail
PY=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-src}
for cap in 200 168; do
  echo "== check_triton_scan, bwd_seq maxnreg $cap"
  timeout 150 $PY -c "import sys; sys.argv = ['check', '--quick']; sys.path.insert(0, 'benchmarks')
from mambaad.scan import triton_scan; triton_scan.set_max_registers('bwd_seq=$cap')
import check_triton_scan; sys.exit(check_triton_scan.main())" 2>&1 | grep -E "FAIL|ALL" | tail -3
done
for cap in 0 224 200 184 168; do
  echo "== training step, bwd_seq maxnreg $cap (0: no cap)"
  timeout 80 $PY -m mambaad.bench --backend triton --train --cuda-graph --batch-size 16 --steps 20 \
    --triton-maxnreg bwd_seq=$cap
done
