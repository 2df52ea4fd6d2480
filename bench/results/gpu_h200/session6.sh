#!/bin/bash
# Sixth device session: session5 showed maze models swinging between 98% and 0% from one
# evaluation to the next. Does an EMA of the weights (orchestration.ema_decay) steady
# them, at the shipped batch (64 mazes an update, 1,000 updates) and at 32 (2,000
# updates, the same mazes seen)? Two seeds each; 200 held-out mazes at 8..48 steps.
export PYTHONPATH=platform PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SCALE=${SCALE:-1}
COMMON=(--skip sudoku --skip arc --with-maze --maze-recipe maze.yaml --maze-size 15
  --maze-count 2000 --evals 8 --exact-at 8,16,24,32,48 --set task.val_max_rows=200)
[ -n "$SMOKE" ] && COMMON+=(--device cpu --evals 1 --maze-count 300 --set task.val_max_rows=8 --exact-at 2,4)
B64="--set training.batch_size=64"
B32="--set training.batch_size=32"
declare -A VARIANTS=(  # name -> "updates|overrides"
  [b64_seed1]="1000|$B64 --set seed=1"
  [b64_ema999]="1000|$B64 --set orchestration.ema_decay=0.999"
  [b64_ema999_seed1]="1000|$B64 --set orchestration.ema_decay=0.999 --set seed=1"
  [b64_ema99]="1000|$B64 --set orchestration.ema_decay=0.99"
  [b64_lr2e-3_ema999]="1000|$B64 --set orchestration.ema_decay=0.999 --set training.lr=2e-3"
  [b32_seed1]="2000|$B32 --set seed=1"
  [b32_ema999]="2000|$B32 --set orchestration.ema_decay=0.999"
  [b32_ema999_seed1]="2000|$B32 --set orchestration.ema_decay=0.999 --set seed=1"
)
for name in "${!VARIANTS[@]}"; do
  spec=${VARIANTS[$name]}; updates=$(( ${spec%%|*} / SCALE ))
  # shellcheck disable=SC2086
  timeout "${LIMIT:-480}" python3 bench/gpu_field_check.py "${COMMON[@]}" ${spec#*|} \
    --updates "$updates" --set training.steps="$updates" > "$OUT/maze_$name.log" 2>&1 &
done
wait
for f in "$OUT"/maze_*.log; do echo "== $f"; grep -A11 "time to accuracy" "$f" | head -10; tail -n 3 "$f" | grep -i error; done
