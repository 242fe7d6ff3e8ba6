#!/usr/bin/env bash
# Transfer: fine-tuning on PKU-MMD II from a MAMP pre-training on another dataset (run scripts/pretrain.sh
# with DATASET=$SOURCE first); a rerun continues from checkpoint-last.pth.
#   SOURCE      ntu60_xsub (default), ntu120_xsub or pku_v1
#   PRETRAIN    default: the config's finetune, output/$SOURCE/pretrain_mamp/checkpoint-399.pth
#               (checkpoint-300.pth for pku_v1, as published)
#   CONFIG      default config/transfer/${SOURCE}_to_pku_v2.yaml
#   OUTPUT_DIR  default output/transfer/${SOURCE}_to_pku_v2
#   GPUS        processes per node (default 2, as in the published runs: batch sizes are per process)
#   NNODES, ...: see scripts/launch.sh; extra arguments go to main_finetune.py
set -euo pipefail
export GPUS=${GPUS:-2}
SOURCE=${SOURCE:-ntu60_xsub}
CONFIG=${CONFIG:-config/transfer/${SOURCE}_to_pku_v2.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/transfer/${SOURCE}_to_pku_v2}
exec bash "$(dirname "$0")/launch.sh" main_finetune.py --config "$CONFIG" --output_dir "$OUTPUT_DIR" \
  ${PRETRAIN:+--finetune "$PRETRAIN"} --dist_eval --auto_resume "$@"
