"""Training checkpoints: safe loading (unpickling never runs code from the file, and every failure to read one
is a one-line ValueError saying what is wrong with the file and what to do), resuming a run from the newest
readable one, and writing them (whole or not at all) in the published format."""
import argparse
import pickle
import pickletools
import re
import zipfile
from pathlib import Path

import torch

from util import dist
from util.config import eval_only, fail
from util.output import NUMBERED, atomic_copy, atomic_save

# Beyond tensors, dicts, lists, tuples, numbers and strings (always allowed by weights_only=True), a
# checkpoint written by main_pretrain.py / main_finetune.py holds the command-line arguments under 'args'.
SAFE_GLOBALS = [argparse.Namespace]
ZIP_MAGIC = b'PK\x03\x04'  # torch.save writes a zip archive


def load_checkpoint(path_or_dict, map_location='cpu'):
    """Return the checkpoint dict stored at `path_or_dict` (a dict is checked and returned unchanged).

    A checkpoint is a dict such as {'model', 'optimizer', 'epoch', 'scaler', 'args'} or a bare state dict:
    its weights (under 'model', or the dict itself) are a non-empty dict of tensors. It is read with
    torch.load(weights_only=True), allowing only the globals in SAFE_GLOBALS. Raises ValueError (one line)
    for a missing, unreadable, damaged (e.g. cut short), unsafe or foreign file.
    """
    if isinstance(path_or_dict, dict):
        return check_content(path_or_dict, 'checkpoint')
    path = Path(path_or_dict)
    return check_content(read(path, map_location), path)


def read(path, map_location):
    """torch.load of `path` with the allowed globals; ValueError naming the problem otherwise."""
    try:
        with open(path, 'rb') as f:
            magic = f.read(len(ZIP_MAGIC))
    except IsADirectoryError:
        raise ValueError(f"{path}: a folder, not a checkpoint file; give a checkpoint-*.pth file in it") from None
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} not found; check the path") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from None
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = refused_globals(path)
        if refused:
            raise ValueError(f"{path}: refused to load: it holds Python objects we refuse to load "
                             f"({', '.join(refused[:3])}), which could run code (only tensors, plain containers and "
                             f"{', '.join(g.__qualname__ for g in SAFE_GLOBALS)} are read)") from None
        error = e
    except Exception as e:  # torch's reader fails on a damaged file with OSError, RuntimeError, EOFError, ...
        error = e
    if magic in (ZIP_MAGIC, b''):
        raise ValueError(f"{path}: damaged checkpoint (cut short or corrupted, e.g. by a full disk or an unfinished "
                         f"copy); copy it again or use an earlier checkpoint") from None
    message = str(error).partition('WeightsUnpickler error:')[2] or str(error)  # past torch's weights_only advice
    reason = ': '.join([type(error).__name__] + message.strip().splitlines()[:1])[:120]
    raise ValueError(f"{path}: not a PyTorch checkpoint ({reason}); give a checkpoint written by main_pretrain.py, "
                     f"main_tune.py, main_linprobe.py or main_finetune.py") from None


def refused_globals(path):
    """The Python objects (module.name) that the pickle inside checkpoint `path` names and that the safe
    unpickler does not allow: read from the pickle's GLOBAL / STACK_GLOBAL opcodes, whatever torch's error says.
    Empty for a file that is not a readable torch archive."""
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed |= set(_get_allowed_globals())
    except (ImportError, AttributeError):  # another torch: its own allow-list, and these always
        allowed |= {'collections.OrderedDict', 'torch._utils._rebuild_tensor_v2'}
    found, strings, memo, previous = [], [], {}, None
    try:
        with zipfile.ZipFile(path) as archive:
            member = next(n for n in archive.namelist() if n.endswith('data.pkl'))
            for op, arg, _ in pickletools.genops(archive.read(member)):
                if op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE'):
                    strings.append(arg)
                elif op.name in ('BINPUT', 'LONG_BINPUT', 'MEMOIZE') and previous in ('SHORT_BINUNICODE', 'BINUNICODE',
                                                                                  'UNICODE'):
                    memo[len(memo) if arg is None else arg] = strings[-1]
                elif op.name in ('BINGET', 'LONG_BINGET') and arg in memo:
                    strings.append(memo[arg])
                elif op.name == 'GLOBAL':
                    found.append(arg.replace(' ', '.'))
                elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                    found.append('.'.join(strings[-2:]))
                previous = op.name
    except (OSError, StopIteration, ValueError, zipfile.BadZipFile, EOFError):
        pass
    refused = [g for g in dict.fromkeys(found) if g not in allowed and not re.fullmatch(r'torch\.\w*Storage', g)]
    return [re.sub(r'^(__builtin__|builtins)\.', '', g) for g in refused]


