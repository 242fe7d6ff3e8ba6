#!/usr/bin/env bash
# Pre-training: MAMP (MODEL=mamp) or the MAE baseline (MODEL=mae); a rerun continues from checkpoint-last.pth.
#   DATASET     ntu60_xsub (default), ntu60_xview, ntu120_xsub, ntu120_xset, pku_v1, pku_v2
#   CONFIG      default config/$DATASET/pretrain_$MODEL.yaml
#   OUTPUT_DIR  default output/$DATASET/pretrain_$MODEL (checkpoints, log.txt, TensorBoard events)
#   GPUS        processes per node (default 4, as in the published runs: batch sizes are per process)
#   NNODES, ...: see scripts/launch.sh; extra arguments go to main_pretrain.py
set -euo pipefail
export GPUS=${GPUS:-4}
DATASET=${DATASET:-ntu60_xsub}
MODEL=${MODEL:-mamp}
CONFIG=${CONFIG:-config/$DATASET/pretrain_$MODEL.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/$DATASET/pretrain_$MODEL}
exec bash "$(dirname "$0")/launch.sh" main_pretrain.py --config "$CONFIG" --output_dir "$OUTPUT_DIR" --auto_resume "$@"
