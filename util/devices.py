"""The device, the seeds and the numeric precision of a run: --device, seeding, --amp autocast and the loss
scaler that steps the optimiser."""
import random

import numpy as np
import torch

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
    Clipping bounds the norm of all gradients together, or with --clip_mode per_tensor each parameter's
    gradient on its own (g * min(1, clip / (|g| + 1e-6)), as STARS clips).
    """

    def __init__(self, args, device):
        self._scaler = torch.amp.GradScaler(device.type, enabled=args.amp == 'fp16')
        self._per_tensor = getattr(args, 'clip_mode', 'total') == 'per_tensor'

    def __call__(self, loss, optimizer, parameters, clip_grad=None, update_grad=True):
        self._scaler.scale(loss).backward()
        if not update_grad:
            return
        if clip_grad is not None:
            self._scaler.unscale_(optimizer)
            for group in ([p] for p in parameters) if self._per_tensor else [parameters]:
                torch.nn.utils.clip_grad_norm_(group, clip_grad)
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
