"""Speed of MAMP pre-training, linear probing, fine-tuning, evaluation and data loading on this machine.

    python benchmark.py --batch 16 --device cpu --published --out bench.json
    python benchmark.py --batch 128 --device cuda --compile --out bench_cuda.json
    python benchmark.py --quick                    # tiny model and data: every section in seconds

Sections (select with --only):
  matmul    fp32 (and each --amp precision) 2048^3 matmul: the practical FLOP/s limit of the device;
  pretrain  MAMP training step (forward + backward + AdamW) at each --decoder_depth, --amp precision and, with
            --compile, also under torch.compile;
  linprobe  linear-probe training step: frozen encoder in eval mode, non-affine BatchNorm + Linear, SGD;
  finetune  fine-tuning training step (MLP head, drop path 0.3, label smoothing, AdamW with layer decay);
  eval      classifier forward under inference_mode;
  feeder    the training feeder (random crop-resize of a 300-frame sequence to the window, then rotation) in a
            fresh process with one thread: item by item (__getitem__), and in batches of --batch (__getitems__,
            which a DataLoader worker calls for a batch); passes of --feeder_samples items, interleaved;
  augment   the same augmentation applied to a whole batch on the device (feeder.augment.BatchAugment).
Models, optimisers and losses are the published ones at full size (dim 256, depth 8, decoder depth 5 and 3,
120 frames, 25 joints, 2 bodies) on random-walk skeletons. Every row is the median of --steps timed steps after
--warmup steps (the first includes compilation). FLOP/s counts the model FLOPs of `model_flops` per step; the
matmul fraction divides it by the median matmul FLOP/s of the same precision, timed in rounds spread over the run
(one before every model row) so that on a shared machine both see the same load. Each row also records the
process CPU time per step and the load average. Peak memory: CUDA max allocated, or on CPU the process's peak
resident set during the row. On CPU the process keeps freed memory for reuse, as training does (util/malloc.py).

--published times, right after each of our fp32 pre-training and fine-tuning rows, the same step as the official
code runs it: explicit attention softmax(Q K^T / sqrt(d)) V (the same math) and AdamW with torch's default kernel
(on CPU the per-tensor loop); and beside our feeder rows, the published feeder's __getitem__ (the same samples
from the same seeds), one pass of it after each pass of ours. Each runs in a fresh process with glibc's default
malloc; our rows record their speed over it ('x published').
"""
import argparse
import contextlib
import gc
import inspect
import json
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.loss import LabelSmoothingCrossEntropy

from model_mamp import MAMP
from model_transformer import SkeletonTransformer
from util.malloc import glibc, keep_freed_memory

SECTIONS = ('matmul', 'pretrain', 'linprobe', 'finetune', 'eval', 'feeder', 'augment')
AMP = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

FULL = dict(dim_feat=256, depth=8, num_heads=8, mlp_ratio=4, num_frames=120, num_joints=25, patch_size=1,
            t_patch_size=4, num_classes=60, hidden_dim=2048, mask_ratio=0.9, bodies=2, dim_in=3,
            feeder_frames=300, matmul_size=2048)
QUICK = dict(FULL, dim_feat=32, depth=2, num_heads=2, num_frames=24, num_classes=10, feeder_frames=60,
             matmul_size=256)
PRETRAIN_CALL = dict(motion_stride=1, motion_aware_tau=0.8)  # published MAMP settings; mask_ratio from the size
FINETUNE_DROP_PATH = 0.3
CROP = (0.5, 1.0)  # the training feeder's crop ratio interval


# ---------------------------------------------------------------- model FLOPs

def block_flops(tokens, seq_len, dim, mlp_ratio):
    """Forward FLOPs of one transformer block over `tokens` tokens in sequences of `seq_len`.

    Linear layers qkv, proj, fc1, fc2: 2 * tokens * dim * (3 dim + dim + 2 hidden). Attention, all heads:
    Q K^T and softmax(.) V, 2 * 2 * tokens * seq_len * dim.
    """
    hidden = int(dim * mlp_ratio)
    return 2 * tokens * dim * (4 * dim + 2 * hidden) + 4 * tokens * seq_len * dim


