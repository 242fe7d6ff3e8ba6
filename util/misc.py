"""Run set-up, seeding, mixed precision, checkpoints and logs shared by the three entry points."""
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from util import dist, lock
from util.checkpoint import load_checkpoint
from util.config import fail

AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def resolve_device(name):
    """'auto' -> cuda when available, else cpu; fail with one line on a device this machine lacks or that cannot
    run training (meta, xla, ...)."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda', 'mps'):
        fail(f"--device {name}: not a device to run on (expected auto, cpu, cuda, cuda:N or mps)")
    if device.type == 'cuda' and not torch.cuda.is_available():
        fail(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
             f"run with --device cpu")
    if device.type == 'mps' and not torch.backends.mps.is_available():
        fail(f"--device {name}: MPS is not available on this machine (torch {torch.__version__}); "
             f"run with --device cpu")
    return device


def seed_everything(*keys):
    """Seed torch (all devices), NumPy and random from the integers `keys`, e.g. (seed, epoch, rank)."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
    torch.default_generator.manual_seed(seed)  # torch.manual_seed also visits every other backend: 10x slower
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
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


def atomic_write(path, write):
    """write(tmp) to a temporary file beside `path` (unique to this process, same suffix), then rename it to
    `path`: `path` is never half written. On a failed write (a full disk, a read-only folder) the temporary
    file is removed, `path` is untouched and the run stops with one line."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        fail(f"cannot write {path}: {' '.join(str(e).split())} (free space, or write to another folder)")
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(obj, path):
    """torch.save to a temporary file beside `path`, then rename: `path` is never half written."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_copy(src, dst):
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def training_state(args, epoch, model_without_ddp, optimizer, loss_scaler, **extra):
    """The published checkpoint format {'model', 'optimizer', 'epoch', 'scaler', 'args'} plus `extra`."""
    return {'model': model_without_ddp.state_dict(), 'optimizer': optimizer.state_dict(), 'epoch': epoch,
            'scaler': loss_scaler.state_dict(), 'args': vars(args), **extra}


def save_preempted(args, epoch, position, model_without_ddp, optimizer, loss_scaler, **extra):
    """checkpoint-last.pth of a run stopped inside `epoch` (rank 0): 'epoch' is the last complete one and
    'position' the step to continue from with the loss sums so far (see engine.train_one_epoch)."""
    if dist.is_main_process():
        atomic_save(training_state(args, epoch - 1, model_without_ddp, optimizer, loss_scaler,
                                   position=position, **extra), Path(args.output_dir) / 'checkpoint-last.pth')


def save_model(args, epoch, model_without_ddp, optimizer, loss_scaler, **extra):
    """Write checkpoint-<epoch>.pth (at epochs 0, save_every, 2 * save_every, ... and at the last epoch: the
    published layout, e.g. 0, 20, ..., 380, 399), then checkpoint-last.pth (every epoch), on rank 0, in the
    format of training_state. checkpoint-last.pth is written last: a run stopped before it is resumed from the
    previous epoch.
    """
    if not dist.is_main_process():
        return
    output_dir = Path(args.output_dir)
    state = training_state(args, epoch, model_without_ddp, optimizer, loss_scaler, **extra)
    last = output_dir / 'checkpoint-last.pth'
    if epoch % args.save_every == 0 or epoch + 1 == args.epochs:
        numbered = output_dir / f'checkpoint-{epoch}.pth'
        atomic_save(state, numbered)
        atomic_copy(numbered, last)
    else:
        atomic_save(state, last)


