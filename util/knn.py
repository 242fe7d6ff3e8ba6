"""Weighted k-nearest-neighbour evaluation of a frozen encoder, as common in self-supervised learning.

Features: the encoder's tokens mean-pooled over bodies, time and joints (what the linear probe's head sees,
before its BatchNorm and Linear), L2-normalised. Each test sample's k nearest training samples by cosine
similarity vote for their class with weight exp(similarity / t); top-1 / top-5 are the classes with the most
votes; the mean class accuracy is the mean of the per-class top-1. Train bank and test queries are both read
with the val feeder settings (centre crop, no rotation).
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from util import data, dist
from util.config import fail
from util.evaluation import accuracies, hit_sums, predict

CENTRE_CROP = {'p_interval': [0.95], 'random_rot': False}  # the val feeder settings of the published configs


class PooledFeatures(nn.Module):
    """(N, C, T, V, M) -> (N, dim_feat): the encoder's tokens averaged over bodies, time and joints (as
    LinearHead averages them), L2-normalised. `encoder` is any SkeletonEncoder (classifier or MAMP)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        tokens = self.encoder.encode(self.encoder.embed(x))  # (N*M, L, dim_feat)
        return F.normalize(tokens.reshape(x.shape[0], -1, tokens.shape[-1]).mean(dim=1), dim=1)