def model_flops(section, batch, size, decoder_depth=None):
    """Model FLOPs of one batch for `section`: (forward, training step).

    FLOPs are 2 per multiply-add of the matmuls and convolutions (the patch embedding, Linear layers and
    attention); norms, activations, softmax and the optimiser are not counted. A training step is forward +
    backward, and the backward of a layer costs twice its forward (input and weight gradients), except for
    layers whose input needs no gradient: the patch embedding, and the linear probe's head behind the frozen
    encoder, compute weight gradients only (1x). Attention is counted once in the backward pass, without the
    recomputation of flash-attention kernels. `size`: a dict like FULL; decoder_depth for 'pretrain'.
    """
    D, C, mlp = size['dim_feat'], size['dim_in'], size['mlp_ratio']
    grid_t = size['num_frames'] // size['t_patch_size']
    grid_v = size['num_joints'] // size['patch_size']
    seqs, L, patch = batch * size['bodies'], grid_t * grid_v, C * size['t_patch_size'] * size['patch_size']
    embed = 2 * seqs * L * patch * D
    if section == 'pretrain':
        keep = int(L * (1 - size['mask_ratio']))
        encoder = size['depth'] * block_flops(seqs * keep, keep, D, mlp)
        decoder = (2 * seqs * keep * D * D + decoder_depth * block_flops(seqs * L, L, D, mlp)
                   + 2 * seqs * L * D * patch)
        return embed + encoder + decoder, 2 * embed + 3 * (encoder + decoder)
    encoder = size['depth'] * block_flops(seqs * L, L, D, mlp)
    if section == 'linprobe':
        head = 2 * batch * D * size['num_classes']
        return embed + encoder + head, embed + encoder + 2 * head
    if section in ('finetune', 'eval'):
        head = 2 * batch * (grid_v * D * size['hidden_dim'] + size['hidden_dim'] * size['num_classes'])
        return embed + encoder + head, 2 * embed + 3 * (encoder + head)
    raise ValueError(f"no FLOP count for section {section!r}")


# ---------------------------------------------------------------- models and steps

def model_args(size):
    keys = ('dim_in', 'dim_feat', 'depth', 'num_heads', 'mlp_ratio', 'num_frames', 'num_joints', 'patch_size',
            't_patch_size')
    return {k: size[k] for k in keys}


def train_args(precision, fused):
    """The fields of the training arguments that the optimiser and loss-scaler builders read."""
    return argparse.Namespace(amp={'fp32': 'none'}.get(precision, precision), fused_optim=fused, lr=1e-4,
                              weight_decay=0.05, layer_decay=0.8)


def build(section, size, device, precision, fused, decoder_depth=None):
    """(model, optimizer or None, loss function of (model, x, y)) as the training entry points build them."""
    import main_finetune
    import main_linprobe
    import main_pretrain
    from util.engine import set_train_mode

    args = train_args(precision, fused)
    if section == 'pretrain':
        model = MAMP(**model_args(size), decoder_dim_feat=size['dim_feat'], decoder_depth=decoder_depth,
                     norm_skes_loss=True, target='motion').to(device)
        call = dict(PRETRAIN_CALL, mask_ratio=size['mask_ratio'])
        return model, main_pretrain.make_optimizer(model, args), lambda m, x, y: m(x, **call)[0]
    if section == 'linprobe':
        model = SkeletonTransformer(**model_args(size), num_classes=size['num_classes'], protocol='linprobe')
        main_linprobe.prepare_model(model)
        model.to(device)
        set_train_mode(model)
        criterion = nn.CrossEntropyLoss()
        return model, main_linprobe.make_optimizer(model, args), lambda m, x, y: criterion(m(x), y)
    model = SkeletonTransformer(**model_args(size), num_classes=size['num_classes'], protocol='finetune',
                                drop_path_rate=FINETUNE_DROP_PATH).to(device)
    if section == 'eval':
        return model.eval(), None, None
    criterion = LabelSmoothingCrossEntropy(0.1)
    return model, main_finetune.make_optimizer(model, args), lambda m, x, y: criterion(m(x), y)


