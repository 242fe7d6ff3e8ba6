#!/usr/bin/env bash
# Lay out the PKU-MMD Phase I recordings of the real-recordings study from a clone of the public copy:
#   git clone https://github.com/AntonioSTO/is-rtmac && git -C is-rtmac checkout b540023
#   bash scripts/pku_v1_recordings.sh is-rtmac [data/pku_raw/v1]
# copies the 218 videos listed in config/real_pku/videos.txt (skeleton/), their label files (label/) and the
# split files into the destination, the layout that python -m data.pku and scripts/real_pku.sh read. The
# clone holds more label files than videos; the list fixes the subset that the README's tables were measured on.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CLONE=${1:?usage: bash scripts/pku_v1_recordings.sh CLONE_OF_is-rtmac [DESTINATION]}
DEST=${2:-$REPO/data/pku_raw/v1}
SKELETON=$CLONE/Data/Skeleton/PKU_Skeleton_Renew
LABEL=$CLONE/Label/Train_Label_PKU_final
SPLIT=$CLONE/Split/Split
for dir in "$SKELETON" "$LABEL" "$SPLIT"; do
  [ -d "$dir" ] || { echo "error: $dir not found: give a clone of AntonioSTO/is-rtmac at commit b540023" >&2; exit 1; }
done
missing=$(while read -r video; do
  for f in "$SKELETON/$video.txt" "$LABEL/$video.txt"; do [ -s "$f" ] || echo "$f"; done
done < "$REPO/config/real_pku/videos.txt" | head -n 1)
if [ -n "$missing" ]; then
  echo "error: $missing is missing or empty (a clone without Git LFS content?); the study needs all 218 videos" >&2
  exit 1
fi
mkdir -p "$DEST/skeleton" "$DEST/label"
while read -r video; do
  cp "$SKELETON/$video.txt" "$DEST/skeleton/"
  cp "$LABEL/$video.txt" "$DEST/label/"
done < "$REPO/config/real_pku/videos.txt"
cp "$SPLIT/cross-subject.txt" "$SPLIT/cross-view.txt" "$DEST/"
echo "$(wc -l < "$REPO/config/real_pku/videos.txt") videos with their labels and the split files in $DEST"
