#!/usr/bin/env bash
# MAMP on real recordings, on 2 CPU cores (GPU when present): the PKU-MMD Phase I videos in RAW_DIR -> the
# PKU-MMD preprocessing (cross-subject and cross-view) -> for each benchmark: MAMP pre-training, the MAE
# baseline pre-trained with the same budget, linear probes and kNN evaluations of both and of a randomly
# initialised encoder, fine-tuning after MAMP and training from scratch with the same budget -> a table of
# the test accuracies.
# Models and schedules: config/real_pku/*.yaml. Each run writes a fresh folder OUTPUT_ROOT/<date>-<time>:
# data/ (the arrays), and per benchmark XSub/, XView/ one output folder per stage with its log.txt,
# checkpoints, TensorBoard events, config.yaml and <stage>.log (the stage's console output). On screen: each
# stage with its .log file, then its epoch lines and kNN results as they come.
#   RAW_DIR      skeleton/, label/ and the split files of PKU-MMD Phase I (default data/pku_raw/v1)
#   SEED         initial weights and augmentation (default 0)
#   OUTPUT_ROOT  default real_pku_output in the repository
#   DEVICE       auto (default: cuda when available), cpu or cuda
# `bash scripts/real_pku.sh table` runs nothing and prints the table of all runs in OUTPUT_ROOT (e.g. one per
# seed) pooled: mean, standard deviation and range over the runs.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUTPUT_ROOT=$(realpath -m "${OUTPUT_ROOT:-$REPO/real_pku_output}")  # relative to the caller
BENCHMARKS=(XSub XView)

table() {  # table RUNS: the accuracy table of one run folder, or of a wildcard pattern pooling several
  local rows=() b
  for b in "${BENCHMARKS[@]}"; do
    rows+=("$b linear probe after MAMP=$1/$b/linear_mamp" "$b linear probe after MAE=$1/$b/linear_mae"
           "$b linear probe from random init=$1/$b/linear_random" "$b kNN after MAMP=$1/$b/knn_mamp"
           "$b kNN after MAE=$1/$b/knn_mae" "$b kNN from random init=$1/$b/knn_random"
           "$b fine-tune after MAMP=$1/$b/finetune_mamp" "$b from scratch=$1/$b/scratch")
  done
  python -m util.summary "${rows[@]}"
}

if [ "${1:-}" = table ]; then
  cd "$REPO"
  table "$OUTPUT_ROOT/*"
  exit
fi
(cd "$REPO" && python -m util.requirements)  # one line, and no run folder, when they are missing
source "$REPO/scripts/run_folder.sh"
RUN=$(new_run_folder "$OUTPUT_ROOT")
cd "$REPO"
RAW_DIR=${RAW_DIR:-data/pku_raw/v1}
SEED=${SEED:-0}
DEVICE=${DEVICE:-auto}
echo "MAMP on the PKU-MMD Phase I recordings in $RAW_DIR, seed $SEED: writing to $RUN"

progress() {  # the lines of a run's console output that show how far it is (one per epoch, kNN results), indented
  local line
  while IFS= read -r line; do
    case $line in
      'Epoch '[0-9]*': train loss'* | kNN*) echo "   $line" ;;
    esac
  done
}

stage() {  # stage BENCHMARK NAME ENTRY CONFIG [FLAGS...]: one training run, its console output in its folder
  local benchmark=$1 name=$2 entry=$3 cfg=$4 start=$SECONDS
  local out=$RUN/$benchmark/$name
  local log=$out/$name.log
  shift 4
  mkdir -p "$out"
  echo "== $benchmark $name ($(date +%H:%M:%S)), console output in $log"
  if ! PYTHONUNBUFFERED=1 python "$entry" --config "config/real_pku/$cfg.yaml" \
      --data_path "$RUN/data/PKUv1_$benchmark.npz" --device "$DEVICE" --seed "$SEED" --output_dir "$out" "$@" \
      2>> "$log" | tee -a "$log" | progress; then
    tail -n 5 "$log" >&2
    exit 1
  fi
  echo "   done in $((SECONDS - start)) s"
}

echo "== preprocessing: cross-subject and cross-view arrays"
python -m data.pku --phase 1 --raw-dir "$RAW_DIR" --out-dir "$RUN/data"
rm -r "$RUN/data/cache"

# The comparison the study is about first, so that an interrupted run still has it.
for b in "${BENCHMARKS[@]}"; do
  stage "$b" pretrain_mamp main_pretrain.py pretrain_mamp
  stage "$b" linear_mamp main_linprobe.py linear --finetune "$RUN/$b/pretrain_mamp/checkpoint-last.pth"
  stage "$b" linear_random main_linprobe.py linear
  stage "$b" knn_mamp main_knn.py linear --finetune "$RUN/$b/pretrain_mamp/checkpoint-last.pth"
  stage "$b" knn_random main_knn.py linear
done
for b in "${BENCHMARKS[@]}"; do
  stage "$b" pretrain_mae main_pretrain.py pretrain_mae
  stage "$b" linear_mae main_linprobe.py linear --finetune "$RUN/$b/pretrain_mae/checkpoint-last.pth"
  stage "$b" knn_mae main_knn.py linear --finetune "$RUN/$b/pretrain_mae/checkpoint-last.pth"
done
for b in "${BENCHMARKS[@]}"; do
  stage "$b" finetune_mamp main_finetune.py finetune --finetune "$RUN/$b/pretrain_mamp/checkpoint-last.pth"
  stage "$b" scratch main_finetune.py scratch
done

echo
echo "Test accuracy (%), PKU-MMD Phase I recordings in $RAW_DIR, seed $SEED:"
table "$RUN"
echo
echo "Study finished in $((SECONDS / 60)) min $((SECONDS % 60)) s: $RUN"
echo "Training curves: tensorboard --logdir $RUN"
echo "All runs in $OUTPUT_ROOT pooled: bash scripts/real_pku.sh table"
