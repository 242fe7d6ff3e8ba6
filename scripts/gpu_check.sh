#!/usr/bin/env bash
# The first check on a GPU machine, sized to finish within 8 minutes on one GPU: the environment, the benchmark at the
# published pre-training batch (ours against the published step, torch.compile, bf16 and fp16), the
# official model vectors of ../shared/vectors under fp32, bf16 and fp16 autocast (largest differences), a
# demo-size MAMP pre-training and linear probe on CUDA, and with 2 visible GPUs the same under torchrun
# (NCCL, --dist_eval); then one table of the steps. A failing step is reported and the others still run.
#   --cpu     every step on the CPU at tiny sizes (2 gloo processes for the torchrun step): tests the script
#   OUTPUT    results folder (default gpu_check_output/<date>-<time>)
#   VECTORS   the official vectors (default $MAMP_SHARED/vectors, MAMP_SHARED defaulting to ../shared)
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
DEVICE=cuda
case "${1:-}" in
  --cpu) DEVICE=cpu ;;
  '') ;;
  *) echo "gpu_check.sh: unknown option $1 (the only option is --cpu)" >&2; exit 2 ;;
esac
if [ "$DEVICE" = cuda ] && ! python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check.sh: CUDA is not available on this machine; run it where a GPU is," \
       "or with --cpu to test the script" >&2
  exit 1
fi
OUTPUT=${OUTPUT:-$REPO/gpu_check_output/$(date +%Y%m%d-%H%M%S)}
VECTORS=${VECTORS:-${MAMP_SHARED:-$REPO/../shared}/vectors}
mkdir -p "$OUTPUT"
: > "$OUTPUT/summary.tsv"
echo "gpu_check on $DEVICE: writing to $OUTPUT"

# step NAME COMMAND...: run it with its output in OUTPUT/NAME.log (and on screen), record its status and time;
# the command may write a one-line result to OUTPUT/NAME.result
step() {
  local name=$1 start=$SECONDS status
  shift
  echo "== $name"
  "$@" 2>&1 | tee "$OUTPUT/$name.log"
  status=$([ "${PIPESTATUS[0]}" -eq 0 ] && echo ok || echo FAILED)
  printf '%s\t%s\t%s s\t%s\n' "$name" "$status" "$((SECONDS - start))" \
    "$(cat "$OUTPUT/$name.result" 2>/dev/null || echo "see $name.log")" >> "$OUTPUT/summary.tsv"
}

environment() {
  python - "$DEVICE" > "$OUTPUT/environment.result" <<'EOF'
import sys, torch
device = sys.argv[1]
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device == 'cuda' else []
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"{len(gpus)} GPU(s){': ' + ', '.join(gpus) if gpus else ''}")
EOF
  cat "$OUTPUT/environment.result"
  [ "$DEVICE" = cpu ] || nvidia-smi || true
}

benchmark() {
  if [ "$DEVICE" = cuda ]; then  # the published pre-training batch, 32 per GPU
    python benchmark.py --device cuda --batch 32 --published --compile --amp fp32,bf16,fp16 --decoder_depth 3 \
      --only matmul,pretrain,finetune,eval --out "$OUTPUT/bench.json" || return
  else  # torch.compile of three precisions takes minutes on a CPU: left out here
    python benchmark.py --device cpu --quick --published --amp fp32,bf16,fp16 --only matmul,pretrain,finetune \
      --out "$OUTPUT/bench.json" || return
  fi
  python - "$OUTPUT/bench.json" > "$OUTPUT/benchmark.result" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))['rows']
pretrain = [r for r in rows if r['section'] == 'pretrain' and not r['published']]
print('; '.join(f"pretrain {r['precision']}{' compiled' if r['compile'] else ''} {r['samples_per_s']:.3g}/s"
                + (f" ({r['speedup_vs_published']:.2f}x published)" if 'speedup_vs_published' in r else '')
                for r in pretrain))
EOF
}

