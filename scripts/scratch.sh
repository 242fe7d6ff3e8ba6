#!/usr/bin/env bash
# Training from scratch: the fine-tuning recipe from a random initialisation; a rerun continues from
# checkpoint-last.pth.
#   DATASET     ntu60_xsub (default), ntu60_xview, ntu120_xsub, ntu120_xset, pku_v1, pku_v2
#   CONFIG      default config/$DATASET/scratch.yaml
#   OUTPUT_DIR  default output/$DATASET/scratch
#   GPUS        processes per node (default 2, as in the published runs: batch sizes are per process)
#   NNODES, ...: see scripts/launch.sh; extra arguments go to main_finetune.py
set -euo pipefail
export GPUS=${GPUS:-2}
DATASET=${DATASET:-ntu60_xsub}
CONFIG=${CONFIG:-config/$DATASET/scratch.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/$DATASET/scratch}
exec bash "$(dirname "$0")/launch.sh" main_finetune.py --config "$CONFIG" --output_dir "$OUTPUT_DIR" \
  --dist_eval --auto_resume "$@"
