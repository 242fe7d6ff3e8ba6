"""The timed rows of the model steps (pre-training, linear probe, fine-tuning, evaluation), ours and published."""
import statistics

import torch

from bench.flops import model_flops
from bench.published import default_kernel, use_explicit_attention
from bench.steps import build, make_step, skeleton_batch
from bench.timing import time_calls, timing_fields


def model_row(section, size, batch, device, precision, compiled, fused, warmup, steps, memory,
              decoder_depth=None, published=False):
    """One timed row. published: the step as the official code runs it (explicit attention, AdamW with torch's
    default kernel)."""
    torch.manual_seed(0)
    memory.reset()
    model, optimizer, loss_fn = build(section, size, device, precision, fused, decoder_depth)
    if published:
        use_explicit_attention(model)
        optimizer = default_kernel(optimizer)
    run = torch.compile(model) if compiled else model
    x, y = skeleton_batch(batch, size['num_frames'], size, device)
    step = make_step(section, run, optimizer, loss_fn, x, y, precision, device)
    warm, times, cpu = time_calls(step, warmup, steps, device)
    seconds = statistics.median(times)
    forward, train = model_flops(section, batch, size, decoder_depth)
    flops = forward if section == 'eval' else train
    variant = ', '.join(v for v in (f'decoder {decoder_depth}' if decoder_depth else '', published and 'published')
                        if v)
    row = {'section': section, 'variant': variant, 'published': published,
           'precision': precision, 'compile': compiled, 'batch': batch, 'ms_per_step': 1e3 * seconds,
           'samples_per_s': batch / seconds, 'flops_per_step': flops, 'gflop_per_s': flops / seconds / 1e9,
           'peak_memory_mb': memory.peak_mb(), 'memory_kind': memory.kind,
           'warmup_ms': [1e3 * t for t in warm], **timing_fields(times, cpu)}
    del model, optimizer, run, step
    return row


def published_row(threads, *args):
    """model_row(*args, published=True) with `threads` torch threads: run in a spawned process, which has
    glibc's default malloc as the official code does."""
    torch.set_num_threads(threads)
    return model_row(*args, published=True)