def skeleton_batch(batch, frames, size, device, seed=0):
    """Random-walk skeletons (batch, 3, frames, 25, 2) and labels (batch,)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, size['dim_in'], frames, size['num_joints'], size['bodies'], generator=g).cumsum(2) * .02
    y = torch.randint(size['num_classes'], (batch,), generator=g)
    return x.to(device), y.to(device)


def make_step(section, model, optimizer, loss_fn, x, y, precision, device):
    """A function running one step: a training step (optimiser step included) or, for 'eval', a forward."""
    from util.misc import LossScaler

    autocast = lambda: torch.autocast(device.type, dtype=AMP[precision], enabled=AMP[precision] is not None)
    if section == 'eval':
        def step():
            with torch.inference_mode(), autocast():
                model(x)
        return step
    scaler = LossScaler(train_args(precision, True), device)
    params = [p for group in optimizer.param_groups for p in group['params']]

    def step():
        with autocast():
            loss = loss_fn(model, x, y)
        scaler(loss, optimizer, params)
        optimizer.zero_grad(set_to_none=True)
    return step


# ---------------------------------------------------------------- timing and memory

def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_calls(fn, warmup, steps, device):
    """Run fn() warmup + steps times -> wall seconds of the warm-up calls, wall and process CPU seconds (all
    threads) of the timed calls. On a shared machine the CPU time shows how much of the wall time was ours."""
    wall, cpu = [], []
    for _ in range(warmup + steps):
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall[:warmup], wall[warmup:], cpu[warmup:]


def timing_fields(times, cpu):
    """Row fields of the timed calls: the per-call lists, the median CPU time and the 1-minute load average."""
    return {'step_ms': [1e3 * t for t in times], 'cpu_ms': [1e3 * t for t in cpu],
            'cpu_ms_median': 1e3 * statistics.median(cpu), 'load_average': os.getloadavg()[0]}


class PeakMemory:
    """Peak memory in MB since the last reset(): CUDA max allocated, or the process's peak RSS on CPU.

    The peak RSS (VmHWM) is reset by writing 5 to /proc/self/clear_refs (Linux), after malloc_trim has given
    the free heap memory of earlier rows back (which util.malloc otherwise keeps); where that is not
    possible it is the process's lifetime peak (getrusage).
    """

    def __init__(self, device):
        self.device = device
        self.kind = 'cuda_max_allocated' if device.type == 'cuda' else 'peak_rss'

    def reset(self):
        gc.collect()
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        libc = glibc()
        if libc is not None:
            libc.malloc_trim(0)
        try:
            Path('/proc/self/clear_refs').write_text('5')
        except OSError:
            self.kind = 'lifetime_peak_rss'

    def peak_mb(self):
        if self.device.type == 'cuda':
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        if self.kind == 'peak_rss':
            for line in Path('/proc/self/status').read_text().splitlines():
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class MatmulProbe:
    """The size^3 matmul FLOP/s of each precision: the practical limit the model rows are compared with.

    The matmuls are timed in rounds spread over the run (one before every model row), and the median is
    taken over all of them, so that on a shared machine the reference sees the same load as the rows.
    A round times up to `calls` matmuls per precision, fewer when they take more than `budget` seconds.
    """

    def __init__(self, size, precisions, device):
        g = torch.Generator().manual_seed(0)
        self.size, self.device = size, device
        self.operands = {p: [torch.randn(size, size, generator=g).to(device, AMP[p] or torch.float32)
                             for _ in range(2)] for p in precisions}
        self.times = {p: [] for p in precisions}
        self.cpu = {p: [] for p in precisions}
        for a, b in self.operands.values():
            time_calls(lambda: a @ b, 1, 0, device)

    def measure(self, calls, budget):
        for p, (a, b) in self.operands.items():
            start = time.perf_counter()
            for _ in range(calls):
                if self.times[p] and time.perf_counter() - start > budget:
                    break
                _, times, cpu = time_calls(lambda: a @ b, 0, 1, self.device)
                self.times[p] += times
                self.cpu[p] += cpu

    def gflop_per_s(self, precision):
        return 2 * self.size ** 3 / statistics.median(self.times[precision]) / 1e9

    def rows(self):
        return [{'section': 'matmul', 'variant': f'{self.size}^3', 'precision': p, 'compile': False,
                 'ms_per_step': 1e3 * statistics.median(times), 'flops_per_step': 2 * self.size ** 3,
                 'gflop_per_s': self.gflop_per_s(p), **timing_fields(times, self.cpu[p])}
                for p, times in self.times.items()]


def use_explicit_attention(model):
    """The published attention: softmax(Q K^T / sqrt(head_dim)) V with the attention matrix in memory
    (timm's non-fused path, the same math as the fused kernel)."""
    for module in model.modules():
        if hasattr(module, 'fused_attn'):
            module.fused_attn = False


def default_kernel(optimizer):
    """The same optimiser (groups, learning rates, betas, weight decays) with torch's default choice of kernel,
    as the official code builds it: on CPU the per-tensor loop, on CUDA foreach."""
    kernel = ('fused', 'foreach')
    options = set(inspect.signature(type(optimizer)).parameters).difference(kernel)
    defaults = {k: v for k, v in optimizer.defaults.items() if k in options}
    groups = [{k: v for k, v in g.items() if k not in kernel} for g in optimizer.param_groups]
    return type(optimizer)(groups, **defaults)


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


# ---------------------------------------------------------------- data

def write_npz(path, samples, frames, num_classes, seed=0):
    """A preprocessed-format .npz: x_train (samples, frames, 150) random walks, zero after a random valid
    length in [frames / 2, frames]; one-hot y_train; the test split is the same arrays."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((samples, frames, 150)).cumsum(axis=1) * .02).astype(np.float32)
    valid = rng.integers(frames // 2, frames + 1, samples)
    x[np.arange(frames)[None, :] >= valid[:, None]] = 0
    y = np.eye(num_classes, dtype=np.float32)[rng.integers(num_classes, size=samples)]
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)


_FEEDER_RUNS = {}  # in a feeder process: the runs it times, by name
_FEEDER_MEMORY = PeakMemory(torch.device('cpu'))  # in a feeder process: its peak memory since it started


def start_feeder_process(runs, keep_memory):
    """Pool initializer of a feeder process: its runs {name: (feeder, batch, get)}, one thread, the published
    seeds, and freed memory kept as in the training entry points (and the loader workers they fork) when
    `keep_memory`."""
    if keep_memory:
        keep_freed_memory()
    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    _FEEDER_RUNS.update(runs)
    _FEEDER_MEMORY.reset()


def feeder_pass(name, samples):
    """One timed pass of run `name` over its feeder's first `samples` items: one by one with __getitem__ (or
    get(feeder, i)), or with a batch size the loader's way, __getitems__ of each batch -> (wall, CPU seconds)."""
    feeder, batch, get = _FEEDER_RUNS[name]
    if batch:
        def run():
            return [feeder.__getitems__(list(range(s, min(s + batch, samples)))) for s in range(0, samples, batch)]
    else:
        get = get or type(feeder).__getitem__

        def run():
            return [get(feeder, i) for i in range(samples)]
    _, (wall,), (cpu,) = time_calls(run, 0, 1, torch.device('cpu'))
    return wall, cpu


