"""What a run reports: the reduced precisions this device has no fast kernel for, the device name, one summary
line per row, the aligned table and the JSON file."""
import json
import platform
from pathlib import Path

import torch

from util.output import atomic_write


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
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(report, indent=1) + '\n'))
