"""The training epoch shared by pre-training, linear probing and fine-tuning; only the loss differs."""
import contextlib
import math
import sys
import time

import torch
from tqdm import tqdm

from util import devices, dist, lr_sched, preemption
from util.config import fail


def set_train_mode(model):
    """Train mode, except for modules whose parameters are all frozen (e.g. a linear probe's encoder): eval."""
    model.train(True)
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


def progress(iterable, desc, **kwargs):
    """A tqdm bar (rate and ETA) on rank 0; sparse updates when the output is a log file, not a terminal."""
    return tqdm(iterable, desc=desc, disable=not dist.is_main_process(), dynamic_ncols=True,
                mininterval=1 if sys.stderr.isatty() else 30, **kwargs)


def rank_sums(epoch_loss, window_loss, window_steps):
    """[(epoch_loss, window_loss, window_steps)] of every rank, in rank order (collective): the loss sums of a
    partial epoch, each rank's own (float32 sums, exact in float64)."""
    sums = torch.zeros(dist.get_world_size(), 3, dtype=torch.float64, device=epoch_loss.device)
    sums[dist.get_rank()] = torch.stack([epoch_loss.double(), window_loss.double(),
                                         torch.tensor(float(window_steps), dtype=torch.float64,
                                                      device=epoch_loss.device)])
    return [(e, w, int(n)) for e, w, n in dist.all_reduce_sum(sums).tolist()]


def train_one_epoch(model, compute_loss, data_loader, optimizer, device, epoch, loss_scaler, args,
                    log_writer=None, augment=None, position=None):
    """One epoch of optimiser steps; `compute_loss(samples, targets)` returns the scalar loss of a batch.

    The lr follows lr_sched per iteration; gradients accumulate over args.accum_iter batches. The loss is
    read back to the host only every args.print_freq steps (and at the end), to log it: the steps in
    between queue on the device without waiting. With `augment` (--gpu_aug) the batch is cropped and
    rotated on the device. Returns the epoch's mean loss over all ranks, the last lr, samples/s and time.

    The global RNGs (masking, dropout, drop path) are reseeded before every step from (seed, epoch, rank,
    step), so the position in the epoch alone restores them: nothing per rank needs gathering into the
    checkpoint. `position` (from a preempted run's checkpoint) continues the epoch at position['step'] (the
    loader, via its sampler, skips the steps done) with the loss sums of the steps before it. When a
    preemption signal is seen after an optimiser update, the epoch stops there and the returned stats hold
    'position' instead: the next step and every rank's loss sums, for the checkpoint.
    """
    set_train_mode(model)
    params = [p for group in optimizer.param_groups for p in group['params']]
    first, accum_iter, rank = (position or {}).get('step', 0), args.accum_iter, dist.get_rank()
    steps = first + len(data_loader)
    epoch_loss, window_loss, window_steps = position['sums'][rank] if position else (0., 0., 0)
    epoch_loss, window_loss = torch.tensor(epoch_loss, device=device), torch.tensor(window_loss, device=device)
    lr = 0.
    optimizer.zero_grad(set_to_none=True)
    start = time.time()
    bar = progress(data_loader, f'Epoch {epoch}', initial=first, total=steps)
    for step, batch in enumerate(bar, start=first):
        devices.seed_everything(args.seed, epoch, rank, step)
        if step % accum_iter == 0:
            lr = lr_sched.adjust_learning_rate(optimizer, step / steps + epoch, args)
        samples = batch[0].to(device, non_blocking=True)
        targets = batch[1].to(device, non_blocking=True)
        if augment is not None:
            samples = augment(samples, *batch[3:])
        update = (step + 1) % accum_iter == 0 or step + 1 == steps
        no_sync = model.no_sync() if dist.get_world_size() > 1 and not update else contextlib.nullcontext()
        with no_sync:
            with devices.autocast(args, device):
                loss = compute_loss(samples, targets)
            loss_scaler(loss / accum_iter, optimizer, params, args.clip_grad, update_grad=update)
        if update:
            optimizer.zero_grad(set_to_none=True)
        window_loss += loss.detach().float()
        window_steps += 1
        if (step + 1) % args.print_freq == 0 or step + 1 == steps:
            loss_value = window_loss.item() / window_steps
            if not math.isfinite(loss_value):
                fail(f"loss is {loss_value} at epoch {epoch} step {step}: stopping (try a lower --lr, "
                     f"--clip_grad or --amp none)")
            epoch_loss += window_loss
            window_loss.zero_()
            window_steps = 0
            bar.set_postfix(loss=f'{loss_value:.4f}', lr=f'{lr:.2e}', refresh=False)
            if log_writer is not None:  # by optimiser step: the batches done since the start of training
                log_writer.add_scalar('train_step/loss', loss_value, epoch * steps + step + 1)
                log_writer.add_scalar('train_step/lr', lr, epoch * steps + step + 1)
        if update and step + 1 < steps and preemption.requested():
            bar.close()
            return {'position': {'step': step + 1, 'sums': rank_sums(epoch_loss, window_loss, window_steps)}}
    totals = dist.all_reduce_sum(torch.stack([epoch_loss.double(), torch.tensor(float(steps), device=device,
                                                                                dtype=torch.float64)]))
    elapsed = time.time() - start
    samples = (steps - first) * args.batch_size * dist.get_world_size()
    return {'loss': (totals[0] / totals[1]).item(), 'lr': lr, 'samples_per_s': samples / elapsed,
            'epoch_time': elapsed}