def process_peak():
    """(peak MB, kind) of this feeder process since start_feeder_process."""
    return _FEEDER_MEMORY.peak_mb(), _FEEDER_MEMORY.kind


def interleaved_feeder_rows(processes, samples, warmup, steps):
    """Rows of the feeder runs of `processes` [(runs, keep_memory)], each a fresh process (start_feeder_process)
    timing one pass of each of its runs per round, round after round, so that the load of a shared machine
    falls on all runs alike. The peak memory of a row is its process's."""
    spawn = multiprocessing.get_context('spawn')
    with contextlib.ExitStack() as stack:
        pools = [stack.enter_context(spawn.Pool(1, start_feeder_process, process)) for process in processes]
        times = {name: [] for runs, _ in processes for name in runs}
        for _ in range(warmup + steps):
            for pool, (runs, _) in zip(pools, processes):
                for name in runs:
                    times[name].append(pool.apply(feeder_pass, (name, samples)))
        peaks = [pool.apply(process_peak) for pool in pools]
    rows = []
    for (peak, kind), (runs, _) in zip(peaks, processes):
        for name, (_, batch, get) in runs.items():
            wall, cpu = zip(*times[name][warmup:])
            seconds = statistics.median(wall) / samples
            rows.append({'section': 'feeder', 'variant': name, 'published': get is published_item,
                         'precision': 'fp32', 'compile': False, 'workers': 1, 'batch': batch,
                         'ms_per_sample': 1e3 * seconds, 'samples_per_s': 1 / seconds, 'peak_memory_mb': peak,
                         'memory_kind': kind, **timing_fields(wall, cpu)})
    return rows


