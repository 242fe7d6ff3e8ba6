"""Tables of the test accuracy of classification runs, read from their log.txt files.

    python -m util.summary "linear probe after MAMP=output/linear" "fine-tune after MAMP=output/finetune"

prints, for each NAME=OUTPUT_DIR, the last epoch's test top-1 and mean class accuracy (the mean of the per-class
top-1: every action weighs the same), then the best test top-1 over the epochs with its epoch ("best on test":
chosen on the test set itself, so an optimistic figure), in %; the folder of a kNN evaluation (knn.json of
main_knn.py) gives its one result as the last, for its first k, or for k = K with OUTPUT_DIR#K; the folder of a
few-shot evaluation (fewshot.json of main_fewshot.py) gives the mean episode accuracy for its first shots, or for
S shots with OUTPUT_DIR#S; the folder of a detection run (detection.json of main_detect.py) gives its mAP_a at IoU
0.5, or another with OUTPUT_DIR#mAP_v@0.3 (KIND@THETA). Runs given under the same NAME (e.g. one per seed) are pooled
into one row: the mean, the sample standard deviation and the range of their last top-1, the mean and standard
deviation of their last mean class accuracy, and the mean of their best top-1; an OUTPUT_DIR with a wildcard
(quoted, e.g. "real_pku_output/*/XSub/linear_mamp") stands for every folder it matches.
With --mean, also the mean and standard deviation over all the runs (repeats of one setting) of each figure;
`--knn NAME=OUTPUT_DIR ...` (main_knn.py runs) adds a table of their kNN top-1, top-5 and mean class accuracy.
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


WRITERS = {'knn.json': 'main_knn.py', 'fewshot.json': 'main_fewshot.py', 'detection.json': 'main_detect.py'}


def read_json(path, keys):
    """The JSON object in `path` (knn.json, fewshot.json), which must hold `keys`; fails naming the file."""
    try:
        result = json.loads(path.read_text())
        for key in keys:
            result[key]
        return result
    except (json.JSONDecodeError, KeyError, TypeError):
        raise SystemExit(f"error: {path}: expected the JSON object of {WRITERS[path.name]} with {', '.join(keys)}")


def read_knn(path):
    """The main_knn.py result in knn.json at `path` ({'knn_acc1', ...}); fails naming the file."""
    result = read_json(path, ['knn_acc1'])
    try:
        float(result['knn_acc1'])
    except (TypeError, ValueError):
        raise SystemExit(f"error: {path}: expected the JSON object of main_knn.py with knn_acc1")
    return result


def pick(path, by, figure, what):
    """by[figure] (by[first key] for figure None) of the result in `path`; fails naming the figures it has."""
    key = next(iter(by)) if figure is None else figure
    if key not in by:
        raise SystemExit(f"error: {path}: no {what} {figure} (it has {', '.join(by)}); choose one with #{what}")
    return by[key]


def one_result(output_dir, figure):
    """summarize() of a folder with one result, detection.json (main_detect.py), knn.json (main_knn.py) or
    fewshot.json (main_fewshot.py); None for a folder with none. `figure`: the KIND@THETA, the k or the shots to
    read (None: mAP_a@0.5, the first k, the first shots)."""
    knn, fewshot = Path(output_dir) / 'knn.json', Path(output_dir) / 'fewshot.json'
    detection = Path(output_dir) / 'detection.json'
    if detection.is_file():
        result = read_json(detection, ['mAP_a', 'mAP_v'])
        if not all(isinstance(result[kind], dict) and all(isinstance(v, (int, float)) for v in result[kind].values())
                   for kind in ('mAP_a', 'mAP_v')):
            raise SystemExit(f"error: {detection}: expected mAP_a and mAP_v as {{IoU threshold: mAP}} objects")
        by_figure = {f'{kind}@{theta}': value for kind in ('mAP_a', 'mAP_v') for theta, value in result[kind].items()}
        last, mca = pick(detection, by_figure, figure or 'mAP_a@0.5', 'figure'), None
    elif knn.is_file():
        result = read_knn(knn)
        by_k = result.get('by_k') or {str(result.get('knn_k')): {'acc1': result['knn_acc1'],
                                                                'mean_class_acc': result.get('knn_mean_class_acc')}}
        result = pick(knn, by_k, figure, 'k')
        last, mca = result['acc1'], result.get('mean_class_acc')
    elif fewshot.is_file():
        last, mca = pick(fewshot, read_json(fewshot, ['by_shots'])['by_shots'], figure, 'shots')['acc'], None
    else:
        return None
    return {'last': last, 'last_mca': mca, 'best': None, 'best_epoch': None, 'epochs': None}


def summarize(output_dir, figure=None):
    """{'last': top-1, 'last_mca': mean class accuracy, 'best': top-1, 'best_epoch', 'epochs'} of one run, from
    its log.txt: the last epoch's test accuracies and the best test top-1 over the epochs (chosen on the test
    set, so an optimistic figure). A detection, kNN or few-shot folder (detection.json; knn.json or fewshot.json
    and no log.txt) has one result, of the KIND@THETA, k or shots `figure` (default: mAP_a@0.5, the first k or
    shots): best, best_epoch and epochs None, and no mean class accuracy for detection and few-shot. last_mca
    is None for a log written before mean class accuracy was logged."""
    if (Path(output_dir) / 'detection.json').is_file() or not (Path(output_dir) / 'log.txt').is_file():
        result = one_result(output_dir, figure)
        if result is not None:
            return result
    entries = read_log(output_dir)
    best = max(entries, key=lambda e: e['test_acc1'])
    return {'last': entries[-1]['test_acc1'], 'last_mca': entries[-1].get('test_mean_class_acc'),
            'best': best['test_acc1'], 'best_epoch': best['epoch'], 'epochs': entries[-1]['epoch'] + 1}


def number(value, suffix=''):
    """value with two decimals (and `suffix`), or '-' for None."""
    return '-' if value is None else f"{value:.2f}{suffix}"


def format_table(rows):
    """rows: [(name, summarize(...))] -> the table as text, one line per run under a header."""
    width = max(len('run'), *(len(name) for name, _ in rows))
    lines = [f"{'run':<{width}}  {'last top-1':>10}  {'last mean class':>15}  {'best on test (epoch)':>20}  "
             f"{'epochs':>6}"]
    for name, s in rows:
        best = number(s['best']) + ('' if s['best_epoch'] is None else f" ({s['best_epoch']})")
        epochs = '-' if s['epochs'] is None else s['epochs']
        lines.append(f"{name:<{width}}  {s['last']:>10.2f}  {number(s['last_mca']):>15}  {best:>20}  {epochs:>6}")
    return '\n'.join(lines)


def spread(values):
    """(mean, sample standard deviation) of `values`, the deviation 0 for one value; (None, None) when a value
    is missing (None)."""
    if any(v is None for v in values):
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.


def format_mean(rows):
    """rows: [(name, summarize(...))] -> one line: mean and sample standard deviation over the runs of their
    last top-1, last mean class accuracy and best-on-test top-1."""
    parts = []
    for key, label in (('last', 'last top-1'), ('last_mca', 'last mean class accuracy'),
                       ('best', 'best on test top-1')):
        mean, sd = spread([s[key] for _, s in rows])
        parts.append(f"{label} mean {number(mean)}, standard deviation {number(sd)}")
    return f"over {len(rows)} run(s): " + '; '.join(parts)


def knn_table(rows):
    """rows: [(name, output_dir of main_knn.py)] -> kNN top-1 / top-5 / mean class accuracy of each, read from
    its knn.json."""
    results = []
    for name, output_dir in rows:
        path = Path(output_dir) / 'knn.json'
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (expected the output of main_knn.py)")
        results.append((name, read_knn(path)))
    width = max(len('kNN of the frozen encoder'), *(len(name) for name, _ in results))
    lines = [f"{'kNN of the frozen encoder':<{width}}  {'top-1':>6}  {'top-5':>6}  {'mean class':>10}  k, t"]
    for name, r in results:
        lines.append(f"{name:<{width}}  {r['knn_acc1']:>6.2f}  {number(r['knn_acc5']):>6}  "
                     f"{number(r.get('knn_mean_class_acc')):>10}  {r['knn_k']}, {r['knn_t']:g}")
    return '\n'.join(lines)


def pool(summaries):
    """{'runs', 'last', 'last_sd', 'last_min', 'last_max', 'mca', 'mca_sd', 'best'} over the summarize(...) of
    several runs: their last top-1 (mean, standard deviation, range), last mean class accuracy (mean, standard
    deviation) and best-on-test top-1 (mean)."""
    last = [s['last'] for s in summaries]
    (mean, sd), (mca, mca_sd) = spread(last), spread([s['last_mca'] for s in summaries])
    return {'runs': len(last), 'last': mean, 'last_sd': sd, 'last_min': min(last), 'last_max': max(last),
            'mca': mca, 'mca_sd': mca_sd, 'best': spread([s['best'] for s in summaries])[0]}


def format_pooled_table(rows):
    """rows: [(name, pool(...))] -> the table as text, one line per name under a header."""
    width = max(len('run'), *(len(name) for name, _ in rows))
    lines = [f"{'run':<{width}}  {'runs':>4}  {'last top-1 mean +- sd':>21}  {'(min-max)':>13}  "
             f"{'last mean class +- sd':>21}  {'best on test mean':>17}"]
    for name, p in rows:
        span = f"({p['last_min']:.2f}-{p['last_max']:.2f})"
        mca = '-' if p['mca'] is None else f"{p['mca']:.2f} +- {p['mca_sd']:>5.2f}"
        lines.append(f"{name:<{width}}  {p['runs']:>4}  {p['last']:>12.2f} +- {p['last_sd']:>5.2f}  {span:>13}  "
                     f"{mca:>21}  {number(p['best']):>17}")
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
                        help='a row name and the output_dir (holding log.txt, knn.json or fewshot.json) of a run, '
                             'with #K for the k of a kNN run or #S for the shots of a few-shot run; runs under the '
                             'same name are pooled')
    parser.add_argument('--mean', action='store_true', help='also the mean and standard deviation over all the runs')
    parser.add_argument('--knn', nargs='+', type=parse_run, default=[], metavar='NAME=OUTPUT_DIR',
                        help='a row name and the output_dir (holding knn.json) of a main_knn.py run')
    args = parser.parse_args(argv)
    groups = {}
    for name, pattern in args.runs:
        folders, figure = pattern.split('#', 1) if '#' in pattern else (pattern, None)
        groups.setdefault(name, []).extend(summarize(output_dir, figure) for output_dir in expand(folders))
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
