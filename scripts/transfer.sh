#!/usr/bin/env bash
# Transfer: fine-tuning on PKU-MMD II from a MAMP pre-training on another dataset (run scripts/pretrain.sh
# with DATASET=$SOURCE first); a rerun continues from checkpoint-last.pth.
#   SOURCE      ntu60_xsub (default), ntu120_xsub or pku_v1
#   PRETRAIN    default output/$SOURCE/pretrain_mamp/checkpoint-399.pth
#   CONFIG      default config/transfer/${SOURCE}_to_pku_v2.yaml
#   OUTPUT_DIR  default output/transfer/${SOURCE}_to_pku_v2
#   GPUS, NNODES, ...: see scripts/launch.sh; extra arguments go to main_finetune.py
set -euo pipefail
SOURCE=${SOURCE:-ntu60_xsub}
PRETRAIN=${PRETRAIN:-output/$SOURCE/pretrain_mamp/checkpoint-399.pth}
CONFIG=${CONFIG:-config/transfer/${SOURCE}_to_pku_v2.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/transfer/${SOURCE}_to_pku_v2}
exec bash "$(dirname "$0")/launch.sh" main_finetune.py --config "$CONFIG" --output_dir "$OUTPUT_DIR" \
  --finetune "$PRETRAIN" --dist_eval --auto_resume "$@"
