"""Distributed training: process-group set-up from torchrun's environment, rank queries, rank-0-only printing."""
import atexit
import builtins
import gc
import os

import torch
import torch.distributed as dist

from util.config import fail


def is_dist_avail_and_initialized():
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank():
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def is_main_process():
    return get_rank() == 0


def process_device(device):
    """The device this process computes on: cuda:LOCAL_RANK under torchrun, else `device` itself (cuda -> cuda:0).

    A plain `python` run with --device cuda:1 stays on GPU 1; CPU devices are returned unchanged.
    """
    if device.type != 'cuda':
        return device
    if 'RANK' in os.environ and 'WORLD_SIZE' in os.environ:
        return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
    return torch.device('cuda', device.index or 0)


def setup_for_distributed(is_master):
    """Silence print() on every rank but rank 0 (print(..., force=True) still prints)."""
    builtin_print = builtins.print

    def print(*args, **kwargs):
        force = kwargs.pop('force', False)
        if is_master or force:
            builtin_print(*args, **kwargs)

    builtins.print = print


def init_distributed_mode(device_type):
    """Join the process group described by torchrun's RANK / WORLD_SIZE / LOCAL_RANK variables.

    A plain `python` launch (no RANK in the environment) is a single process. NCCL is used on CUDA and gloo
    on CPU. Returns the local rank (the CUDA device index of this process).
    """
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    if 'RANK' in os.environ and 'WORLD_SIZE' in os.environ:
        rank, world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
        if device_type == 'cuda':
            torch.cuda.set_device(local_rank)
        backend = 'nccl' if device_type == 'cuda' else 'gloo'
        print(f"| distributed init (rank {rank} of {world_size}, {backend})", flush=True)
        store, _, _ = next(dist.rendezvous('env://', rank, world_size))
        # A torchrun --max-restarts group reuses its store: the keys of each attempt get their own prefix, or
        # the ranks of a restarted group may read the addresses of the killed one (gloo: connection refused).
        attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
        dist.init_process_group(backend=backend, store=dist.PrefixStore(f'attempt{attempt}/', store),
                                world_size=world_size, rank=rank)
        # A DDP step leaves reference cycles; freed during the interpreter's shutdown, they let gloo's threads
        # abort a finished run now and then (SIGABRT, which torchrun reports as a failure). Collect them at
        # exit while Python is still whole, on every way out (return, SystemExit).
        atexit.register(gc.collect)
    setup_for_distributed(get_rank() == 0)
    return local_rank


def all_reduce_sum(tensor):
    """Sum `tensor` over ranks in place (no-op in a single process); returns it."""
    if is_dist_avail_and_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] (picklable objects, e.g. CPU tensors); [obj] in a single process."""
    if not is_dist_avail_and_initialized():
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(module):
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank, in place.

    DDP copies them only before a training forward, so after the last step of an epoch each rank holds the
    statistics of its own last batch; evaluating on shards must use rank 0's (the saved) model everywhere.
    """
    if is_dist_avail_and_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def check_same_resume(found, start_epoch, start_step, device):
    """Stop every rank with one line unless all ranks resume from the same point.

    (found, start_epoch, start_step): whether a checkpoint was loaded and the position it continues from.
    Every rank takes part in the one all_gather before any of them stops, so none is left waiting. Nodes
    without a shared --output_dir would otherwise resume on rank 0 and start afresh elsewhere, diverge
    silently and hang later.
    """
    if not is_dist_avail_and_initialized():
        return
    mine = torch.tensor([int(found), start_epoch, start_step], dtype=torch.int64, device=device)
    every = [torch.zeros_like(mine) for _ in range(get_world_size())]
    dist.all_gather(every, mine)
    positions = [tuple(t.tolist()) for t in every]
    if len(set(positions)) > 1:
        ranks = ', '.join(f"rank {r}: " + (f"epoch {e} step {s}" if f else "no checkpoint")
                          for r, (f, e, s) in enumerate(positions))
        cleanup()
        fail(f"the processes would resume from different points ({ranks}): give every node the same "
             f"--output_dir on a shared file system, or the same --resume checkpoint")


def cleanup():
    if is_dist_avail_and_initialized():
        dist.destroy_process_group()
