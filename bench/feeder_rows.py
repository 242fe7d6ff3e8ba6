"""The timed rows of the data path: the training feeder (ours and published) in fresh one-thread processes,
their passes interleaved, and the batch augmentation on the device."""
import contextlib
import multiprocessing
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.published import PublishedFeeder, published_item
from bench.settings import CROP
from bench.timing import PeakMemory, time_calls, timing_fields
from util.malloc import keep_freed_memory


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