def feeder_rows(size, batch, device, sections, samples, warmup, steps, memory, published=False,
                keep_memory=False):
    """The train feeder with one thread item by item and in loader batches of `batch` (keeping freed memory
    when `keep_memory`), with `published` the published one item by item in another process, interleaved;
    then BatchAugment on a batch on the device."""
    from torch.utils.data import default_collate

    from feeder.augment import BatchAugment
    from feeder.feeder_ntu import Feeder

    rows = []
    variant = f'{size["feeder_frames"]} frames -> {size["num_frames"]}'
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'bench.npz'
        write_npz(path, max(samples, batch), size['feeder_frames'], size['num_classes'])
        if 'feeder' in sections:
            feeder = Feeder(path, split='train', p_interval=CROP, window_size=size['num_frames'], random_rot=True)
            processes = [({variant: (feeder, None, None), f'{variant}, batches of {batch}': (feeder, batch, None)},
                          keep_memory)]
            if published:  # glibc's default malloc, as the official code runs
                processes.append(({f'{variant}, published': (PublishedFeeder(path, size['num_frames']), None,
                                                             published_item)}, False))
            rows += interleaved_feeder_rows(processes, samples, warmup, steps)
            if published:
                for row in rows[:-1]:
                    row['speedup_vs_published'] = row['samples_per_s'] / rows[-1]['samples_per_s']
        if 'augment' in sections:
            memory.reset()
            # as training with --gpu_aug: the loader's full-length batch with the crops and angles the feeder
            # drew, the sequences moved to the device, then one BatchAugment call
            feeder = Feeder(path, split='train', p_interval=CROP, window_size=size['num_frames'], random_rot=True,
                            batch_augment=True)
            x, _, _, *drawn = default_collate([feeder[i] for i in range(batch)])
            x = x.to(device)
            augment = BatchAugment.from_feeder(feeder)
            _, times, cpu = time_calls(lambda: augment(x, *drawn), warmup, steps, device)
            seconds = statistics.median(times)
            rows.append({'section': 'augment', 'variant': variant,
                         'precision': 'fp32', 'compile': False, 'batch': batch, 'ms_per_step': 1e3 * seconds,
                         'samples_per_s': batch / seconds, 'peak_memory_mb': memory.peak_mb(),
                         'memory_kind': memory.kind, **timing_fields(times, cpu)})
    return rows


# ---------------------------------------------------------------- the published feeder (--published)

class PublishedFeeder:
    """The published train split as the official feeder holds it: x_train (N, T, 150) loaded into memory and
    viewed as (N, C, T, V, M)."""

    def __init__(self, path, window):
        with np.load(path) as npz:
            x = npz['x_train']
        n, t, _ = x.shape
        self.data, self.window = x.reshape(n, t, 2, 25, 3).transpose(0, 4, 1, 3, 2), window