vectors() {
  python - "$DEVICE" "$VECTORS" "$OUTPUT/vectors.result" <<'EOF'
"""The official model vectors on DEVICE under fp32, bf16 and fp16 autocast: the largest difference of the
outputs (logits, or MAMP's predictions and loss) from the official float32 CPU outputs. The masking noise
is drawn on the CPU from the vector's seed, as the vectors were made, so that every device masks the same
tokens."""
import sys
from pathlib import Path
from unittest import mock

import torch

from model_mamp import MAMP
from model_transformer import SkeletonTransformer

device, folder, result = torch.device(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if not folder.is_dir():
    raise SystemExit(f"error: {folder} not found: give the folder of the official vectors with VECTORS=...")
cpu_rand = torch.rand
worst = {}
print(f"{'vector':<24} {'precision':<9} {'max |output diff|':>18} {'|loss diff|':>12}")
for name in ('classifier_linprobe.pt', 'classifier_finetune.pt', 'mamp_motion.pt', 'mamp_random.pt', 'mamp_mae.pt'):
    vec = torch.load(folder / name, weights_only=True)
    classifier = name.startswith('classifier')
    model = (SkeletonTransformer(**vec['config']) if classifier
             else MAMP(**vec['config'], **({'target': 'joints'} if 'mae' in name else {})))
    model.load_state_dict(vec['state_dict'], strict=True)
    model.to(device).train(not classifier)
    x = vec['input'].to(device)
    for precision, dtype in (('fp32', None), ('bf16', torch.bfloat16), ('fp16', torch.float16)):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if classifier:
                output, loss_diff = model(x).float().cpu(), None
                diff = (output - vec['logits']).abs().max().item()
            else:
                torch.manual_seed(vec['rng_seed'])
                with mock.patch.object(torch, 'rand', lambda *size, device=None: cpu_rand(*size).to(device)):
                    loss, pred, mask = model(x, **{'motion_aware_tau': 0.0, **vec['call']})
                assert torch.equal(mask.cpu(), vec['mask']), f"{name}: another mask than the official one"
                diff = (pred.float().cpu() - vec['pred']).abs().max().item()
                loss_diff = abs(loss.item() - vec['loss'].item())
        worst[precision] = max(worst.get(precision, 0), diff)
        print(f"{name:<24} {precision:<9} {diff:>18.2e} {'-' if loss_diff is None else f'{loss_diff:.2e}':>12}")
Path(result).write_text('largest output difference ' + ', '.join(f"{p} {d:.1e}" for p, d in worst.items()) + '\n')
EOF
}

# demo RUN [torchrun flags...]: synthetic NTU-60-style data, MAMP pre-training, linear probe (--dist_eval)
demo() {
  local name=$1 run=$OUTPUT/$1 launch=(python)
  shift
  [ $# -gt 0 ] && launch=(python -m torch.distributed.run --standalone "$@")
  local common=(--data_path "$OUTPUT/data/NTU60_XSub.npz" --device "$DEVICE")
  "${launch[@]}" main_pretrain.py --config config/demo/pretrain.yaml "${common[@]}" --output_dir "$run/pretrain" \
    --epochs "$PRETRAIN_EPOCHS" || return
  "${launch[@]}" main_linprobe.py --config config/demo/linear.yaml "${common[@]}" --output_dir "$run/linear" \
    --finetune "$run/pretrain/checkpoint-last.pth" --epochs "$LINEAR_EPOCHS" --dist_eval || return
  python - "$run" > "$OUTPUT/$name.result" <<'EOF'
import json, sys
pretrain, linear = ([json.loads(line) for line in open(f"{sys.argv[1]}/{stage}/log.txt")]
                    for stage in ('pretrain', 'linear'))
print(f"pre-training loss {pretrain[0]['train_loss']:.3f} -> {pretrain[-1]['train_loss']:.3f}, "
      f"linear probe top-1 {linear[-1]['test_acc1']:.1f}% on {linear[-1]['test_num_samples']} samples")
EOF
}

demo_data() {
  python -m data.synthetic --out-dir "$OUTPUT/data" --format skeleton --num-train "$NUM_TRAIN" \
    --num-test "$NUM_TEST" && python -m data.ntu --dataset ntu60 --raw-dir "$OUTPUT/data/raw" --out-dir "$OUTPUT/data"
}

if [ "$DEVICE" = cuda ]; then
  NUM_TRAIN=600 NUM_TEST=300 PRETRAIN_EPOCHS=20 LINEAR_EPOCHS=20
  GPUS=$(python -c 'import torch; print(torch.cuda.device_count())')
else
  NUM_TRAIN=40 NUM_TEST=20 PRETRAIN_EPOCHS=1 LINEAR_EPOCHS=1 GPUS=2
fi
step environment environment
step benchmark benchmark
step vectors vectors
step demo_data demo_data
step demo demo demo
if [ "$GPUS" -ge 2 ]; then
  step demo_2_processes demo demo_2_processes --nproc_per_node 2
else
  printf 'demo_2_processes\tskipped\t0 s\tone GPU visible\n' >> "$OUTPUT/summary.tsv"
fi

echo
echo "gpu_check on $DEVICE, $((SECONDS / 60)) min $((SECONDS % 60)) s (logs in $OUTPUT):"
column -t -s $'\t' "$OUTPUT/summary.tsv"
! grep -q $'\tFAILED\t' "$OUTPUT/summary.tsv"
