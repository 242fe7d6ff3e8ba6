"""Table of the test top-1 accuracy of classification runs, read from their log.txt files.

    python -m util.summary "linear probe after MAMP=output/linear" "fine-tune after MAMP=output/finetune"

prints, for each NAME=OUTPUT_DIR, the best top-1 (and its epoch) and the last epoch's top-1, in %; with
--mean, also the mean and standard deviation of the best top-1 over the runs (repeats of one setting).
`--knn NAME=OUTPUT_DIR ...` (main_knn.py runs) also their kNN top-1 and top-5 from knn.json.
"""
import argparse
import json
import statistics
from pathlib import Path


def read_log(output_dir):
    """The JSON lines of output_dir/log.txt that hold a test accuracy, in order; fails naming the file."""
    path = Path(output_dir) / 'log.txt'
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (expected the log.txt of a linear probe or fine-tuning run)")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise SystemExit(f"error: {path} line {number}: not a JSON line: {line[:80]!r}")
        if 'test_acc1' in entry:
            entries.append(entry)
    if not entries:
        raise SystemExit(f"error: {path}: no epoch with a test accuracy (test_acc1)")
    return entries


def summarize(output_dir):
    """{'best': top-1, 'best_epoch', 'last': top-1, 'epochs'} of one run, from its log.txt."""
    entries = read_log(output_dir)
    best = max(entries, key=lambda e: e['test_acc1'])
    return {'best': best['test_acc1'], 'best_epoch': best['epoch'], 'last': entries[-1]['test_acc1'],
            'epochs': entries[-1]['epoch'] + 1}


def format_table(rows):
    """rows: [(name, summarize(...))] -> the table as text, one line per run under a header."""
    width = max(len('run'), *(len(name) for name, _ in rows))
    lines = [f"{'run':<{width}}  {'best top-1 (epoch)':>18}  {'last top-1':>10}  {'epochs':>6}"]
    for name, s in rows:
        best = f"{s['best']:.2f} ({s['best_epoch']})"
        lines.append(f"{name:<{width}}  {best:>18}  {s['last']:>10.2f}  {s['epochs']:>6}")
    return '\n'.join(lines)


def format_mean(rows):
    """rows: [(name, summarize(...))] -> one line: mean and sample standard deviation of their best top-1."""
    best = [s['best'] for _, s in rows]
    std = statistics.stdev(best) if len(best) > 1 else 0.
    return f"best top-1 over {len(best)} run(s): mean {statistics.mean(best):.2f}, standard deviation {std:.2f}"


def knn_table(rows):
    """rows: [(name, output_dir of main_knn.py)] -> kNN top-1 / top-5 of each, read from its knn.json."""
    results = []
    for name, output_dir in rows:
        path = Path(output_dir) / 'knn.json'
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (expected the output of main_knn.py)")
        results.append((name, json.loads(path.read_text())))
    width = max(len('kNN of the frozen encoder'), *(len(name) for name, _ in results))
    lines = [f"{'kNN of the frozen encoder':<{width}}  {'top-1':>6}  {'top-5':>6}  k, t"]
    for name, r in results:
        lines.append(f"{name:<{width}}  {r['knn_acc1']:>6.2f}  {r['knn_acc5']:>6.2f}  {r['knn_k']}, {r['knn_t']:g}")
    return '\n'.join(lines)


def parse_run(text):
    name, sep, output_dir = text.rpartition('=')
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=OUTPUT_DIR, got {text!r}")
    return name, output_dir


def main(argv=None):
    parser = argparse.ArgumentParser('python -m util.summary', description=__doc__.strip().splitlines()[0])
    parser.add_argument('runs', nargs='+', type=parse_run, metavar='NAME=OUTPUT_DIR',
                        help='a row name and the output_dir (holding log.txt) of a run')
    parser.add_argument('--mean', action='store_true', help='also the mean and standard deviation of the best top-1')
    parser.add_argument('--knn', nargs='+', type=parse_run, default=[], metavar='NAME=OUTPUT_DIR',
                        help='a row name and the output_dir (holding knn.json) of a main_knn.py run')
    args = parser.parse_args(argv)
    rows = [(name, summarize(output_dir)) for name, output_dir in args.runs]
    print(format_table(rows))
    if args.mean:
        print(format_mean(rows))
    if args.knn:
        print()
        print(knn_table(args.knn))


if __name__ == '__main__':
    main()
