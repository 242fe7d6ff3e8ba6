#!/usr/bin/env bash
# torchrun launcher of the training scripts: bash scripts/launch.sh main_<entry>.py [flags ...]
#   GPUS         processes (GPUs) per node; default: every visible GPU, or 1 process without CUDA
#   NNODES       nodes (default 1); for NNODES > 1 also NODE_RANK (0..NNODES-1), MASTER_ADDR (address of
#                node 0) and MASTER_PORT (default 29500), the same on every node
# Batch sizes in the configs are per process. The published runs used 4 processes for pre-training and 2 for
# everything else: the defaults of scripts/pretrain.sh and of the other scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${GPUS:-$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')}
NNODES=${NNODES:-1}
if [ "$NNODES" -gt 1 ]; then
  exec torchrun --nnodes="$NNODES" --node_rank="${NODE_RANK:?set NODE_RANK: 0 on the first node, 1 on the next, ...}" \
    --nproc_per_node="$GPUS" --master_addr="${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}" \
    --master_port="${MASTER_PORT:-29500}" "$@"
fi
exec torchrun --standalone --nproc_per_node="$GPUS" "$@"
