"""Fuse the per-sample scores of several models (e.g. the joint, bone and motion streams) by sample name.

    python ensemble.py joint/scores.npz bone/scores.npz motion/scores.npz [--weights 0.6 0.6 0.4]

The fused score of a sample is the weighted sum of its logits over the files (weights default to 1), as
skeleton papers fuse their streams. Rows are matched by sample name, so files written in different sample
orders fuse correctly; files whose sample sets differ, or that disagree on a sample's label, are refused
with the first offending name. Prints each file's and the fused top-1 / top-5 accuracy (%).
"""
import argparse

import numpy as np

from util.config import fail
from util.scores import load_scores, save_scores, topk_accuracy


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


def main(argv=None):
    parser = argparse.ArgumentParser('ensemble.py', description=__doc__.split('\n')[0])
    parser.add_argument('scores', nargs='+', help='score files written by --save_scores (scores.npz)')
    parser.add_argument('--weights', nargs='+', type=float, help='one weight per file (default: all 1)')
    parser.add_argument('--out', help='also write the fused scores to this .npz (the format of the inputs)')
    args = parser.parse_args(argv)
    weights = args.weights or [1.0] * len(args.scores)
    if len(weights) != len(args.scores):
        fail(f"--weights: {len(weights)} weights for {len(args.scores)} score files (give one per file)")
    files = [(path, load_scores(path)) for path in args.scores]
    names, logits, labels = align(files)
    fused = fuse(logits, weights)
    width = max(len(p) for p in args.scores + ['fused'])
    print(f"{'scores':<{width}}  weight  top-1   top-5   ({len(names)} samples)")
    for path, weight, x in zip(args.scores, weights, logits):
        print(f"{path:<{width}}  {weight:6.3g}  {topk_accuracy(x, labels, 1):6.2f}  {topk_accuracy(x, labels, 5):6.2f}")
    print(f"{'fused':<{width}}  {'':6}  {topk_accuracy(fused, labels, 1):6.2f}  {topk_accuracy(fused, labels, 5):6.2f}")
    if args.out:
        save_scores(args.out, names, fused, labels)
    return fused, labels


if __name__ == '__main__':
    main()