def published_rotation(angles, frames):
    """The published _rot: Rz Ry Rx (frames, 3, 3) from the angles (3,) repeated for every frame, each
    matrix assembled from stacked rows."""
    rot = torch.stack([angles] * frames, dim=0)
    cos, sin = rot.cos(), rot.sin()
    zeros, ones = torch.zeros(frames, 1), torch.ones(frames, 1)
    rx = torch.cat((torch.stack((ones, zeros, zeros), dim=-1),
                    torch.stack((zeros, cos[:, 0:1], sin[:, 0:1]), dim=-1),
                    torch.stack((zeros, -sin[:, 0:1], cos[:, 0:1]), dim=-1)), dim=1)
    ry = torch.cat((torch.stack((cos[:, 1:2], zeros, -sin[:, 1:2]), dim=-1),
                    torch.stack((zeros, ones, zeros), dim=-1),
                    torch.stack((sin[:, 1:2], zeros, cos[:, 1:2]), dim=-1)), dim=1)
    rz = torch.cat((torch.stack((cos[:, 2:3], sin[:, 2:3], zeros), dim=-1),
                    torch.stack((-sin[:, 2:3], cos[:, 2:3], zeros), dim=-1),
                    torch.stack((zeros, zeros, ones), dim=-1)), dim=1)
    return rz.matmul(ry).matmul(rx)


def published_item(feeder, index):
    """The published Feeder.__getitem__ for training (p_interval CROP, random_rot): the sample copied out of
    the (C, T, V, M) view, its valid frames counted, a random crop resized by F.interpolate (bilinear) over
    (C*V*M, length), then a rotation matrix per frame in one batched matmul. NumPy 2 refuses the published
    int() of a size-1 array; it is read with [0] here."""
    data = np.array(feeder.data[index])
    C, T, V, M = data.shape
    valid = np.sum(data.sum(0).sum(-1).sum(-1) != 0)
    p = np.random.rand(1) * (CROP[1] - CROP[0]) + CROP[0]
    length = np.minimum(np.maximum(int(np.floor(valid * p)[0]), 64), valid)
    bias = np.random.randint(0, valid - length + 1)
    clip = torch.tensor(data[:, bias:bias + length], dtype=torch.float)
    clip = clip.permute(0, 2, 3, 1).contiguous().view(C * V * M, length)[None, None]
    clip = F.interpolate(clip, size=(C * V * M, feeder.window), mode='bilinear', align_corners=False).squeeze()
    data = clip.contiguous().view(C, V, M, feeder.window).permute(0, 3, 1, 2).contiguous().numpy()
    x = torch.from_numpy(data).permute(1, 0, 2, 3).contiguous().view(feeder.window, C, V * M)
    rot = published_rotation(torch.zeros(3).uniform_(-0.3, 0.3), feeder.window)
    return torch.matmul(rot, x).view(feeder.window, C, V, M).permute(1, 0, 2, 3).contiguous(), index


# ---------------------------------------------------------------- report

def slow_precisions(device):
    """{precision: reason} for the reduced precisions this device has no fast matmul kernel for.

    On a CPU without AVX512-BF16 / AMX (oneDNN's bf16 and fp16 paths) torch falls back to a scalar gemm: a
    2048^3 bf16 matmul takes about a minute on a 2-core AVX2 machine, a full-size training step hours.
    """
    if device.type == 'cuda':
        return {} if torch.cuda.is_bf16_supported() else {'bf16': 'no bf16 support on this GPU'}
    def supported(precision):
        try:
            return getattr(torch.ops.mkldnn, f'_is_mkldnn_{precision}_supported')()
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False

    capability = torch.backends.cpu.get_cpu_capability()
    return {p: f"this CPU ({capability}) has no fast {p} matmul kernel; {p} steps fall back to a scalar gemm"
            for p in ('bf16', 'fp16') if not supported(p)}


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary(row):
    """One line for a row, printed as soon as it is measured."""
    name = ' '.join(str(v) for v in (row['section'], row['variant'], row['precision'],
                                     'compiled' if row['compile'] else '') if v)
    parts = [f"{row['ms_per_sample']:.3f} ms/sample" if 'ms_per_sample' in row else f"{row['ms_per_step']:.1f} ms/step"]
    if 'samples_per_s' in row:
        parts.append(f"{row['samples_per_s']:.2f} samples/s")
    if 'gflop_per_s' in row:
        parts.append(f"{row['gflop_per_s']:.1f} GFLOP/s" + (f" ({100 * row['matmul_fraction']:.0f}% of matmul)"
                                                          if 'matmul_fraction' in row else ''))
    if 'peak_memory_mb' in row:
        parts.append(f"peak {row['peak_memory_mb']:.0f} MB")
    parts.append(f"CPU {row['cpu_ms_median']:.0f} ms/call, load average {row['load_average']:.1f}")
    return f"{name}: {', '.join(parts)}"


