"""Per-frame class probabilities of an untrimmed recording -> detected action segments.

The post-processing of Simple-Skeleton-Detection (github.com/JHang2020/Simple-Skeleton-Detection,
processor/evaluate_metrics.py: `smoothing`, then `get_segments` with activity_threshold=0.4): a mean filter over
about 20 frames, a frame is active where 1 - p(background) >= 0.4, every run of active frames is one segment, its
action the argmax of the run's mean action probabilities and its score that mean.

Where we differ: their filter averages rows [i - 10, min(i + 10, T - 1)), so the last frame never enters any
window (and a one-frame recording averages nothing); ours averages rows [i - smooth // 2, i - smooth // 2 + smooth)
cut to the recording, every frame counted.
"""
import numpy as np


def smooth_probs(probs, smooth=20):
    """(T, C) -> (T, C) float64: row i is the mean of rows [i - smooth // 2, i - smooth // 2 + smooth) cut to [0, T)."""
    probs = np.asarray(probs, dtype=np.float64)
    if smooth < 1:
        raise ValueError(f"smooth must be at least 1 frame, got {smooth}")
    frames = len(probs)
    sums = np.concatenate([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0)])
    low = np.arange(frames) - smooth // 2
    first, last = np.clip(low, 0, frames), np.clip(low + smooth, 0, frames)
    return (sums[last] - sums[first]) / (last - first)[:, None]


def segments_from_probs(probs, smooth=20, threshold=0.4):
    """Segments of one recording: [(label k, start, end, score)], frames [start, end) as in the label files.

    probs: (T, C + 1) per-frame probabilities, column 0 background, column k action k (the label files' numbers).
    After the mean filter (smooth_probs), frames with 1 - p(background) >= threshold are active; each maximal run
    [start, end) of active frames is a segment of the action k >= 1 with the highest mean probability over the
    run, scored by that mean. smooth=1 turns the filter off.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"expected (frames, actions + 1) probabilities, got shape {probs.shape}")
    smoothed = smooth_probs(probs, smooth)
    active = np.concatenate([[False], 1 - smoothed[:, 0] >= threshold, [False]])
    edges = np.flatnonzero(active[1:] != active[:-1])
    segments = []
    for start, end in zip(edges[::2], edges[1::2]):
        mean = smoothed[start:end, 1:].mean(axis=0)
        label = int(np.argmax(mean)) + 1
        segments.append((label, int(start), int(end), float(mean[label - 1])))
    return segments
