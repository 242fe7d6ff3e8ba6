"""Few-shot evaluation of a frozen encoder on actions held out from its training: n-way k-shot episodes.

Each episode draws `ways` of the held-out classes, then `shots` support and `queries` query samples of each
(distinct samples). Every query goes to the class whose support mean is nearest (Euclidean) to its feature:
the L2-normalised pooled features of util/knn.PooledFeatures. The accuracy over the episodes is given as its
mean and the half-width of its 95% interval, 1.96 * std / sqrt(episodes).
"""
import numpy as np


def usable_classes(labels, classes, needed):
    """The classes of `classes` with at least `needed` samples in `labels` (N,), sorted."""
    counts = np.bincount(labels, minlength=max(classes, default=-1) + 1)
    return np.array(sorted(c for c in classes if counts[c] >= needed), dtype=np.int64)


def draw_episode(rng, labels, classes, ways, shots, queries):
    """Indices into `labels` of one episode: support (ways, shots) and query (ways, queries), row i of class
    rng-chosen classes[i]; the samples of a class are drawn without replacement."""
    chosen = rng.choice(classes, ways, replace=False)
    picks = np.stack([rng.choice(np.flatnonzero(labels == c), shots + queries, replace=False) for c in chosen])
    return picks[:, :shots], picks[:, shots:]


def nearest_mean_accuracy(features, support, query):
    """Fraction of the queries (ways, queries) whose feature is nearest to the mean of their own row's support
    (ways, shots) features. features (N, D); ties go to the lowest row."""
    means = features[support].mean(axis=1)  # (ways, D)
    queries = features[query.ravel()]  # (ways * queries, D)
    distances = ((queries[:, None, :] - means[None]) ** 2).sum(axis=-1)  # (ways * queries, ways)
    truth = np.repeat(np.arange(len(support)), query.shape[1])
    return float((distances.argmin(axis=1) == truth).mean())


def episode_accuracies(features, labels, classes, ways, shots, queries, episodes, seed=0):
    """The accuracy of each of `episodes` episodes (episodes,), drawn by a generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    return np.array([nearest_mean_accuracy(features, *draw_episode(rng, labels, classes, ways, shots, queries))
                     for _ in range(episodes)])


def interval(accuracies):
    """(mean, half-width of the 95% interval 1.96 * std / sqrt(n)) of the episode accuracies (population std)."""
    accuracies = np.asarray(accuracies, dtype=np.float64)
    return float(accuracies.mean()), float(1.96 * accuracies.std() / np.sqrt(len(accuracies)))