def table(rows):
    """The rows as an aligned text table."""
    head = ('section', 'variant', 'precision', 'compile', 'ms/step', 'samples/s', 'GFLOP/s', '% matmul', 'peak MB',
            'x published')
    lines = [head]
    for r in rows:
        ms = r.get('ms_per_step', r.get('ms_per_sample'))
        lines.append((r['section'], r['variant'], r['precision'], 'yes' if r['compile'] else 'no',
                      f"{ms:.3f}/sample" if 'ms_per_sample' in r else f"{ms:.1f}",
                      f"{r['samples_per_s']:.2f}" if 'samples_per_s' in r else '',
                      f"{r['gflop_per_s']:.1f}" if 'gflop_per_s' in r else '',
                      f"{100 * r['matmul_fraction']:.0f}%" if 'matmul_fraction' in r else '',
                      f"{r['peak_memory_mb']:.0f}" if 'peak_memory_mb' in r else '',
                      f"{r['speedup_vs_published']:.2f}" if 'speedup_vs_published' in r else ''))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return '\n'.join('  '.join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def write_json(path, report):
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(report, indent=1) + '\n')
    os.replace(tmp, path)


def comma_list(choices=None, type=str):
    def parse(text):
        items = [type(t) for t in text.split(',') if t]
        bad = [t for t in items if choices is not None and t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of {', '.join(choices)}"
                                             if choices else f"{text!r}: expected a comma-separated list")
        return items
    return parse


def at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least {minimum}")
        return value
    return parse


