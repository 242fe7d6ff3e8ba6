#!/usr/bin/env bash
# Joint, bone and motion streams: three fine-tunes (bone: joint minus parent joint, motion: next frame minus
# this frame, the feeder's bone / vel options set by --opts), each writing its test scores (--save_scores),
# then ensemble.py: the top-1 / top-5 / mean class accuracy of each stream and of their fusion by sample name.
#   DATASET, CONFIG, GPUS, ...: as scripts/finetune.sh; extra arguments go to every main_finetune.py
#   PRETRAIN         pre-training checkpoint of all streams (default as scripts/finetune.sh); PRETRAIN_BONE,
#                    PRETRAIN_MOTION: one pre-trained on that stream instead
#   OUTPUT_ROOT      default output/$DATASET/streams (joint/, bone/, motion/ below it)
#   WEIGHTS          fusion weights of joint, bone and motion (default: 1 1 1)
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${DATASET:-ntu60_xsub}
PRETRAIN=${PRETRAIN:-output/$DATASET/pretrain_mamp/checkpoint-399.pth}
OUTPUT_ROOT=${OUTPUT_ROOT:-output/$DATASET/streams}
export DATASET
OUTPUT_DIR="$OUTPUT_ROOT/joint" PRETRAIN="$PRETRAIN" bash scripts/finetune.sh --save_scores "$@"
OUTPUT_DIR="$OUTPUT_ROOT/bone" PRETRAIN="${PRETRAIN_BONE:-$PRETRAIN}" bash scripts/finetune.sh --save_scores \
  --opts train_feeder_args.bone=true val_feeder_args.bone=true "$@"
OUTPUT_DIR="$OUTPUT_ROOT/motion" PRETRAIN="${PRETRAIN_MOTION:-$PRETRAIN}" bash scripts/finetune.sh --save_scores \
  --opts train_feeder_args.vel=true val_feeder_args.vel=true "$@"
# shellcheck disable=SC2086  # WEIGHTS is a list of three numbers
python ensemble.py "$OUTPUT_ROOT"/{joint,bone,motion}/scores.npz --weights ${WEIGHTS:-1 1 1}
