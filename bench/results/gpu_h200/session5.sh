#!/bin/bash
# Fifth device session: which maze recipe to ship for the 30-minute CPU target. Each
# variant gets the updates that 2 CPU workers afford in the same time as the shipped
# recipe's 1,000 (cost per update relative to it in brackets; the learning rate decays
# over that many updates), and is scored on 200 held-out mazes at 8..48 steps (a model
# trained on 8 steps went on improving to ~22 steps on CPU).
export PYTHONPATH=platform PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SCALE=${SCALE:-1}
COMMON=(--skip sudoku --skip arc --with-maze --maze-recipe maze.yaml --maze-size 15
  --maze-count 2000 --evals 4 --exact-at 8,16,24,32,48 --set training.batch_size=64
  --set task.val_max_rows=200)
[ -n "$SMOKE" ] && COMMON+=(--device cpu --evals 1 --maze-count 300 --set task.val_max_rows=8 --exact-at 2,4)
declare -A VARIANTS=(  # name -> "updates|overrides"
  [base]="1000|"                                                                 # [1]
  [T16_K2]="600|--set orchestration.max_steps_train=16"                          # [1.67]
  [T12_K2]="750|--set orchestration.max_steps_train=12"                          # [1.33]
  [T16_K1]="670|--set orchestration.max_steps_train=16 --set orchestration.backprop_truncate_steps=1"  # [1.5]
  [lr1e-3]="1000|--set training.lr=1e-3"
  [linear]="1000|--set orchestration.step_loss_weights.schedule=linear"
  [c3]="670|--set model.latent_cycles=3"                                         # [1.5]
  [batch32]="2000|--set training.batch_size=32"                                  # [0.5]
  [mazes6000]="1000|--maze-count 6000"
)
for name in "${!VARIANTS[@]}"; do
  spec=${VARIANTS[$name]}; updates=$(( ${spec%%|*} / SCALE ))
  # shellcheck disable=SC2086
  timeout "${LIMIT:-480}" python3 bench/gpu_field_check.py "${COMMON[@]}" ${spec#*|} \
    --updates "$updates" --set training.steps="$updates" > "$OUT/maze_$name.log" 2>&1 &
done
wait
for f in "$OUT"/maze_*.log; do echo "== $f"; grep -A8 "time to accuracy" "$f" | head -7; tail -n 3 "$f" | grep -i error; done
