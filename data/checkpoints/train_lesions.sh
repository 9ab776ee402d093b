#!/usr/bin/env bash
# Domain fine-tuning of the shipped `small` checkpoint on the simulated screening set (lesions).
# Run from the repository root with the project's venv: bash data/checkpoints/train_lesions.sh
# It continues the checkpoint's own LoRA adapter (r=8 on q_proj, v_proj) and its projector on
# lesion-spot scenes and imaging-modality questions, then scores the held-out test split before
# and after with the same seed and the same images.
#
# The run is scheduled for 150 steps; data/checkpoints/small-lesions is its step-100 checkpoint.
# The session that made it stopped the run there for time (the 2-core CPU was shared: 15-40 s a
# step); it had also been interrupted once and resumed from step 50 with --resume, which
# continues exactly (the loss at step 52 was 0.228 in both runs). Running this script to the end
# trains all 150 steps.
set -euo pipefail
RUNS=${RUNS:-runs}
VLKIT=${VLKIT:-.venv/bin/vlkit}
BASE=data/checkpoints/small

$VLKIT eval --task lesions --checkpoint "$BASE" --limit 100 --json --out "$RUNS/lesions-before.json"

$VLKIT train --init "$BASE" --stage instruct --data "lesions-both" --train-size 2000 \
  --val-size 40 --steps 150 --batch-size 8 --lr 5e-4 --warmup-steps 15 --eval-every 50 \
  --save-every 50 --seed 0 --out "$RUNS/small-lesions"

STEP100="$RUNS/small-lesions/checkpoints/step-00000100/model"
$VLKIT eval --task lesions --checkpoint "$STEP100" --limit 100 --json --out "$RUNS/lesions-step100.json"
# the shipped copy (peft's blank adapter/README.md removed; save_pretrained no longer writes it)
# cp -r "$STEP100" data/checkpoints/small-lesions
