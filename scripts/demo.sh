#!/usr/bin/env bash
# MAMP end to end on a synthetic NTU-60-style dataset (GPU when present; the times on a 2-core CPU are in the
# README, and each stage prints the time so far and an ETA of the whole demo): raw .skeleton files -> the NTU
# preprocessing -> MAMP pre-training -> linear probe of the pre-trained encoder, linear probe of a randomly
# initialised encoder (the control) and fine-tuning -> kNN accuracy of both encoders -> pictures (masking,
# t-SNE, confusion) -> a table of the test accuracies (top-1 and mean class accuracy). Each run writes a fresh
# folder OUTPUT_ROOT/<date>-<time>: data/ (the preprocessed arrays), one output folder per stage (checkpoints,
# log.txt, TensorBoard events, config.yaml; per_class.csv after a probe or fine-tune) and pictures/; nothing
# from an earlier run is read or overwritten.
#   QUICK=1          the same comparison in about half the time: 300 training and 130 test samples, the 40
#                    pre-training and 5 probe epochs, 2 fine-tuning epochs (each can still be set below); with
#                    15 pre-training epochs MAMP was still on its loss plateau, its probe below random init's
#   SEED             data, initial weights and augmentation (default 0)
#   OUTPUT_ROOT      default demo_output in the repository
#   DEVICE           auto (default: cuda when available), cpu or cuda
#   NUM_TRAIN, NUM_TEST                              synthetic samples (default 600 and 300)
#   PRETRAIN_EPOCHS, LINEAR_EPOCHS, FINETUNE_EPOCHS  default: the epochs in config/demo/*.yaml
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
(cd "$REPO" && python -m util.requirements)  # one line, and no run folder, when they are missing
source "$REPO/scripts/run_folder.sh"
RUN=$(new_run_folder "${OUTPUT_ROOT:-$REPO/demo_output}")  # OUTPUT_ROOT relative to the caller
cd "$REPO"
SEED=${SEED:-0}
DEVICE=${DEVICE:-auto}
# SHARE[k-1]: the per-mille of the whole demo's time done when stage k starts (for the ETA), from the stage times
# of a quick run with 15 pre-training epochs on 2 shared CPU cores, each stage scaled by its samples x epochs
MODE=''
if [ "${QUICK:-0}" = 1 ]; then
  MODE=' (quick: fewer samples and epochs)'
  NUM_TRAIN=${NUM_TRAIN:-300} NUM_TEST=${NUM_TEST:-130} FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-2}
  SHARE=(0 25 30 757 801 855 935 971)
else
  SHARE=(0 16 20 694 735 786 934 969)
fi
NUM_TRAIN=${NUM_TRAIN:-600}
NUM_TEST=${NUM_TEST:-300}

stage() {  # stage K TITLE: "== K/8 TITLE", the time so far and, from the stages' measured shares, the ETA
  local share=${SHARE[$1 - 1]} eta=''
  if [ "$share" -gt 0 ]; then
    local left=$((SECONDS * 1000 / share - SECONDS))
    eta=", about $((left / 60)) min $((left % 60)) s left"
  fi
  echo "== $1/8 $2 [$((SECONDS / 60)) min $((SECONDS % 60)) s$eta]"
}

DATA=$RUN/data
echo "MAMP demo$MODE, seed $SEED: writing to $RUN"

stage 1 "synthetic actions: $NUM_TRAIN training and $NUM_TEST test samples as Kinect .skeleton files"
python -m data.synthetic --out-dir "$DATA" --seed "$SEED" --format skeleton --num-train "$NUM_TRAIN" \
  --num-test "$NUM_TEST"
stage 2 "preprocessing, as for the real NTU RGB+D 60 files"
python -m data.ntu --dataset ntu60 --raw-dir "$DATA/raw" --out-dir "$DATA"
rm -r "$DATA/raw" "$DATA/cache"  # the arrays are all the training needs; the same SEED gives the same files

common=(--data_path "$DATA/NTU60_XSub.npz" --device "$DEVICE" --seed "$SEED")
stage 3 "MAMP pre-training (kNN monitor and masking figure in TensorBoard, config/demo/pretrain.yaml)"
python main_pretrain.py --config config/demo/pretrain.yaml "${common[@]}" --output_dir "$RUN/pretrain" \
  ${PRETRAIN_EPOCHS:+--epochs "$PRETRAIN_EPOCHS"}
CHECKPOINT=$RUN/pretrain/checkpoint-last.pth
stage 4 "linear probe of the pre-trained encoder"
python main_linprobe.py --config config/demo/linear.yaml "${common[@]}" --output_dir "$RUN/linear" \
  --finetune "$CHECKPOINT" ${LINEAR_EPOCHS:+--epochs "$LINEAR_EPOCHS"}
stage 5 "linear probe of a randomly initialised encoder (the control)"
python main_linprobe.py --config config/demo/linear.yaml "${common[@]}" --output_dir "$RUN/linear_random" \
  ${LINEAR_EPOCHS:+--epochs "$LINEAR_EPOCHS"}
stage 6 "fine-tuning of the pre-trained encoder"
python main_finetune.py --config config/demo/finetune.yaml "${common[@]}" --output_dir "$RUN/finetune" \
  --finetune "$CHECKPOINT" ${FINETUNE_EPOCHS:+--epochs "$FINETUNE_EPOCHS"}
stage 7 "kNN accuracy of the pre-trained and of the randomly initialised encoder"
python main_knn.py --config config/demo/linear.yaml "${common[@]}" --output_dir "$RUN/knn" --finetune "$CHECKPOINT"
python main_knn.py --config config/demo/linear.yaml "${common[@]}" --output_dir "$RUN/knn_random"
stage 8 "pictures"
PICTURES=$RUN/pictures
python visualize.py masking --config config/demo/pretrain.yaml --checkpoint "$CHECKPOINT" "${common[@]}" \
  --out "$PICTURES/masking.png"
python visualize.py tsne --config config/demo/linear.yaml "${common[@]}" --encoder "MAMP=$CHECKPOINT" \
  --encoder "random init=" --out "$PICTURES/tsne.png"
python visualize.py confusion --config config/demo/finetune.yaml "${common[@]}" \
  --checkpoint "$RUN/finetune/checkpoint-last.pth" --out "$PICTURES/confusion.png"

echo
echo "Test accuracy (%) on the $NUM_TEST synthetic test samples, seed $SEED:"
python -m util.summary "linear probe after MAMP=$RUN/linear" "linear probe from random init=$RUN/linear_random" \
  "fine-tune after MAMP=$RUN/finetune" --knn "MAMP encoder=$RUN/knn" "random init encoder=$RUN/knn_random"
echo
echo "Demo finished in $((SECONDS / 60)) min $((SECONDS % 60)) s."
echo "Pre-trained encoder: $CHECKPOINT"
echo "Checkpoints, log.txt and config.yaml of each stage: $RUN/{pretrain,linear,linear_random,finetune}"
echo "Accuracy of every action after the last epoch: $RUN/{linear,linear_random,finetune}/per_class.csv"
echo "Pictures: $PICTURES/masking.png (motion-aware masking), $PICTURES/tsne.png (features of both encoders),"
echo "  $PICTURES/confusion.png and confusion.csv (fine-tune errors by action)"
echo "Training curves: tensorboard --logdir $RUN"
