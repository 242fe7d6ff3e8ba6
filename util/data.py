"""Datasets and loaders of the three entry points: feeders from the config, samplers for one or many ranks."""
import itertools
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler

from feeder.augment import BatchAugment
from util import dist
from util.config import fail, resolve_class


def build_dataset(args, key, **overrides):
    """The feeder of the config (`args.feeder`) built with `getattr(args, key)`, e.g. 'train_feeder_args',
    whose entries `overrides` replace (e.g. the split and the crop of the kNN bank).

    Fails with one line when the data file is missing or when the model's number of classes differs from
    the file's. With --gpu_aug the train feeder returns full-length sequences for `batch_augmenter`.
    """
    feeder_args = {**getattr(args, key), **overrides}
    feeder_args.setdefault('split', 'train' if key == 'train_feeder_args' else 'test')
    path = feeder_args.get('data_path')
    if path is None or not Path(path).is_file():
        fail(f"data file {path} not found ({key}.data_path in {args.config}): prepare the data as docs/data.md "
             f"says, or give its path with --data_path")
    if key == 'train_feeder_args' and args.gpu_aug and not overrides:
        feeder_args['batch_augment'] = True
    try:
        dataset = resolve_class('feeder', args.feeder, f"{args.config}: feeder")(**feeder_args)
    except (OSError, ValueError) as e:  # a file that is not the expected arrays
        fail(f"{key} in {args.config}: {e}")
    num_classes = args.model_args.get('num_classes')
    if num_classes is not None and num_classes != dataset.num_classes:
        fail(f"{args.config}: model_args.num_classes is {num_classes} but {path} has {dataset.num_classes} "
             f"classes (set model_args.num_classes: {dataset.num_classes})")
    window = feeder_args.get('window_size')
    if window not in (None, -1) and window != args.model_args.get('num_frames', window):
        fail(f"{args.config}: {key}.window_size is {window} but model_args.num_frames is "
             f"{args.model_args['num_frames']}; they must be equal")
    return dataset


def batch_augmenter(dataset):
    """The on-device augmentation matching a `batch_augment=True` feeder."""
    return BatchAugment.from_feeder(dataset)


class SeededItems(Dataset):
    """Runs every item of `dataset` with NumPy and torch seeded from (seed, epoch, index).

    Keys are (epoch, index) pairs from `EpochSampler`. The random crop and rotation of a sample then depend
    on the run's seed, the epoch and the sample only, not on the number of loader workers (persistent or
    not), the number of ranks or where a resumed run restarted. The caller's torch random state is kept.
    """

    def __init__(self, dataset, seed):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def seeded(self, epoch, index, fn):
        """fn() with NumPy and torch seeded from (seed, epoch, index), the caller's torch state kept."""
        seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            np.random.seed(seed)
            torch.default_generator.manual_seed(seed)
            return fn()

    def __getitem__(self, key):
        epoch, index = key
        return self.seeded(epoch, index, lambda: self.dataset[index])

    def __getitems__(self, keys):
        """A loader batch: each sample's draws seeded as in __getitem__, then the dataset's `items` for all of
        them (a feeder's batched augmentation); item by item for a dataset without `drawn` and `items`."""
        if not hasattr(self.dataset, 'items'):
            return [self[key] for key in keys]
        drawn = [self.seeded(epoch, index, lambda: self.dataset.drawn(index)) for epoch, index in keys]
        return self.dataset.items([index for _, index in keys], drawn)


class EpochSampler(Sampler):
    """Yields (epoch, index) for each index of a DistributedSampler; set_epoch() reaches both.

    set_epoch(epoch, skip) leaves out the first `skip` indices of the epoch's order (the samples of the
    steps a preempted run had done).
    """

    def __init__(self, sampler):
        self.sampler, self.epoch, self.skip = sampler, 0, 0

    def set_epoch(self, epoch, skip=0):
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, index) for index in itertools.islice(self.sampler, self.skip, None))

    def __len__(self):
        return len(self.sampler) - self.skip


class ShardSampler(Sampler):
    """Indices rank, rank + world, rank + 2 world, ... of the dataset: the shards cover it exactly once
    (DistributedSampler pads the last shard with repeated samples, which would count them twice)."""

    def __init__(self, num_samples, rank, world_size):
        self.indices = range(rank, num_samples, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def build_loaders(args, dataset_train, dataset_val=None):
    """Train loader (shuffled per epoch, every rank a distinct part, last partial batch dropped) and test
    loader (in order; with --dist_eval one shard per rank)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    options = dict(num_workers=args.num_workers, pin_memory=args.pin_mem,
                   persistent_workers=args.num_workers > 0)
    per_rank = len(dataset_train) // world
    if per_rank < args.batch_size:
        fail(f"the train set has {len(dataset_train)} samples: fewer than one batch of {args.batch_size} per "
             f"process ({world} processes); lower --batch_size")
    sampler = EpochSampler(DistributedSampler(dataset_train, num_replicas=world, rank=rank, shuffle=True,
                                              seed=args.seed))
    loader_train = DataLoader(SeededItems(dataset_train, args.seed), sampler=sampler, batch_size=args.batch_size,
                              drop_last=True, **options)
    if dataset_val is None:
        return loader_train, None
    sampler_val = (ShardSampler(len(dataset_val), rank, world) if args.dist_eval
                   else SequentialSampler(dataset_val))
    loader_val = DataLoader(dataset_val, sampler=sampler_val, batch_size=args.batch_size, drop_last=False,
                            **options)
    return loader_train, loader_val
