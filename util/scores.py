"""Per-sample score files: `scores.npz` with `names` (N,) str, `logits` (N, C) float32, `labels` (N,) int64.

Written by --save_scores (the test split after evaluation) and by predict.py; fused by ensemble.py, which
matches the rows of several files by sample name, never by position.
"""
import numpy as np

from data.pipeline import save_npz_atomic
from util.config import fail

KEYS = ('names', 'logits', 'labels')


def save_scores(path, names, logits, labels):
    """Write a score file (temporary name, then rename): one row per sample, names unique."""
    save_npz_atomic(path, {'names': np.asarray(names, dtype=str), 'logits': np.asarray(logits, np.float32),
                           'labels': np.asarray(labels, np.int64)})


def load_scores(path):
    """(names list, logits (N, C) float32, labels (N,) int64) of a score file; one line and exit otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                fail(f"{path}: no {', '.join(missing)} (a score file holds {', '.join(KEYS)}: write one with "
                     f"--save_scores)")
            names, logits, labels = [str(n) for n in z['names']], z['logits'].astype(np.float32), z['labels']
    except (OSError, ValueError) as e:
        fail(f"{path}: not a score file ({e})")
    if logits.ndim != 2 or len(logits) != len(names) or labels.shape != (len(names),):
        fail(f"{path}: {len(names)} names, logits {logits.shape} and labels {labels.shape} do not match")
    if len(set(names)) != len(names):
        fail(f"{path}: sample {next(n for i, n in enumerate(names) if n in names[:i])} appears twice")
    return names, logits, labels.astype(np.int64)


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
