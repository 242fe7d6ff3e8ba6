#!/usr/bin/env bash
# Linear probe of a pre-trained encoder; a rerun continues from checkpoint-last.pth.
#   DATASET     ntu60_xsub (default), ntu60_xview, ntu120_xsub, ntu120_xset, pku_v1, pku_v2
#   PRETRAIN    default output/$DATASET/pretrain_mamp/checkpoint-399.pth (ours or an official checkpoint)
#   CONFIG      default config/$DATASET/linear.yaml
#   OUTPUT_DIR  default output/$DATASET/linear
#   GPUS, NNODES, ...: see scripts/launch.sh; extra arguments go to main_linprobe.py
set -euo pipefail
DATASET=${DATASET:-ntu60_xsub}
PRETRAIN=${PRETRAIN:-output/$DATASET/pretrain_mamp/checkpoint-399.pth}
CONFIG=${CONFIG:-config/$DATASET/linear.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/$DATASET/linear}
exec bash "$(dirname "$0")/launch.sh" main_linprobe.py --config "$CONFIG" --output_dir "$OUTPUT_DIR" \
  --finetune "$PRETRAIN" --dist_eval --auto_resume "$@"
