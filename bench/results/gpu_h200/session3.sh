#!/bin/bash
# Third device session (issue 15, benchmark 2): which maze model learns built-in 15x15
# mazes within the update count a 30-minute CPU run affords (about 1,200 updates of 64
# rows: 2 workers x 32). Eight variants of jobs/configs/maze.yaml train side by side on the
# one GPU, each for UPDATES updates at batch 64, evaluated on 200 held-out mazes.
#   bash bench/results/gpu_h200/session3.sh            # on the GPU machine
#   SMOKE=1 bash bench/results/gpu_h200/session3.sh    # a CPU check of the script
export PYTHONPATH=platform PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
UPDATES=${UPDATES:-3000}
COMMON=(--skip sudoku --skip arc --with-maze --maze-recipe maze.yaml --maze-size 15 --maze-count 2000
  --updates "$UPDATES" --evals 6 --set training.batch_size=64 --set task.val_max_rows=200)
[ -n "$SMOKE" ] && COMMON+=(--smoke --device cpu)
GRID=(--set model.attention_layout=grid --set model.attention_window=1 --set model.positional=rope)
declare -A VARIANTS=(
  [full_attention_as_shipped]=""
  [grid_c2_d64]="${GRID[*]} --set model.latent_cycles=2 --set model.d_model=64"
  [grid_c1_d96]="${GRID[*]} --set model.latent_cycles=1"
  [grid_c2_d64_T16]="${GRID[*]} --set model.latent_cycles=2 --set model.d_model=64 --set orchestration.max_steps_train=16 --set orchestration.max_steps_infer=16"
  [grid_c2_d64_lr3e-3]="${GRID[*]} --set model.latent_cycles=2 --set model.d_model=64 --set training.lr=3e-3"
  [grid_w2_c2_d64]="${GRID[*]} --set model.attention_window=2 --set model.latent_cycles=2 --set model.d_model=64"
  [grid_learned_c2_d64]="${GRID[*]} --set model.positional=learned --set model.latent_cycles=2 --set model.d_model=64"
  [grid_c2_d64_K4]="${GRID[*]} --set model.latent_cycles=2 --set model.d_model=64 --set orchestration.backprop_truncate_steps=4"
)
for name in "${!VARIANTS[@]}"; do
  # shellcheck disable=SC2086
  timeout "${LIMIT:-440}" python3 bench/gpu_field_check.py "${COMMON[@]}" ${VARIANTS[$name]} \
    > "$OUT/maze_$name.log" 2>&1 &
done
wait
nvidia-smi --query-gpu=name,memory.used --format=csv > "$OUT/gpu.txt" 2>/dev/null
tail -n 12 "$OUT"/maze_*.log
