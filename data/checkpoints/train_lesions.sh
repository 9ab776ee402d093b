#!/usr/bin/env bash
# Domain fine-tuning of the shipped `small` checkpoint on the simulated screening set (lesions).
# Run from the repository root with the project's venv: bash data/checkpoints/train_lesions.sh
# It continues the checkpoint's own LoRA adapter (r=8 on q_proj, v_proj) and its projector on
# lesion-spot scenes and imaging-modality questions, then scores the held-out test split before
# and after with the same seed and the same images.
set -euo pipefail
RUNS=${RUNS:-runs}
VLKIT=${VLKIT:-.venv/bin/vlkit}
BASE=data/checkpoints/small

$VLKIT eval --task lesions --checkpoint "$BASE" --limit 100 --json --out "$RUNS/lesions-before.json"

$VLKIT train --init "$BASE" --stage instruct --data "lesions-both" --train-size 2000 \
  --val-size 40 --steps 150 --batch-size 8 --lr 5e-4 --warmup-steps 15 --eval-every 50 \
  --save-every 50 --seed 0 --out "$RUNS/small-lesions"

$VLKIT eval --task lesions --checkpoint "$RUNS/small-lesions/final" --limit 100 --json \
  --out "$RUNS/lesions-after.json"
