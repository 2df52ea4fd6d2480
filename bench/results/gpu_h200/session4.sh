#!/bin/bash
# Fourth device session: session3's best maze variant (2D-local attention, 2 latent
# cycles, d_model 64, lr 3e-3) pushed further: more hops per step, more steps, full
# backprop, a later-steps-weighted loss, and perfect mazes (loops 0) for comparison.
export PYTHONPATH=platform PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
UPDATES=${UPDATES:-3000}
COMMON=(--skip sudoku --skip arc --with-maze --maze-recipe maze.yaml --maze-size 15 --maze-count 2000
  --updates "$UPDATES" --evals 6 --set training.batch_size=64 --set task.val_max_rows=200
  --set model.attention_layout=grid --set model.attention_window=1 --set model.positional=rope
  --set training.lr=3e-3)
[ -n "$SMOKE" ] && COMMON+=(--device cpu --evals 1 --maze-count 300 --set task.val_max_rows=8)
BEST="--set model.latent_cycles=2 --set model.d_model=64"
T16="--set orchestration.max_steps_train=16 --set orchestration.max_steps_infer=16"
declare -A VARIANTS=(
  [c4_d48_T16]="--set model.latent_cycles=4 --set model.d_model=48 $T16"
  [c4_d64]="--set model.latent_cycles=4 --set model.d_model=64"
  [c2_d64_loops0]="$BEST --set task.options={\"loops\":0}"
  [c2_d64_K8]="$BEST --set orchestration.backprop_truncate_steps=8"
  [c2_d64_T16_K8]="$BEST $T16 --set orchestration.backprop_truncate_steps=8"
  [c2_d64_linear]="$BEST --set orchestration.step_loss_weights.schedule=linear"
  [c3_L3_d64]="--set model.latent_cycles=3 --set model.n_layers=3 --set model.d_model=64"
  [c2_d64_6000]="$BEST"
)
for name in "${!VARIANTS[@]}"; do
  extra=(); [ "$name" = c2_d64_6000 ] && extra=(--updates $((UPDATES * 2)) --evals 12)
  # shellcheck disable=SC2086
  timeout "${LIMIT:-400}" python3 bench/gpu_field_check.py "${COMMON[@]}" ${VARIANTS[$name]} \
    "${extra[@]}" > "$OUT/maze_$name.log" 2>&1 &
done
wait
tail -n 12 "$OUT"/maze_*.log
