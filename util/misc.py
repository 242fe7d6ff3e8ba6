"""Run set-up, seeding, mixed precision, checkpoints and logs shared by the three entry points."""
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from util import dist
from util.checkpoint import load_checkpoint
from util.config import fail

AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def resolve_device(name):
    """'auto' -> cuda when available, else cpu; fail with one line on a device this machine lacks."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError:
        fail(f"--device {name}: not a device name (expected cpu, cuda or cuda:N)")
    if device.type == 'cuda' and not torch.cuda.is_available():
        fail(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
             f"run with --device cpu")
    return device


def seed_everything(*keys):
    """Seed torch (all devices), NumPy and random from the integers `keys`, e.g. (seed, epoch, rank)."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def autocast(args, device):
    """Autocast context for --amp (bf16 runs on CPU too); a no-op for --amp none."""
    dtype = AMP_DTYPES[args.amp]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


class LossScaler:
    """Backward, then (every accum_iter steps) optional gradient clipping and the optimiser step.

    The loss is scaled by a GradScaler for --amp fp16 only; for none and bf16 the scaler is disabled and
    costs nothing. Nothing here reads a value back to the host (a fp16 step does, to skip overflows).
    """

    def __init__(self, args, device):
        self._scaler = torch.amp.GradScaler(device.type, enabled=args.amp == 'fp16')

    def __call__(self, loss, optimizer, parameters, clip_grad=None, update_grad=True):
        self._scaler.scale(loss).backward()
        if not update_grad:
            return
        if clip_grad is not None:
            self._scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, clip_grad)
        self._scaler.step(optimizer)
        self._scaler.update()

    def state_dict(self):
        return self._scaler.state_dict()

    def load_state_dict(self, state_dict):
        """The saved scale; a checkpoint saved without fp16 has none, and an fp16 run then starts a fresh one."""
        if not state_dict and self._scaler.is_enabled():
            print("Note: the checkpoint has no fp16 loss scale (saved without --amp fp16); starting a fresh one")
            return
        self._scaler.load_state_dict(state_dict)


def atomic_save(obj, path):
    """torch.save to a temporary file beside `path`, then rename: `path` is never half written."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_copy(src, dst):
    dst = Path(dst)
    tmp = dst.with_name(dst.name + '.tmp')
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def atomic_write(path, write):
    """write(temporary path beside `path`), then rename it to `path`: `path` is never half written."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_model(args, epoch, model_without_ddp, optimizer, loss_scaler, **extra):
    """Write checkpoint-<epoch>.pth (at epochs 0, save_every, 2 * save_every, ... and at the last epoch: the
    published layout, e.g. 0, 20, ..., 380, 399), then checkpoint-last.pth
    (every epoch), on rank 0, in the published format {'model', 'optimizer', 'epoch', 'scaler', 'args'} plus
    `extra`. checkpoint-last.pth is written last: a run stopped before it is resumed from the previous epoch.
    """
    if not dist.is_main_process():
        return
    output_dir = Path(args.output_dir)
    state = {'model': model_without_ddp.state_dict(), 'optimizer': optimizer.state_dict(), 'epoch': epoch,
             'scaler': loss_scaler.state_dict(), 'args': vars(args), **extra}
    last = output_dir / 'checkpoint-last.pth'
    if epoch % args.save_every == 0 or epoch + 1 == args.epochs:
        numbered = output_dir / f'checkpoint-{epoch}.pth'
        atomic_save(state, numbered)
        atomic_copy(numbered, last)
    else:
        atomic_save(state, last)


def eval_only(args):
    """True for --eval (the classification entry points): evaluate a checkpoint, no training."""
    return getattr(args, 'eval', False)


def resume_path(args):
    """--resume, or with --auto_resume the newest checkpoint in output_dir ('' when there is none)."""
    if args.resume or not args.auto_resume:
        return args.resume
    output_dir = Path(args.output_dir)
    if (output_dir / 'checkpoint-last.pth').is_file():
        return str(output_dir / 'checkpoint-last.pth')
    numbered = [p for p in output_dir.glob('checkpoint-*.pth') if p.stem.split('-')[1].isdigit()]
    return str(max(numbered, key=lambda p: int(p.stem.split('-')[1]))) if numbered else ''


def load_model(args, model_without_ddp, optimizer, loss_scaler):
    """Restore the model and, unless --eval, the optimiser, scaler and epoch from the resume checkpoint.

    Sets args.start_epoch to the epoch after the saved one and returns the checkpoint (None when there is
    nothing to resume).
    """
    path = resume_path(args)
    if not path:
        return None
    try:
        checkpoint = load_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        fail(f"--resume: {e}")
    model_without_ddp.load_state_dict(checkpoint['model'])
    print(f"Resume checkpoint {path}")
    if not eval_only(args) and 'optimizer' in checkpoint and 'epoch' in checkpoint:
        optimizer.load_state_dict(checkpoint['optimizer'])
        if 'scaler' in checkpoint:
            loss_scaler.load_state_dict(checkpoint['scaler'])
        args.start_epoch = checkpoint['epoch'] + 1
        print(f"With optimizer and scaler state; continuing at epoch {args.start_epoch}")
    return checkpoint


def log_stats(args, stats):
    """Append one JSON line to output_dir/log.txt (rank 0)."""
    if dist.is_main_process():
        with open(Path(args.output_dir) / 'log.txt', 'a') as f:
            f.write(json.dumps(stats) + '\n')