def check_content(checkpoint, name):
    """`checkpoint` if it holds weights (a non-empty dict of tensors under 'model', or a bare state dict)."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{name}: expected a dict (a state dict, or one with a 'model' entry), "
                         f"got {type(checkpoint).__name__}")
    weights = checkpoint.get('model', checkpoint)
    if not isinstance(weights, dict) or not weights or not all(torch.is_tensor(v) for v in weights.values()):
        found = ', '.join(map(str, list(checkpoint)[:6])) or 'nothing'
        raise ValueError(f"{name}: no weights in this file (expected a dict of tensors under 'model', or a state "
                         f"dict; found {found}); give a checkpoint written by the training entry points")
    return checkpoint


def run_checkpoints(output_dir):
    """The checkpoints a run wrote to `output_dir`, newest first: checkpoint-last.pth, then
    checkpoint-<epoch>.pth by decreasing epoch (exactly those names: not checkpoint-7-keep.pth, nor a temporary
    file of an unfinished write)."""
    output_dir = Path(output_dir)
    numbered = [(int(m[1]), p) for p in output_dir.glob('checkpoint-*.pth') if (m := NUMBERED.fullmatch(p.name))]
    last = [output_dir / 'checkpoint-last.pth'] if (output_dir / 'checkpoint-last.pth').exists() else []
    return last + [p for _, p in sorted(numbered, key=lambda e: -e[0])]


def resume_candidates(args):
    """--resume, or with --auto_resume the checkpoints in output_dir, newest first (run_checkpoints)."""
    if args.resume or not args.auto_resume:
        return [args.resume] if args.resume else []
    return [str(p) for p in run_checkpoints(args.output_dir)]


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
    problem = queue_problem(checkpoint.get('model', checkpoint))
    if problem:
        fail(f"--resume {path}: {problem}; the checkpoint is damaged: use an earlier one")
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


def queue_problem(weights):
    """What is impossible about the support queue's counters of a tuning checkpoint (model_tune.NNCLR: queue_ptr,
    the next row written, and queue_len, the rows written, of a FIFO filled from row 0), or None."""
    if 'queue' not in weights or weights['queue'].ndim != 2:
        return None
    size, counters = len(weights['queue']), {}
    for key in ('queue_ptr', 'queue_len'):
        value = weights.get(key)
        if value is None or value.numel() != 1 or value.is_floating_point():
            return f"{key}: expected one integer, got {None if value is None else tuple(value.shape)}"
        counters[key] = int(value)
    ptr, length = counters['queue_ptr'], counters['queue_len']
    if not (0 <= ptr < size and 0 <= length <= size and (length == size or ptr == length)):
        return (f"queue_ptr {ptr} and queue_len {length} are impossible for a queue of {size} rows (expected "
                f"0 <= queue_ptr < {size}, 0 <= queue_len <= {size}, and queue_ptr = queue_len until it is full)")
    return None


def first_problem(error):
    """The first specific line of a load_state_dict error (e.g. 'size mismatch for blocks.0...')."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[min(1, len(lines) - 1)][:300]


def training_state(args, epoch, model_without_ddp, optimizer, loss_scaler, **extra):
    """The published checkpoint format {'model', 'optimizer', 'epoch', 'scaler', 'args'} plus `extra`."""
    return {'model': model_without_ddp.state_dict(), 'optimizer': optimizer.state_dict(), 'epoch': epoch,
            'scaler': loss_scaler.state_dict(), 'args': vars(args), **extra}


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


def save_preempted(args, epoch, position, model_without_ddp, optimizer, loss_scaler, **extra):
    """checkpoint-last.pth of a run stopped inside `epoch` (rank 0): 'epoch' is the last complete one and
    'position' the step to continue from with the loss sums so far (see engine.train_one_epoch)."""
    if dist.is_main_process():
        atomic_save(training_state(args, epoch - 1, model_without_ddp, optimizer, loss_scaler,
                                   position=position, **extra), Path(args.output_dir) / 'checkpoint-last.pth')
