"""Table of the test top-1 accuracy of classification runs, read from their log.txt files.

    python -m util.summary "linear probe after MAMP=output/linear" "fine-tune after MAMP=output/finetune"

prints, for each NAME=OUTPUT_DIR, the best top-1 (and its epoch) and the last epoch's top-1, in %; the folder
of a kNN evaluation (knn.json of main_knn.py) gives its one top-1 as both. Runs given
under the same NAME (e.g. one per seed) are pooled into one row: the mean, the sample standard deviation and
the range of their last top-1, and the mean of their best top-1; an OUTPUT_DIR with a wildcard (quoted,
e.g. "real_pku_output/*/XSub/linear_mamp") stands for every folder it matches.
With --mean, also the mean and standard deviation of the best top-1 over all the runs (repeats of one
setting); `--knn NAME=OUTPUT_DIR ...` (main_knn.py runs) adds a table of their kNN top-1 and top-5.
"""
import argparse
import glob
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


def read_knn(path):
    """The kNN top-1 in knn.json at `path` (written by main_knn.py); fails naming the file."""
    try:
        return float(json.loads(path.read_text())['knn_acc1'])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise SystemExit(f"error: {path}: expected the JSON object of main_knn.py with knn_acc1")


def summarize(output_dir):
    """{'best': top-1, 'best_epoch', 'last': top-1, 'epochs'} of one run, from its log.txt (or knn.json, with
    no epochs: best_epoch and epochs None)."""
    knn = Path(output_dir) / 'knn.json'
    if knn.is_file() and not (Path(output_dir) / 'log.txt').is_file():
        top1 = read_knn(knn)
        return {'best': top1, 'best_epoch': None, 'last': top1, 'epochs': None}
    entries = read_log(output_dir)
    best = max(entries, key=lambda e: e['test_acc1'])
    return {'best': best['test_acc1'], 'best_epoch': best['epoch'], 'last': entries[-1]['test_acc1'],
            'epochs': entries[-1]['epoch'] + 1}


def format_table(rows):
    """rows: [(name, summarize(...))] -> the table as text, one line per run under a header."""
    width = max(len('run'), *(len(name) for name, _ in rows))
    lines = [f"{'run':<{width}}  {'best top-1 (epoch)':>18}  {'last top-1':>10}  {'epochs':>6}"]
    for name, s in rows:
        best = f"{s['best']:.2f}" + ('' if s['best_epoch'] is None else f" ({s['best_epoch']})")
        epochs = '-' if s['epochs'] is None else s['epochs']
        lines.append(f"{name:<{width}}  {best:>18}  {s['last']:>10.2f}  {epochs:>6}")
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


def pool(summaries):
    """{'runs', 'last', 'last_sd', 'last_min', 'last_max', 'best'} over the summarize(...) of several runs."""
    last = [s['last'] for s in summaries]
    return {'runs': len(last), 'last': statistics.mean(last), 'last_sd': statistics.stdev(last) if len(last) > 1
            else 0.0, 'last_min': min(last), 'last_max': max(last),
            'best': statistics.mean(s['best'] for s in summaries)}


def format_pooled_table(rows):
    """rows: [(name, pool(...))] -> the table as text, one line per name under a header."""
    width = max(len('run'), *(len(name) for name, _ in rows))
    lines = [f"{'run':<{width}}  {'runs':>4}  {'last top-1 mean +- sd':>21}  {'(min-max)':>13}  "
             f"{'best top-1 mean':>15}"]
    for name, p in rows:
        spread = f"({p['last_min']:.2f}-{p['last_max']:.2f})"
        lines.append(f"{name:<{width}}  {p['runs']:>4}  {p['last']:>12.2f} +- {p['last_sd']:>5.2f}  {spread:>13}  "
                     f"{p['best']:>15.2f}")
    return '\n'.join(lines)


def expand(output_dir):
    """The folders an OUTPUT_DIR stands for: itself, or every match of a wildcard pattern (sorted)."""
    if not glob.has_magic(output_dir):
        return [output_dir]
    matches = sorted(glob.glob(output_dir))
    if not matches:
        raise SystemExit(f"error: no folder matches {output_dir}")
    return matches


def parse_run(text):
    name, sep, output_dir = text.rpartition('=')
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=OUTPUT_DIR, got {text!r}")
    return name, output_dir


def main(argv=None):
    parser = argparse.ArgumentParser('python -m util.summary', description=__doc__.strip().splitlines()[0])
    parser.add_argument('runs', nargs='+', type=parse_run, metavar='NAME=OUTPUT_DIR',
                        help='a row name and the output_dir (holding log.txt) of a run; runs under the same '
                             'name are pooled')
    parser.add_argument('--mean', action='store_true', help='also the mean and standard deviation of the best top-1')
    parser.add_argument('--knn', nargs='+', type=parse_run, default=[], metavar='NAME=OUTPUT_DIR',
                        help='a row name and the output_dir (holding knn.json) of a main_knn.py run')
    args = parser.parse_args(argv)
    groups = {}
    for name, pattern in args.runs:
        groups.setdefault(name, []).extend(summarize(output_dir) for output_dir in expand(pattern))
    if all(len(runs) == 1 for runs in groups.values()):
        print(format_table([(name, runs[0]) for name, runs in groups.items()]))
    else:
        print(format_pooled_table([(name, pool(runs)) for name, runs in groups.items()]))
    if args.mean:
        print(format_mean([(name, run) for name, runs in groups.items() for run in runs]))
    if args.knn:
        print()
        print(knn_table(args.knn))


if __name__ == '__main__':
    main()
