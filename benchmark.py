"""Speed of MAMP pre-training, linear probing, fine-tuning, evaluation and data loading on this machine.

    python benchmark.py --batch 16 --device cpu --published --out bench.json
    python benchmark.py --batch 128 --device cuda --compile --out bench_cuda.json
    python benchmark.py --quick                    # tiny model and data: every section in seconds

Sections (select with --only):
  matmul    fp32 (and each --amp precision) 2048^3 matmul: the practical FLOP/s limit of the device;
  pretrain  MAMP training step (forward + backward + AdamW) at each --decoder_depth, --amp precision and, with
            --compile, also under torch.compile;
  tune      contrastive tuning step (model_tune.NNCLR: both views through the encoder, projector and predictor,
            nearest neighbours in a full queue of 8192, AdamW over the upper half of the blocks with layer decay),
            as main_tune.py;
  linprobe  linear-probe training step: frozen encoder in eval mode, non-affine BatchNorm + Linear, SGD;
  finetune  fine-tuning training step (MLP head, drop path 0.3, label smoothing, AdamW with layer decay);
  eval      classifier forward under inference_mode;
  feeder    the training feeder (random crop-resize of a 300-frame sequence to the window, then rotation) in a
            fresh process with one thread: item by item (__getitem__), and in batches of --batch (__getitems__,
            which a DataLoader worker calls for a batch); passes of --feeder_samples items, interleaved;
  augment   the same augmentation applied to a whole batch on the device (feeder.augment.BatchAugment);
  dense     one untrimmed recording detected (windows through the encoder, frame probabilities, segments;
            engine_detect.detect_recording): at the full size a short stretch, at the real study's size
            (config/real_pku/pretrain_mamp.yaml's encoder, config/real_pku/detect.yaml's windows) a whole
            9000-frame recording; frames/s and the seconds a 9000-frame recording takes.
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
import multiprocessing
import os

import torch

from bench.dense_rows import dense_rows
from bench.feeder_rows import feeder_rows
from bench.model_rows import model_row, published_row
from bench.report import device_name, slow_precisions, summary, table, write_json
from bench.settings import AMP, FULL, QUICK, SECTIONS
from bench.timing import MatmulProbe, PeakMemory
from util.malloc import keep_freed_memory
from util.output import check_output_path


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
    if args.out:
        check_output_path(args.out, '--out')  # before the timing, not after it
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
    if any(s in sections for s in ('matmul', 'pretrain', 'tune', 'linprobe', 'finetune', 'eval')):
        probe = MatmulProbe(size['matmul_size'], list(dict.fromkeys(['fp32'] + precisions)), device)
        probe.measure(calls=10, budget=10)
    fused = not args.foreach
    configs = [('pretrain', precision, compiled, depth) for compiled in ([False, True] if args.compile else [False])
               for depth in args.decoder_depth for precision in precisions] if 'pretrain' in sections else []
    configs += [(section, precisions[0], False, None) for section in ('tune', 'linprobe', 'finetune', 'eval')
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
    if 'dense' in sections:
        for row in dense_rows(size, args.quick, device, precisions[0], args.warmup, args.steps, memory):
            add(row)
            print(f"{summary(row).split(':')[0]}: {row['frames_per_s']:.0f} frames/s, "
                  f"{row['seconds_per_9000_frames']:.1f} s for a 9000-frame recording")
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
