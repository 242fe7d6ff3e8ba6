#!/usr/bin/env bash
# MAMP on real recordings, on 2 CPU cores (GPU when present): the PKU-MMD Phase I videos in RAW_DIR -> the
# PKU-MMD preprocessing (cross-subject and cross-view) -> for each benchmark: MAMP pre-training, the MAE
# baseline pre-trained with the same budget, linear probes and kNN evaluations of both and of a randomly
# initialised encoder, fine-tuning after MAMP and training from scratch with the same budget; then the tuning
# study: MAMP for 20 epochs and contrastive tuning (main_tune.py) for 5 epochs, against MAMP alone for 25
# epochs, each with linear probe, kNN (k = 1 and 20) and fine-tuning, and the three again without 4 held-out
# actions for few-shot episodes on them; temporal action detection in the untrimmed recordings (main_detect.py)
# with the frozen encoder and fine-tuned, from MAMP, the MAE baseline and random init -> a table of the test
# accuracies and detection mAP.
# Models and schedules: config/real_pku/*.yaml. Each run writes a fresh folder OUTPUT_ROOT/<date>-<time>:
# data/ (the arrays), and per benchmark XSub/, XView/ one output folder per stage with its log.txt,
# checkpoints, TensorBoard events, config.yaml and <stage>.log (the stage's console output). On screen: each
# stage with its .log file, then its epoch lines and kNN results as they come.
#   RAW_DIR      skeleton/, label/ and the split files of PKU-MMD Phase I (default data/pku_raw/v1)
#   SEED         initial weights and augmentation (default 0)
#   OUTPUT_ROOT  default real_pku_output in the repository
#   DEVICE       auto (default: cuda when available), cpu or cuda
#   PARTS        which parts of the study run, in this order (default: all five): mamp (MAMP, its probes
#                and random init), mae (the MAE baseline), finetune (fine-tune and scratch), tuning, detect
#   BENCHMARKS   default "XSub XView"
# `bash scripts/real_pku.sh table` runs nothing and prints the table of all runs in OUTPUT_ROOT (e.g. one per
# seed) pooled: mean, standard deviation and range over the runs.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUTPUT_ROOT=$(realpath -m "${OUTPUT_ROOT:-$REPO/real_pku_output}")  # relative to the caller
read -r -a BENCHMARKS <<< "${BENCHMARKS:-XSub XView}"
read -r -a PARTS <<< "${PARTS:-mamp mae finetune tuning detect}"

table() {  # table RUNS: the accuracy table of one run folder, or of a wildcard pattern pooling several; rows of
  # stages that were not run (PARTS) are left out
  local rows=() b row encoder protocol stem
  local -A encoders=([mamp]="MAMP 20 epochs" [tune]="MAMP 20 + tuning 5" [mamp_long]="MAMP 25 epochs")
  local -A detectors=([mamp]="MAMP" [mae]="MAE" [random]="random init")
  for b in "${BENCHMARKS[@]}"; do
    rows+=("$b linear probe after MAMP=$1/$b/linear_mamp" "$b linear probe after MAE=$1/$b/linear_mae"
           "$b linear probe from random init=$1/$b/linear_random" "$b kNN after MAMP=$1/$b/knn_mamp"
           "$b kNN after MAE=$1/$b/knn_mae" "$b kNN from random init=$1/$b/knn_random"
           "$b fine-tune after MAMP=$1/$b/finetune_mamp" "$b from scratch=$1/$b/scratch")
    for mode in linear finetune; do  # detection: mAP_a and mAP_v at IoU 0.1, 0.3 and 0.5, from detection.json
      for encoder in mamp mae random; do
        for figure in mAP_a@0.1 mAP_a@0.3 mAP_a@0.5 mAP_v@0.1 mAP_v@0.3 mAP_v@0.5; do
          rows+=("$b detection ($mode) from ${detectors[$encoder]}: $figure=$1/$b/detect_${mode}_$encoder#$figure")
        done
      done
    done
    compgen -G "$1/$b/tune" > /dev/null || continue  # the tuning study's rows, for runs of its part
    for protocol in "linear probe=linear_" "kNN k=1=knn_#1" "kNN k=20=knn_#20" "fine-tune=finetune_" \
                    "4-way 1-shot=fewshot_heldout_#1" "4-way 5-shot=fewshot_heldout_#5"; do
      for encoder in mamp tune mamp_long; do
        stem=${protocol##*=}
        rows+=("$b tuning study: ${protocol%=*}, ${encoders[$encoder]}=$1/$b/${stem%#*}$encoder${stem#"${stem%#*}"}")
      done
    done
  done
  local present=() folder
  for row in "${rows[@]}"; do  # rows whose folder (before any #figure) exists in at least one run
    folder=${row##*=}
    if compgen -G "${folder%#*}" > /dev/null; then present+=("$row"); fi
  done
  python -m util.summary "${present[@]}"
}

if [ "${1:-}" = table ]; then
  cd "$REPO"
  table "$OUTPUT_ROOT/*"
  exit
fi
for part in "${PARTS[@]}"; do
  case $part in
    mamp | mae | finetune | tuning | detect) ;;
    *) echo "error: PARTS: unknown part '$part' (expected some of: mamp mae finetune tuning detect)" >&2; exit 1 ;;
  esac
done
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
      'Epoch '[0-9]*': train loss'* | kNN* | *-way\ *-shot* | 'Detection on'*) echo "   $line" ;;
    esac
  done
}

