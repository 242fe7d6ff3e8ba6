#!/usr/bin/env bash
# Fine-tuning of a pre-trained encoder; a rerun continues from checkpoint-last.pth.
#   DATASET     ntu60_xsub (default), ntu60_xview, ntu120_xsub, ntu120_xset, pku_v1, pku_v2
#   PRETRAIN    pre-training checkpoint (ours or an official one); default: the config's finetune,
#               output/$DATASET/pretrain_mamp/checkpoint-399.pth
#   CONFIG      default config/$DATASET/finetune.yaml
#   OUTPUT_DIR  default output/$DATASET/finetune
#   GPUS        processes per node (default 2, as in the published runs: batch sizes are per process)
#   NNODES, ...: see scripts/launch.sh; extra arguments go to main_finetune.py
set -euo pipefail
export GPUS=${GPUS:-2}
DATASET=${DATASET:-ntu60_xsub}
CONFIG=${CONFIG:-config/$DATASET/finetune.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/$DATASET/finetune}
exec bash "$(dirname "$0")/launch.sh" main_finetune.py --config "$CONFIG" --output_dir "$OUTPUT_DIR" \
  ${PRETRAIN:+--finetune "$PRETRAIN"} --dist_eval --auto_resume "$@"
