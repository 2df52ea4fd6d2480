#!/bin/bash
# Seventh device session: the CPU maze recipe's last choices. 32 mazes an update with an
# EMA of the weights (session6's best), 2,000 or 1,500 updates, and 2,000 / 4,000 / 6,000
# generated mazes (more mazes make a data epoch longer, so a CPU run stops for fewer
# epoch checkpoints); three seeds of the candidate. 200 held-out mazes at 8..48 steps.
export PYTHONPATH=platform PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SCALE=${SCALE:-1}
COMMON=(--skip sudoku --skip arc --with-maze --maze-recipe maze.yaml --maze-size 15
  --evals 8 --exact-at 8,16,24,32,48 --set task.val_max_rows=200
  --set training.batch_size=32 --set orchestration.ema_decay=0.999)
[ -n "$SMOKE" ] && COMMON+=(--device cpu --evals 1 --set task.val_max_rows=8 --exact-at 2,4)
declare -A VARIANTS=(  # name -> "updates|overrides"
  [m6000_seed0]="2000|--maze-count 6000"
  [m6000_seed1]="2000|--maze-count 6000 --set seed=1"
  [m6000_seed2]="2000|--maze-count 6000 --set seed=2"
  [m4000_seed0]="2000|--maze-count 4000"
  [m2000_seed2]="2000|--maze-count 2000 --set seed=2"
  [m2000_1500]="1500|--maze-count 2000"
  [m6000_1500]="1500|--maze-count 6000"
  [m6000_1500_seed1]="1500|--maze-count 6000 --set seed=1"
)
for name in "${!VARIANTS[@]}"; do
  spec=${VARIANTS[$name]}; updates=$(( ${spec%%|*} / SCALE ))
  # shellcheck disable=SC2086
  timeout "${LIMIT:-480}" python3 bench/gpu_field_check.py "${COMMON[@]}" ${spec#*|} \
    --updates "$updates" --set training.steps="$updates" > "$OUT/maze_$name.log" 2>&1 &
done
wait
for f in "$OUT"/maze_*.log; do echo "== $f"; grep -A11 "time to accuracy" "$f" | head -10; tail -n 3 "$f" | grep -i error; done