def get_args_parser():
    p = argparse.ArgumentParser('benchmark.py', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--batch', type=at_least(1), default=16, help='samples per step (each has 2 bodies)')
    p.add_argument('--device', default='auto', help="'cpu', 'cuda', 'cuda:N' or 'auto'")
    p.add_argument('--out', default=None, help='write the results to this JSON file')
    p.add_argument('--steps', type=at_least(1), default=3, help='timed steps per row (the median is reported)')
    p.add_argument('--warmup', type=at_least(0), default=1, help='untimed steps before them')
    p.add_argument('--amp', type=comma_list(AMP), default=None,
                   help='precisions of the pre-training rows (default fp32,bf16, and fp16 on CUDA, leaving out '
                        'those the device has no fast matmul for); the other model rows use the first')
    p.add_argument('--compile', action='store_true', help='also time the pre-training step under torch.compile')
    p.add_argument('--only', type=comma_list(SECTIONS), default=list(SECTIONS),
                   help=f"sections to run, from {','.join(SECTIONS)}")
    p.add_argument('--decoder_depth', type=comma_list(type=int), default=[5, 3],
                   help='decoder depths of the pre-training rows')
    p.add_argument('--threads', type=at_least(1), default=None, help='torch threads (default: os.cpu_count())')
    p.add_argument('--feeder_samples', type=at_least(1), default=256, help='feeder items per timed pass')
    p.add_argument('--foreach', action='store_true', help='foreach instead of fused optimiser kernels')
    p.add_argument('--return_memory', action='store_true',
                   help="CPU: let malloc hand freed memory back to the system (glibc's default) instead of "
                        "keeping it for reuse as the training entry points do (util/malloc.py)")
    p.add_argument('--published', action='store_true',
                   help="also time the fp32 pre-training and fine-tuning steps as the official code runs them "
                        "(explicit attention, AdamW's default kernel), each in a fresh process with glibc's default "
                        "malloc right after ours, and the published feeder, its passes alternating with ours")
    p.add_argument('--quick', action='store_true',
                   help='tiny model (dim 32, depth 2, decoder depth 1, 24 frames) and data, batch 2, 2 steps')
    return p


def main(args):
    device = torch.device('cuda' if args.device == 'auto' and torch.cuda.is_available()
                          else 'cpu' if args.device == 'auto' else args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device}: CUDA is not available on this machine")
    torch.set_num_threads(args.threads or os.cpu_count())
    kept = device.type == 'cpu' and not args.return_memory and keep_freed_memory()
    size = QUICK if args.quick else FULL
    if args.quick:
        args.batch, args.steps, args.warmup = 2, 2, 1
        args.decoder_depth, args.feeder_samples = [1], 8
    slow = slow_precisions(device)
    precisions = args.amp or [p for p in (['fp32', 'bf16', 'fp16'] if device.type == 'cuda' else ['fp32', 'bf16'])
                              if p not in slow]
    notes = [f"{p}: {slow[p]}" + ('' if p in precisions else f"; left out (force with --amp fp32,{p})")
             for p in slow if p in precisions or p == 'bf16']
    sections = args.only
    memory = PeakMemory(device)
    rows = []
    print(f"benchmark on {device} ({device_name(device)}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {args.batch}{', quick' if args.quick else ''}"
          f"{', malloc keeps freed memory' if kept else ''}")
    for note in notes:
        print(f"note: {note}")

    def add(row):
        rows.append(row)
        print(summary(row), flush=True)

    probe = None
    if any(s in sections for s in ('matmul', 'pretrain', 'linprobe', 'finetune', 'eval')):
        probe = MatmulProbe(size['matmul_size'], list(dict.fromkeys(['fp32'] + precisions)), device)
        probe.measure(calls=10, budget=10)
    fused = not args.foreach
    configs = [('pretrain', precision, compiled, depth) for compiled in ([False, True] if args.compile else [False])
               for depth in args.decoder_depth for precision in precisions] if 'pretrain' in sections else []
    configs += [(section, precisions[0], False, None) for section in ('linprobe', 'finetune', 'eval')
                if section in sections]
    for section, precision, compiled, depth in configs:
        probe.measure(calls=3, budget=2)
        add(model_row(section, size, args.batch, device, precision, compiled, fused, args.warmup, args.steps,
                      memory, depth))
        if args.published and section in ('pretrain', 'finetune') and precision == 'fp32' and not compiled:
            ours = rows[-1]
            probe.measure(calls=3, budget=2)
            memory.reset()  # give our row's cached (GPU) memory back before the other process starts
            with multiprocessing.get_context('spawn').Pool(1) as pool:  # a fresh process: glibc's default malloc
                add(pool.apply(published_row, (torch.get_num_threads(), section, size, args.batch, device, precision,
                                               False, False, args.warmup, args.steps, memory, depth)))
            ours['speedup_vs_published'] = ours['samples_per_s'] / rows[-1]['samples_per_s']
            print(f"{summary(ours).split(':')[0]}: {ours['speedup_vs_published']:.2f}x the published step")
    if 'feeder' in sections or 'augment' in sections:
        feeder = feeder_rows(size, args.batch, device, sections, args.feeder_samples, args.warmup, args.steps,
                             memory, args.published, bool(kept))
        for row in feeder:
            add(row)
        for ours in (row for row in feeder if 'speedup_vs_published' in row):
            print(f"{summary(ours).split(':')[0]}: {ours['speedup_vs_published']:.2f}x the published feeder")
    peaks = {}
    if probe is not None:
        peaks = {p: probe.gflop_per_s(p) for p in probe.times}
        rows[:0] = probe.rows()
        for row in rows:
            if row['section'] != 'matmul' and 'gflop_per_s' in row:
                row['matmul_fraction'] = row['gflop_per_s'] / peaks[row['precision']]
    report = {'device': str(device), 'device_name': device_name(device), 'torch': torch.__version__,
              'threads': torch.get_num_threads(), 'batch': args.batch, 'quick': args.quick, 'keep_memory': kept,
              'steps': args.steps, 'warmup': args.warmup,
              'size': {k: v for k, v in size.items()}, 'matmul_gflop_per_s': peaks, 'notes': notes, 'rows': rows}
    print()
    print(table(rows))
    if args.out:
        write_json(args.out, report)
        print(f"wrote {args.out}")
    return report


if __name__ == '__main__':
    main(get_args_parser().parse_args())