stage() {  # stage BENCHMARK NAME ENTRY CONFIG [FLAGS...]: one training run, its console output in its folder;
  # the data file is PKUv1_<BENCHMARK>.npz, or PKUv1_<BENCHMARK>_untrimmed.npz with UNTRIMMED=1
  local benchmark=$1 name=$2 entry=$3 cfg=$4 start=$SECONDS
  local out=$RUN/$benchmark/$name
  local log=$out/$name.log
  shift 4
  mkdir -p "$out"
  echo "== $benchmark $name ($(date +%H:%M:%S)), console output in $log"
  if ! PYTHONUNBUFFERED=1 python "$entry" --config "config/real_pku/$cfg.yaml" \
      --data_path "$RUN/data/PKUv1_$benchmark${UNTRIMMED:+_untrimmed}.npz" --device "$DEVICE" --seed "$SEED" --output_dir "$out" "$@" \
      2>> "$log" | tee -a "$log" | progress; then
    tail -n 5 "$log" >&2
    exit 1
  fi
  echo "   done in $((SECONDS - start)) s"
}

echo "== preprocessing: cross-subject and cross-view arrays"
python -m data.pku --phase 1 --raw-dir "$RAW_DIR" --out-dir "$RUN/data"
rm -r "$RUN/data/cache"

once() {  # once BENCHMARK NAME ...: stage BENCHMARK NAME ... unless an earlier part of this run made it
  [ -d "$RUN/$1/$2" ] || stage "$@"
}