def knn_topk(bank, bank_labels, queries, num_classes, k=20, t=0.07, max_bytes=2 ** 28):
    """The 5 classes (or fewer) with the most votes for each query, best first: (Q, min(5, num_classes)) int64,
    and the peak bytes of the chunk buffers.

    bank (N, D) and queries (Q, D) are L2-normalised rows, bank_labels (N,). Queries go in chunks of R rows so
    that the (R, N) similarity block stays within `max_bytes`: never the whole (Q, N) matrix.
    """
    k = min(k, len(bank))
    rows = max(1, min(len(queries), max_bytes // (4 * len(bank))))
    top = []
    for start in range(0, len(queries), rows):
        sim = queries[start:start + rows] @ bank.T  # (R, N) cosine similarities
        top_sim, top_index = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes, device=sim.device)
        votes.scatter_add_(1, bank_labels[top_index], (top_sim / t).exp())
        top.append(votes.topk(min(5, num_classes), dim=1).indices)
    chunk_bytes = rows * (4 * len(bank) + 12 * k + 4 * num_classes)  # similarities, top-k values and indices, votes
    return torch.cat(top) if top else torch.empty(0, 5, dtype=torch.int64), chunk_bytes


def feeder_settings(args):
    """(config key, bank overrides, query overrides): a classification config's val_feeder_args on the train
    and the test split; a pre-training config has only train_feeder_args, read with the centre crop."""
    if hasattr(args, 'val_feeder_args'):
        return 'val_feeder_args', {'split': 'train'}, {'split': 'test'}
    return 'train_feeder_args', {**CENTRE_CROP, 'split': 'train'}, {**CENTRE_CROP, 'split': 'test'}


def bank_subset(num_samples, max_train, seed=0):
    """Sorted indices of the bank: all samples, or `max_train` of them drawn with a fixed seed (the same on
    every rank and in every epoch)."""
    if not max_train or max_train >= num_samples:
        return np.arange(num_samples)
    return np.sort(np.random.default_rng(seed).choice(num_samples, max_train, replace=False))


def neighbour_counts(args):
    """The k of --k as a list: main_knn.py takes several (evaluated from one pass of the encoder), the monitor one."""
    return args.knn_k if isinstance(args.knn_k, list) else [args.knn_k]


def loader_options(args):
    """DataLoader options of the feature passes (kNN, few-shot) from the run's settings."""
    return dict(batch_size=args.batch_size, num_workers=args.num_workers, pin_memory=args.pin_mem)


def features(encoder, dataset, index, device, options, amp='none'):
    """encoder(x) for dataset[index] (len(index), D) and the labels, every rank encoding a shard, all gathered.

    `encoder` maps a batch to features (e.g. PooledFeatures); `options` are DataLoader options (loader_options).
    """
    shard = index[dist.get_rank()::dist.get_world_size()].tolist()
    loader = DataLoader(dataset, sampler=shard, **options)
    feats, labels = predict(loader, encoder, device, argparse.Namespace(amp=amp, dist_eval=True))
    return feats[index], labels[index]


class KNN:
    """kNN evaluation on the data of a config: `KNN(args)(encoder, device)` -> {'acc1', 'acc5', 'mean_class_acc',
    'bank', 'time'} for the first k of --k (bank: the number of training samples in the bank); `accuracies`
    gives every k's.

    Each rank encodes its shard of the bank and of the queries; the features are gathered, each rank then
    classifies its shard of the queries and the hits are summed, so every test sample counts exactly once.
    """

    def __init__(self, args):
        key, bank_args, query_args = feeder_settings(args)
        self.bank = data.build_dataset(args, key, **bank_args)
        self.queries = data.build_dataset(args, key, **query_args)
        self.bank_index = bank_subset(len(self.bank), args.knn_max_train)
        self.ks, self.t, self.amp = self.neighbours(neighbour_counts(args)), args.knn_t, args.amp
        self.loader_options = loader_options(args)

    def neighbours(self, ks):
        """The k of --k, each at most the bank's size (a larger one with a note: every sample of the bank votes,
        and the result says so)."""
        size = len(self.bank_index)
        beyond = [k for k in ks if k > size]
        if not size or not beyond:
            return ks
        print(f"note: --k {' '.join(map(str, beyond))}: more neighbours than the {size} training samples in the bank "
              f"of {self.bank.data_path}; k = {size} is used instead")
        return list(dict.fromkeys(min(k, size) for k in ks))

    def __call__(self, encoder, device, name=None):
        """Evaluate `encoder` with the first k; the result line printed starts with `name` (default: kNN and the
        bank's size)."""
        by_k, elapsed = self.accuracies(encoder, device, name)
        return {**by_k[self.ks[0]], 'bank': len(self.bank_index), 'time': elapsed}

    @torch.no_grad()
    def accuracies(self, encoder, device, name=None):
        """({k: {'acc1', 'acc5', 'mean_class_acc'}} for every k of --k, from one pass of the encoder; the seconds
        it took)."""
        for dataset, split in ((self.bank, 'train'), (self.queries, 'test')):
            if not len(dataset):
                fail(f"{dataset.data_path}: the {split} split has no sample; kNN needs training samples for its "
                     f"bank and test samples to classify")
        start = time.time()
        encoder = PooledFeatures(encoder)
        bank, bank_labels = features(encoder, self.bank, self.bank_index, device, self.loader_options, self.amp)
        queries, labels = features(encoder, self.queries, np.arange(len(self.queries)), device,
                                   self.loader_options, self.amp)
        rank, world = dist.get_rank(), dist.get_world_size()
        mine = slice(rank, None, world)
        name = name or f"kNN (bank of {len(bank)} training samples)"
        by_k = {}
        for k in self.ks:
            top, chunk_bytes = knn_topk(bank.to(device), bank_labels.to(device), queries[mine].to(device),
                                        self.bank.num_classes, k, self.t)
            sums = hit_sums(top.to(device), labels[mine].to(device), self.bank.num_classes)
            stats = accuracies(dist.all_reduce_sum(sums).tolist())
            if k < 5:  # fewer than 5 neighbours vote for fewer than 5 classes: the rest of a top-5 is a tie
                stats['acc5'] = None
            by_k[k] = {key: stats[key] for key in ('acc1', 'acc5', 'mean_class_acc')}
            top5 = '' if stats['acc5'] is None else f", top-5 {stats['acc5']:.2f}%"
            print(f"{name} (k={k}, t={self.t}): {stats['num_samples']} test samples, features {bank.shape[1]}, "
                  f"peak extra memory of the similarity chunks {chunk_bytes / 2 ** 20:.2f} MB: top-1 "
                  f"{stats['acc1']:.2f}%{top5}, mean class {stats['mean_class_acc']:.2f}% "
                  f"after {time.time() - start:.1f} s")
        return by_k, time.time() - start