def make_dir(path, flag):
    """Create folder `path` (given by `flag`), or stop with one line when it cannot be (a file, read-only)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{flag} {path}: cannot create the folder ({e.strerror}); choose a writable folder")
    return Path(path)


def check_output_path(path, flag):
    """Stop with one line when the output file `path` of `flag` cannot be written: a folder, or in a folder that
    does not exist (checked before the work, so that a wrong path costs nothing). None: no output."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        fail(f"{flag} {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        fail(f"{flag} {path}: no folder {path.parent}; create it or give another path")


def first_problem(error):
    """The first specific line of a load_state_dict error (e.g. 'size mismatch for blocks.0...')."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[min(1, len(lines) - 1)][:300]


def lock_output_dir(output_dir):
    """Create `output_dir` and hold an exclusive lock on its .lock file for the life of this process
    (util.lock): a second run into the same folder stops with one line naming the holder's pid; a later run
    in the same process (e.g. main() called again) takes over its earlier lock."""
    lock.hold(make_dir(output_dir, '--output_dir') / '.lock', '--output_dir', output_dir,
              'a running training process')


def release_output_dirs():
    """Give up the locks this process holds (at the end of a run, so that a later run in the same process or
    another process may use the folder)."""
    lock.release()


def eval_only(args):
    """True for --eval (the classification entry points): evaluate a checkpoint, no training."""
    return getattr(args, 'eval', False)


def resume_candidates(args):
    """--resume, or with --auto_resume the checkpoints in output_dir, newest first (checkpoint-last.pth, then
    checkpoint-<epoch>.pth by decreasing epoch)."""
    if args.resume or not args.auto_resume:
        return [args.resume] if args.resume else []
    output_dir = Path(args.output_dir)
    numbered = [p for p in output_dir.glob('checkpoint-*.pth') if p.stem.split('-')[1].isdigit()]
    last = [output_dir / 'checkpoint-last.pth'] if (output_dir / 'checkpoint-last.pth').is_file() else []
    return [str(p) for p in last + sorted(numbered, key=lambda p: -int(p.stem.split('-')[1]))]


def resume_path(args):
    """--resume, or with --auto_resume the newest checkpoint in output_dir ('' when there is none)."""
    return next(iter(resume_candidates(args)), '')


def load_model(args, model_without_ddp, optimizer, loss_scaler):
    """Restore the model and, unless --eval, the optimiser, scaler and position from the resume checkpoint.

    With --auto_resume an unreadable checkpoint (e.g. cut short by a full disk, whatever its size) is reported
    and the next newest is used. Sets args.start_epoch to the epoch to continue and args.start_step to the
    step inside it (0 at an epoch boundary; more after a preemption) and returns the checkpoint (None when
    there is nothing to resume). A checkpoint that does not fit the model stops the run with one line.
    """
    args.start_step = 0
    for path in resume_candidates(args):
        try:
            checkpoint = load_checkpoint(path)
            break
        except ValueError as e:  # missing, unreadable, damaged or not a checkpoint (util.checkpoint)
            if not args.auto_resume or args.resume:
                fail(f"--resume: {e}")
            print(f"Skipping unreadable checkpoint: {e}")
    else:
        if resume_candidates(args):
            fail(f"--auto_resume: no readable checkpoint in {args.output_dir}; move the damaged ones away to "
                 f"start afresh")
        return None
    try:
        model_without_ddp.load_state_dict(checkpoint.get('model', checkpoint))
    except RuntimeError as e:
        fail(f"--resume {path}: does not fit the model of {args.config} ({first_problem(e)}); give a checkpoint "
             f"of this model (a pre-training checkpoint goes to --finetune)")
    print(f"Resume checkpoint {path}")
    if not eval_only(args) and 'optimizer' in checkpoint and 'epoch' in checkpoint:
        try:
            optimizer.load_state_dict(checkpoint['optimizer'])
        except ValueError as e:
            fail(f"--resume {path}: its optimiser state does not fit this model ({e})")
        if 'scaler' in checkpoint:
            loss_scaler.load_state_dict(checkpoint['scaler'])
        args.start_epoch = checkpoint['epoch'] + 1
        position = checkpoint.get('position')
        if position is not None and len(position['sums']) != dist.get_world_size():
            fail(f"--resume {path}: stopped inside epoch {args.start_epoch} with {len(position['sums'])} "
                 f"process(es); continue it with as many (now {dist.get_world_size()})")
        args.start_step = position['step'] if position is not None else 0
        print(f"With optimizer and scaler state; continuing at epoch {args.start_epoch} step {args.start_step}")
    return checkpoint


def write_json(args, name, stats):
    """Print `stats` as one JSON line and write it to output_dir/`name` (rank 0; never half written): the result
    of an evaluation entry point (main_knn.py, main_fewshot.py)."""
    print(json.dumps(stats))
    if dist.is_main_process():
        path = Path(args.output_dir) / name
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(stats) + '\n'))
        print(f"Wrote {path}")


def log_stats(args, stats):
    """Append one JSON line to output_dir/log.txt (rank 0)."""
    if dist.is_main_process():
        path = Path(args.output_dir) / 'log.txt'
        try:
            with open(path, 'a') as f:
                f.write(json.dumps(stats) + '\n')
        except OSError as e:  # a line cut short here is dropped by the next --resume (runner.trim_log)
            fail(f"cannot write {path}: {e.strerror or e} (free space, or write to another folder)")
