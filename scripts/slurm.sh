#!/usr/bin/env bash
# Slurm launcher: one torchrun per node through srun, rendezvous on the first node of the allocation.
#   sbatch --nodes=2 --gres=gpu:4 scripts/slurm.sh main_pretrain.py --config config/ntu60_xsub/pretrain_mamp.yaml \
#       --output_dir output/ntu60_xsub/pretrain_mamp
# Three minutes before the time limit Slurm sends SIGUSR1 to this script, which passes it to the training
# processes: they stop after the same step, write checkpoint-last.pth with the position inside the epoch and
# exit with status 3; the job is then requeued and continues from that step (--auto_resume is always on).
# A run that ends in that window anyway (status 0) is not requeued.
# A job preempted by Slurm (SIGTERM to every process) stops the same way and is requeued by Slurm itself.
#   GPUS  processes per node (default: the GPUs of the node, SLURM_GPUS_ON_NODE)
#SBATCH --job-name=mamp
#SBATCH --ntasks-per-node=1
#SBATCH --signal=B:USR1@180
#SBATCH --requeue
#SBATCH --open-mode=append
set -uo pipefail
if [ -z "${SLURM_JOB_ID:-}" ] || [ -z "${SLURM_JOB_NODELIST:-}" ]; then
  echo "error: scripts/slurm.sh runs inside a Slurm job: submit it with sbatch (or srun in an allocation);" \
       "on one machine use scripts/launch.sh" >&2
  exit 1
fi
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
export GPUS=${GPUS:-${SLURM_GPUS_ON_NODE:-1}} MASTER_PORT=${MASTER_PORT:-29500}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_ADDR
signalled=0
trap 'signalled=1; scancel --signal=USR1 "$SLURM_JOB_ID"' USR1
# torchrun ignores SIGUSR1 (trap '' is inherited through exec); the training processes catch it.
srun --kill-on-bad-exit=1 bash -c 'trap "" USR1; exec torchrun --nnodes="$SLURM_JOB_NUM_NODES" \
  --nproc_per_node="$GPUS" --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" \
  --rdzv_id="$SLURM_JOB_ID" "$@" --auto_resume' torchrun "$@" &
step=$!
wait "$step"
status=$?
while kill -0 "$step" 2>/dev/null; do  # the signal interrupted wait: let the processes write their checkpoint
  wait "$step"
  status=$?
done
if [ "$signalled" = 1 ] && [ "$status" != 0 ]; then  # 0: the run ended before the signal stopped it
  echo "time limit near: requeueing job $SLURM_JOB_ID to continue from checkpoint-last.pth" >&2
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$status"
