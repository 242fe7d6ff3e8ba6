"""Fuse the per-sample scores of several models (e.g. the joint, bone and motion streams) by sample name.

    python ensemble.py joint/scores.npz bone/scores.npz motion/scores.npz [--weights 0.6 0.6 0.4]

The fused score of a sample is the weighted sum of its logits over the files (weights default to 1), as
skeleton papers fuse their streams. Rows are matched by sample name, so files written in different sample
orders fuse correctly; files whose sample sets differ, or that disagree on a sample's label, are refused
with the first offending name. Prints each file's and the fused top-1 / top-5 and mean class accuracy (%)
over the samples of known label. Every input and output is checked before anything is printed or written.
"""
import argparse
import math

import numpy as np

from util.actions import BY_CLASS_COUNT, DATASETS
from util.config import fail
from util.output import check_output_path
from util.scores import accuracies, load_scores, save_scores, write_class_table


def align(files):
    """[(names, logits, labels)] -> (names of the first file, [logits (N, C) in that order], labels (N,)).

    Fails naming the first sample that one file lacks or has in excess, or whose label differs.
    """
    (names, first_logits, labels), *others = [scores for _, scores in files]
    index = {name: i for i, name in enumerate(names)}
    aligned = [first_logits]
    for path, (other_names, logits, other_labels) in files[1:]:
        extra = next((n for n in other_names if n not in index), None)
        if extra is not None:
            fail(f"{path}: sample {extra} is not in {files[0][0]} (the files must score the same samples)")
        if len(other_names) != len(names):
            missing = next(n for n in names if n not in set(other_names))
            fail(f"{path}: sample {missing} of {files[0][0]} is missing (the files must score the same samples)")
        if logits.shape[1] != first_logits.shape[1]:
            fail(f"{path}: {logits.shape[1]} classes, {files[0][0]} has {first_logits.shape[1]}")
        order = np.array([index[n] for n in other_names])
        wrong = np.flatnonzero(other_labels != labels[order])
        if wrong.size:
            name = other_names[wrong[0]]
            fail(f"{path}: sample {name} has label {other_labels[wrong[0]]}, {files[0][0]} says {labels[index[name]]}")
        rows = np.empty(len(names), np.int64)
        rows[order] = np.arange(len(names))
        aligned.append(logits[rows])
    return names, aligned, labels


def fuse(logits, weights):
    """Weighted sum of aligned logits [(N, C)] -> (N, C) float64."""
    return sum(w * x.astype(np.float64) for w, x in zip(weights, logits))


def check_weights(weights, num_files):
    """The --weights: one per file, finite, not negative, not all zero (a zero sum fuses nothing)."""
    weights = weights or [1.0] * num_files
    if len(weights) != num_files:
        fail(f"--weights: {len(weights)} weights for {num_files} score files (give one per file)")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        fail(f"--weights {' '.join(map(str, weights))}: expected finite, non-negative numbers, at least one "
             f"above 0")
    return weights


def table_row(label, weight, logits, labels):
    """One line of the table: the file, its weight and its accuracies (%), '-' without a known label."""
    acc = accuracies(logits, labels)
    values = [f"{acc[k]:6.2f}" for k in ('top1', 'top5', 'mean_class')] if acc else ['     -'] * 3
    return f"{label}  {weight}  " + '  '.join(values)


def main(argv=None):
    parser = argparse.ArgumentParser('ensemble.py', description=__doc__.split('\n')[0])
    parser.add_argument('scores', nargs='+', help='score files written by --save_scores (scores.npz)')
    parser.add_argument('--weights', nargs='+', type=float, help='one weight per file (default: all 1)')
    parser.add_argument('--out', help='also write the fused scores to this .npz (the format of the inputs)')
    parser.add_argument('--per_class', help='also write the fused top-1 accuracy of every class to this .csv')
    args = parser.parse_args(argv)
    weights = check_weights(args.weights, len(args.scores))
    for flag, path in (('--out', args.out), ('--per_class', args.per_class)):
        check_output_path(path, flag)
    files = [(path, load_scores(path)) for path in args.scores]
    names, logits, labels = align(files)
    fused = fuse(logits, weights)
    if args.out:
        save_scores(args.out, names, fused, labels)
    if args.per_class:
        write_class_table(args.per_class, fused, labels, DATASETS.get(BY_CLASS_COUNT.get(fused.shape[1])))

    width = max(len(p) for p in args.scores + ['scores'])
    known = int((labels >= 0).sum())
    print(f"{'scores':<{width}}  weight   top-1   top-5  mean-class   ({len(names)} samples, {known} of known "
          f"label)")
    for path, weight, x in zip(args.scores, weights, logits):
        print(table_row(f"{path:<{width}}", f"{weight:6.3g}", x, labels))
    print(table_row(f"{'fused':<{width}}", ' ' * 6, fused, labels))
    if args.out:
        print(f"Fused scores (names, logits, labels) of {len(names)} samples written to {args.out}")
    if args.per_class:
        print(f"Fused top-1 accuracy of every class written to {args.per_class}")
    return fused, labels


if __name__ == '__main__':
    main()