for part in "${PARTS[@]}"; do
  for b in "${BENCHMARKS[@]}"; do
    case $part in
      mamp)  # the comparison the study is about first, so that an interrupted run still has it
        stage "$b" pretrain_mamp main_pretrain.py pretrain_mamp
        stage "$b" linear_mamp main_linprobe.py linear --finetune "$RUN/$b/pretrain_mamp/checkpoint-last.pth"
        stage "$b" linear_random main_linprobe.py linear
        stage "$b" knn_mamp main_knn.py linear --finetune "$RUN/$b/pretrain_mamp/checkpoint-last.pth" --k 20 1
        stage "$b" knn_random main_knn.py linear ;;
      mae)
        stage "$b" pretrain_mae main_pretrain.py pretrain_mae
        stage "$b" linear_mae main_linprobe.py linear --finetune "$RUN/$b/pretrain_mae/checkpoint-last.pth"
        stage "$b" knn_mae main_knn.py linear --finetune "$RUN/$b/pretrain_mae/checkpoint-last.pth" ;;
      finetune)
        stage "$b" finetune_mamp main_finetune.py finetune --finetune "$RUN/$b/pretrain_mamp/checkpoint-last.pth"
        stage "$b" scratch main_finetune.py scratch ;;
      tuning)  # MAMP 20 epochs + tuning 5 epochs against MAMP alone for 25 epochs
        once "$b" pretrain_mamp main_pretrain.py pretrain_mamp
        once "$b" knn_mamp main_knn.py linear --finetune "$RUN/$b/pretrain_mamp/checkpoint-last.pth" --k 20 1
        stage "$b" tune main_tune.py tune --finetune "$RUN/$b/pretrain_mamp/checkpoint-last.pth"
        stage "$b" pretrain_mamp_long main_pretrain.py pretrain_mamp_long
        for encoder in tune pretrain_mamp_long; do  # their evaluations: linear_tune, ..., linear_mamp_long, ...
          stage "$b" "linear_${encoder#pretrain_}" main_linprobe.py linear \
            --finetune "$RUN/$b/$encoder/checkpoint-last.pth"
          stage "$b" "knn_${encoder#pretrain_}" main_knn.py linear --finetune "$RUN/$b/$encoder/checkpoint-last.pth" \
            --k 20 1
        done
        echo "== $b t-SNE of the test features before and after tuning: $RUN/$b/pictures/tsne_tuning.png"
        python visualize.py tsne --config config/real_pku/linear.yaml --data_path "$RUN/data/PKUv1_$b.npz" \
          --device "$DEVICE" --seed "$SEED" --out "$RUN/$b/pictures/tsne_tuning.png" \
          --encoder "MAMP 20 epochs=$RUN/$b/pretrain_mamp/checkpoint-last.pth" \
          --encoder "MAMP 20 + tuning 5=$RUN/$b/tune/checkpoint-last.pth" \
          --encoder "MAMP 25 epochs=$RUN/$b/pretrain_mamp_long/checkpoint-last.pth"
        # few-shot: the same three encoders, pre-trained and tuned without the held-out actions
        stage "$b" heldout_mamp main_pretrain.py pretrain_mamp_heldout
        stage "$b" heldout_tune main_tune.py tune_heldout --finetune "$RUN/$b/heldout_mamp/checkpoint-last.pth"
        stage "$b" heldout_mamp_long main_pretrain.py pretrain_mamp_heldout_long
        for encoder in heldout_mamp heldout_tune heldout_mamp_long; do
          stage "$b" "fewshot_$encoder" main_fewshot.py fewshot --finetune "$RUN/$b/$encoder/checkpoint-last.pth"
        done
        for encoder in tune pretrain_mamp_long; do
          stage "$b" "finetune_${encoder#pretrain_}" main_finetune.py finetune \
            --finetune "$RUN/$b/$encoder/checkpoint-last.pth"
        done ;;
      detect)  # the untrimmed recordings: a frozen encoder and a linear head, and the whole network fine-tuned
        once "$b" pretrain_mamp main_pretrain.py pretrain_mamp
        once "$b" pretrain_mae main_pretrain.py pretrain_mae
        for encoder in mamp mae random; do
          start=()
          [ $encoder = random ] || start=(--finetune "$RUN/$b/pretrain_$encoder/checkpoint-last.pth")
          UNTRIMMED=1 stage "$b" "detect_linear_$encoder" main_detect.py detect "${start[@]}"
          UNTRIMMED=1 stage "$b" "detect_finetune_$encoder" main_detect.py detect_finetune "${start[@]}"
        done ;;
    esac
  done
done

echo
echo "Test accuracy (%), PKU-MMD Phase I recordings in $RAW_DIR, seed $SEED:"
table "$RUN"
echo
echo "Study finished in $((SECONDS / 60)) min $((SECONDS % 60)) s: $RUN"
echo "Training curves: tensorboard --logdir $RUN"
echo "All runs in $OUTPUT_ROOT pooled: bash scripts/real_pku.sh table"
