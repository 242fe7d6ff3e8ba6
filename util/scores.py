"""Per-sample score files: `scores.npz` with `names` (N,) str, `logits` (N, C) float32, `labels` (N,) int64
(-1 where the action is unknown, e.g. predict.py on recordings without a label); and the accuracies of logits.

Written by --save_scores (the test split after evaluation) and by predict.py; fused by ensemble.py, which
matches the rows of several files by sample name, never by position.
"""
import csv
import io
import zipfile
from pathlib import Path

import numpy as np

from util.config import fail
from util.output import atomic_write

KEYS = ('names', 'logits', 'labels')


def save_scores(path, names, logits, labels):
    """Write a score file (temporary name, then rename): one row per sample, names unique."""
    arrays = {'names': np.asarray(names, dtype=str), 'logits': np.asarray(logits, np.float32),
              'labels': np.asarray(labels, np.int64)}

    def write(tmp):
        with open(tmp, 'wb') as f:  # a file object: np.savez adds no .npz to the name
            np.savez(f, **arrays)
    atomic_write(path, write)


def load_scores(path):
    """(names list, logits (N, C) float32, labels (N,) int64) of a score file; one line and exit otherwise:
    also for no rows, a logit that is NaN or infinite, or a label outside -1 .. C - 1."""
    if not Path(path).is_file():
        what = 'a folder' if Path(path).is_dir() else 'no such file'
        fail(f"{path}: {what}; give a score file (written by --save_scores or predict.py --scores)")
    with open(path, 'rb') as f:
        if f.read(4) != b'PK\x03\x04':
            fail(f"{path}: not a score file (not an .npz archive); give a file written by --save_scores or "
                 f"predict.py --scores")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                fail(f"{path}: no {', '.join(missing)} (a score file holds {', '.join(KEYS)}: write one with "
                     f"--save_scores)")
            names, logits, labels = [str(n) for n in z['names']], z['logits'].astype(np.float32), z['labels']
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        fail(f"{path}: not a score file, or cut short ({' '.join(str(e).split())[:200]})")
    if logits.ndim != 2 or len(logits) != len(names) or labels.shape != (len(names),):
        fail(f"{path}: {len(names)} names, logits {logits.shape} and labels {labels.shape} do not match")
    if not names:
        fail(f"{path}: no samples")
    if len(set(names)) != len(names):
        fail(f"{path}: sample {next(n for i, n in enumerate(names) if n in names[:i])} appears twice")
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if bad.size:
        fail(f"{path}: sample {names[bad[0]]} has a non-finite logit ({bad.size} such samples); "
             f"score the samples again")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < -1) | (labels >= logits.shape[1]))
    if bad.size:
        fail(f"{path}: sample {names[bad[0]]} has label {labels[bad[0]]}, outside 0 .. {logits.shape[1] - 1} "
             f"of its {logits.shape[1]} classes (-1: unknown)")
    return names, logits, labels


def accuracies(logits, labels):
    """{'samples', 'top1', 'top5', 'mean_class'} (%) over the rows of known label (>= 0) of (N, C) logits and
    (N,) labels; None when no label is known."""
    known = labels >= 0
    if not known.any():
        return None
    logits, labels = logits[known], labels[known]
    return {'samples': int(known.sum()), 'top1': topk_accuracy(logits, labels, 1),
            'top5': topk_accuracy(logits, labels, 5), 'mean_class': mean_class_accuracy(logits, labels)}


def write_class_table(path, logits, labels, actions):
    """A .csv of the top-1 accuracy of every class with a sample of known label: class, action (name, or ''
    when `actions` is None), samples, correct, accuracy (%)."""
    known = labels >= 0
    predictions, labels = np.argmax(logits[known], axis=1), labels[known]
    accuracy, counts = class_accuracy(predictions, labels, logits.shape[1])
    correct = np.bincount(labels[predictions == labels], minlength=logits.shape[1])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(['class', 'action', 'samples', 'correct', 'accuracy'])
    for c in np.flatnonzero(counts):
        writer.writerow([c, actions[c] if actions else '', counts[c], correct[c], f"{accuracy[c]:.2f}"])
    atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))


def class_accuracy(predictions, labels, num_classes):
    """Per-class top-1 accuracy (%) and sample counts from predicted and true classes (N,), (N,):
    ((C,) float64, NaN for a class without a sample, (C,) int64)."""
    counts = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels[predictions == labels], minlength=num_classes)
    return class_rates(hits, counts), counts


def class_rates(hits, counts):
    """Per-class accuracy (%) from per-class hits and samples (C,), (C,): (C,) float64, NaN for a class without
    a sample (e.g. summed over the shards of a --dist_eval evaluation)."""
    hits, counts = np.asarray(hits, np.float64), np.asarray(counts, np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(counts > 0, 100.0 * hits / counts, np.nan)


def mean_class_accuracy(logits, labels):
    """Mean (%) of the per-class top-1 accuracy over the classes with at least one sample, from (N, C)
    logits and (N,) labels: every action weighs the same, however many samples it has (scikit-learn's
    balanced accuracy). A class with no sample is left out, not counted as 0."""
    accuracy, _ = class_accuracy(np.argmax(logits, axis=1), labels, logits.shape[1])
    return float(np.nanmean(accuracy)) if len(labels) else float('nan')


def topk_accuracy(logits, labels, k):
    """Share (%) of rows whose label is among the k largest logits: (N, C), (N,) -> float."""
    top = np.argsort(-logits, axis=1, kind='stable')[:, :k]
    return 100.0 * float(np.mean((top == labels[:, None]).any(axis=1)))
