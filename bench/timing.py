"""Timing of calls (wall and process CPU time), peak memory, and the matmul FLOP/s reference of the rows."""
import gc
import os
import resource
import statistics
import time
from pathlib import Path

import torch

from bench.settings import AMP
from util.malloc import glibc


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
