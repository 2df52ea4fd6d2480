#!/bin/bash
# Second device session: ARC-AGI-1 training puzzles <= 10x10 (issue 15, benchmark 4) with
# the GPU recipe's model, one identity per puzzle, a schedule that fits the budget.
export PYTHONPATH=platform PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
timeout 290 python3 bench/gpu_field_check.py --skip sudoku --arc-dir gpu_data/arc-agi-1-training \
  --arc-size 10 --budget 200 --evals 4 --views 8 --aug-per-round 32 \
  --set model.puzzle_embedding=per_puzzle --set training.lr=1e-3 --set training.warmup_steps=100 \
  --set training.steps=5000 --set training.weight_decay=0.1 2>&1 | tee "$OUT/field_arc10.log"
