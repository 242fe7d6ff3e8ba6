#!/usr/bin/env bash
# Contrastive tuning (STARS) of a pre-trained encoder; a rerun continues from checkpoint-last.pth. The tuned
# checkpoint then goes to linprobe.sh, finetune.sh, semi.sh, transfer.sh (PRETRAIN=...), main_knn.py and
# main_fewshot.py like a pre-training checkpoint.
#   DATASET     ntu60_xsub (default), ntu60_xview, ntu120_xsub, ntu120_xset, pku_v1, pku_v2
#   PRETRAIN    pre-training checkpoint (MAMP, or the MAE baseline); default: the config's finetune,
#               output/$DATASET/pretrain_mamp/checkpoint-399.pth (checkpoint-300.pth for pku_v1, pku_v2)
#   CONFIG      default config/$DATASET/tune.yaml
#   OUTPUT_DIR  default output/$DATASET/tune
#   GPUS        processes per node (default 4: batch sizes are per process)
#   NNODES, ...: see scripts/launch.sh; extra arguments go to main_tune.py
set -euo pipefail
export GPUS=${GPUS:-4}
DATASET=${DATASET:-ntu60_xsub}
CONFIG=${CONFIG:-config/$DATASET/tune.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/$DATASET/tune}
exec bash "$(dirname "$0")/launch.sh" main_tune.py --config "$CONFIG" --output_dir "$OUTPUT_DIR" \
  ${PRETRAIN:+--finetune "$PRETRAIN"} --auto_resume "$@"
