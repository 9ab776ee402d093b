#!/usr/bin/env bash
# How data/checkpoints/small was made: stage 1 (align) then stage 2 (instruct) on the CPU.
# Run from the repository root with the project's venv: bash data/checkpoints/train_small.sh
set -euo pipefail
RUNS=${RUNS:-runs}
VLKIT=${VLKIT:-.venv/bin/vlkit}
DATA="shapes,photos*4"

# Stage 1: the projector alone learns to turn DINOv2 patches into soft-prompt tokens (captions).
$VLKIT train --preset small --stage align --data "$DATA" --train-size 3000 --val-size 50 \
  --steps 200 --batch-size 8 --lr 1e-3 --warmup-steps 20 --eval-every 100 --save-every 100 \
  --seed 0 --out "$RUNS/small-align"

# Stage 2: projector + LoRA (r=8 on q_proj, v_proj) on captions and question-answer turns.
$VLKIT train --init "$RUNS/small-align/final" --stage instruct --data "$DATA" --train-size 3000 \
  --val-size 50 --steps 250 --batch-size 8 --lr 5e-4 --warmup-steps 20 --eval-every 100 \
  --save-every 50 --seed 0 --out "$RUNS/small-instruct"
