#!/usr/bin/env bash
# Semi-supervised: fine-tuning on RATIO percent of the labelled training samples (the same subset on every
# process and in every repeat, set by subset_seed in the config), REPEATS times with training seeds 0, 1, ...,
# each into OUTPUT_DIR/seed<k>; then the mean and standard deviation over the repeats of the last top-1, the
# last mean class accuracy and the best-on-test top-1 (the paper reports the mean of 5). A rerun continues each repeat from its checkpoint-last.pth.
#   RATIO       1 or 10 (default 1)
#   DATASET     ntu60_xsub (default), ntu60_xview, ntu120_xsub, ntu120_xset, pku_v1, pku_v2
#   REPEATS     default 5
#   SCRATCH     1: the published baseline from a random initialisation (config semi_${RATIO}_scratch.yaml)
#   PRETRAIN    default: the config's finetune, output/$DATASET/pretrain_mamp/checkpoint-399.pth
#   CONFIG      default config/$DATASET/semi_$RATIO.yaml (semi_${RATIO}_scratch.yaml with SCRATCH=1)
#   OUTPUT_DIR  default output/$DATASET/semi_$RATIO (semi_${RATIO}_scratch with SCRATCH=1)
#   GPUS        processes per node (default 2, as in the published runs: batch sizes are per process)
#   NNODES, ...: see scripts/launch.sh; extra arguments go to main_finetune.py
set -euo pipefail
cd "$(dirname "$0")/.."
export GPUS=${GPUS:-2}
RATIO=${RATIO:-1}
DATASET=${DATASET:-ntu60_xsub}
REPEATS=${REPEATS:-5}
RUN=semi_$RATIO
if [ "${SCRATCH:-0}" = 1 ]; then RUN=semi_${RATIO}_scratch; fi
if [ "${SCRATCH:-0}" = 1 ] && [ -n "${PRETRAIN:-}" ]; then
  echo "semi.sh: SCRATCH=1 starts from random weights; unset PRETRAIN (or drop SCRATCH=1 to fine-tune it)" >&2; exit 2
fi
for arg in "$@"; do
  if [[ $arg == --seed || $arg == --seed=* ]]; then
    echo "semi.sh: the repeats set --seed 0..REPEATS-1 themselves; drop $arg" >&2; exit 2
  fi
done
if ! [[ $REPEATS =~ ^[1-9][0-9]*$ ]]; then
  echo "semi.sh: REPEATS=$REPEATS: expected a whole number of at least 1" >&2; exit 2
fi
CONFIG=${CONFIG:-config/$DATASET/$RUN.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-output/$DATASET/$RUN}
runs=()
for ((seed = 0; seed < REPEATS; seed++)); do
  echo "== repeat $((seed + 1))/$REPEATS: --seed $seed, $OUTPUT_DIR/seed$seed"
  bash scripts/launch.sh main_finetune.py --config "$CONFIG" --output_dir "$OUTPUT_DIR/seed$seed" \
    ${PRETRAIN:+--finetune "$PRETRAIN"} --dist_eval --auto_resume --seed "$seed" "$@"
  runs+=("seed $seed=$OUTPUT_DIR/seed$seed")
done
python -m util.summary --mean "${runs[@]}"
