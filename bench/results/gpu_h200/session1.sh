#!/bin/bash
# One device session: issue 15's field check (sudoku 9x9 with calibration, ARC-AGI-1),
# then issue 12's fast-path check. Each part capped so one failure leaves time for the rest.
export PYTHONPATH=platform PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch,sys;print(sys.version, torch.__version__, torch.version.cuda)" >> "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
start=$(date +%s)
timeout 265 python3 bench/gpu_field_check.py --skip arc --budget 180 --evals 5 \
  --calibrate-views 40 \
  --set training.lr=1e-3 --set training.warmup_steps=100 --set training.weight_decay=0.1 \
  --set training.steps=3000 2>&1 | tee "$OUT/field_sudoku.log"
echo "sudoku part: $(( $(date +%s) - start )) s"
start=$(date +%s)
timeout 145 python3 bench/gpu_field_check.py --skip sudoku --arc-dir gpu_data/arc-agi-1 \
  --budget 60 --evals 1 --views 8 2>&1 | tee "$OUT/field_arc.log"
echo "arc part: $(( $(date +%s) - start )) s"
start=$(date +%s)
timeout 150 python3 bench/gpu_check.py --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log"
echo "fast-path part: $(( $(date +%s) - start )) s"
