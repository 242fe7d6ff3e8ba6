"""Preemption: SIGTERM / SIGUSR1 (what Slurm sends before it stops or requeues a job) ends the run at a step.

The handler only sets a flag. `requested()` is called by every rank at the same points (after each optimiser
update and after each epoch's checkpoint); it takes the maximum of the flags over ranks, so all ranks stop
after the same step even when the signal reached them at different steps. The vote is a one-integer
all_reduce on a CPU (gloo) group: on CUDA it does not wait for the device's queued work. The run then writes
checkpoint-last.pth with its position inside the epoch and exits with PREEMPTED_EXIT; --auto_resume
continues from that step.
"""
import os
import signal

import torch
import torch.distributed

from util import dist

PREEMPTED_EXIT = 3  # exit status of a run stopped by the signal (scripts/slurm.sh requeues the job)
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_state = {'signal': None, 'group': None, 'previous': {}}


def _handler(signum, frame):
    if _state['signal'] is None:
        os.write(2, f"received {signal.Signals(signum).name}: stopping after the current step\n".encode())
    _state['signal'] = signum


def install():
    """Catch the preemption signals (and, with several ranks, make the CPU group of the vote; collective)."""
    _state['signal'] = None
    for signum in SIGNALS:
        _state['previous'].setdefault(signum, signal.signal(signum, _handler))
    if dist.is_dist_avail_and_initialized() and _state['group'] is None:
        gloo = torch.distributed.get_backend() == 'gloo'
        _state['group'] = torch.distributed.group.WORLD if gloo else torch.distributed.new_group(backend='gloo')


def requested():
    """True on every rank when a preemption signal reached any rank (collective when distributed)."""
    flag = torch.tensor([int(_state['signal'] is not None)])
    if dist.is_dist_avail_and_initialized():
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=_state['group'])
    return bool(flag.item())


def barrier():
    """Wait for every rank (after rank 0 wrote the checkpoint), on the CPU group."""
    if dist.is_dist_avail_and_initialized():
        torch.distributed.barrier(group=_state['group'])


def restore():
    """Give the signals back to the handlers they had before install() (at the end of a run)."""
    for signum, handler in _state['previous'].items():
        signal.signal(signum, handler)
    _state['previous'] = {}
