#!/usr/bin/env bash
# Semi-supervised: fine-tuning on RATIO percent of the labelled training samples (the same subset on every
# process, set by subset_seed in the config); a rerun continues from checkpoint-last.pth.
#   RATIO       1 or 10 (default 1)
#   DATASET     ntu60_xsub (default), ntu60_xview, ntu120_xsub, ntu120_xset, pku_v1, pku_v2
#   PRETRAIN    default output/$DATASET/pretrain_mamp/checkpoint-399.pth
#   CONFIG      default config/$DATASET/semi_$RATIO.yaml
#   OUTPUT_DIR  default output/$DATASET/semi_$RATIO
#   GPUS, NNODES, ...: see scripts/launch.sh; extra arguments go to main_finetune.py
set -euo pipefail
RATIO=${RATIO:-1}
DATASET=${DATASET:-ntu60_xsub}
PRETRAIN=${PRETRAIN:-output/$DATASET/pretrain_mamp/checkpoint-399.pth}
CONFIG=${CONFIG:-config/$DATASET/semi_$RATIO.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/$DATASET/semi_$RATIO}
exec bash "$(dirname "$0")/launch.sh" main_finetune.py --config "$CONFIG" --output_dir "$OUTPUT_DIR" \
  --finetune "$PRETRAIN" --dist_eval --auto_resume "$@"
