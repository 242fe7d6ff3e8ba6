"""Dataset over the published preprocessed NTU RGB+D / PKU-MMD arrays.

The `.npz` layout: `x_train`, `x_test` (samples, frames, 150) float32 with 150 = 2 bodies x 25 joints x
(x, y, z), one-hot `y_train`, `y_test`, and optionally `names_train`, `names_test`. Frames after a
sample's last valid frame are zero.

Memory mapping: `np.load` cannot memory-map inside an `.npz`, but the preprocessing writes it with
`np.savez` (members stored uncompressed), so each `.npy` member is a contiguous block of the archive.
The feeder maps that block in place with `np.memmap`: nothing is extracted or copied, start-up reads
only the headers, and DataLoader workers share the page cache. Compressed members are read into
memory once.
"""
import functools
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from feeder.augment import (centre_crop, crop_length, resample, resample_crops, rotate, rotation_matrix,
                            rotation_rows, to_bone, to_velocity)
from data.splits import digests
from util.actions import action_labels

NUM_CHANNELS = 150  # 2 bodies x 25 joints x 3 coordinates
SPLITS = ("train", "test")


def _member_memmap(path, info):
    """Memory-map an uncompressed `.npy` member of a zip archive, or return None if it cannot be."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None
        offset = f.tell()
    if dtype.hasobject or 0 in shape:
        return None
    if offset + int(np.prod(shape)) * dtype.itemsize > Path(path).stat().st_size:
        raise ValueError(f"{path}: {info.filename} is truncated (the file ends before its {shape} array does)")
    # copy-on-write: the file is never modified, and torch.from_numpy accepts the (writable) array
    return np.memmap(path, dtype=dtype, mode="c", shape=shape, order="F" if fortran else "C", offset=offset)


def load_npz(path, keys, mmap=True, check=True):
    """Arrays `keys` of an `.npz` (absent keys are left out), memory-mapped where the archive allows; with
    `check`, a ValueError naming the first non-finite value of a floating-point array (check_finite)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not an .npz file; give the preprocessed file (e.g. NTU60_XSub.npz)")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected a preprocessed .npz with x_train, y_train, "
                                f"x_test, y_test)")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file (a pipe or a device); give the preprocessed .npz file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from None
    if magic != b"PK\x03\x04" or not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive (expected the output of the preprocessing, "
                         f"e.g. NTU60_XSub.npz)")
    arrays = {}
    with zipfile.ZipFile(path) as zf:
        members = {name[:-4]: zf.getinfo(name) for name in zf.namelist() if name.endswith(".npy")}
    with np.load(path, allow_pickle=False) as npz:
        for key in keys:
            if key not in members:
                continue
            info = members[key]
            mapped = _member_memmap(path, info) if mmap and info.compress_type == zipfile.ZIP_STORED else None
            arrays[key] = mapped if mapped is not None else npz[key]
            if check:
                check_finite(path, key, arrays[key])
    return arrays, sorted(members)


def check_finite(path, key, array, block_bytes=2 ** 26):
    """ValueError naming `path`, `key` and the index of the first NaN or infinite value of a floating-point
    `array`; read in blocks of rows, so a memory-mapped array is never copied whole."""
    if array.dtype.kind != "f" or array.ndim == 0:
        return
    rows = max(1, block_bytes // max(1, array[:1].nbytes))
    for start in range(0, len(array), rows):
        bad = ~np.isfinite(array[start:start + rows])
        if bad.any():
            index = np.argwhere(bad)[0]
            index[0] += start
            raise ValueError(f"{path}: {key}[{', '.join(map(str, index))}] is {array[tuple(index)]}, not a finite "
                             f"number (the preprocessing writes none); prepare the file again with data.ntu / "
                             f"data.pku")


@functools.lru_cache(maxsize=1024)
def _layout_index(frames):
    """Flat indices that `to_layout` gathers, for `frames` frames."""
    return np.arange(frames * NUM_CHANNELS).reshape(frames, 2, 25, 3).transpose(3, 0, 2, 1).ravel()


def to_layout(x):
    """(..., T, 150) in file order (frame, body, joint, xyz) -> a new (..., 3, T, 25, 2) array (one gather)."""
    *lead, frames, _ = x.shape
    return x.reshape(*lead, -1).take(_layout_index(frames), axis=-1).reshape(*lead, 3, frames, 25, 2)


def rotated(data, angles):
    """A sequence (3, T, 25, 2) with its angles (3,), or a batch (n, 3, T, 25, 2) with a list of them, rotated by
    R = Rz Ry Rx built in float32 as published (`rotation_rows`) -> a new array. One sequence: its matrix from
    the angles' cosines and sines as NumPy scalars, then one matrix product; a batch: all matrices at once from
    the stacked angles in torch, then one batched product. Each form takes fewer calls for its case."""
    if data.ndim == 4:
        rot = np.array(rotation_rows(angles.cos().numpy(), angles.sin().numpy()), dtype=np.float32)
        return torch.mm(torch.from_numpy(rot), torch.from_numpy(data.reshape(3, -1))).numpy().reshape(data.shape)
    return rotate(torch.from_numpy(data), rotation_matrix(torch.stack(angles))).numpy()


def label_subset(labels, ratio, seed, balanced=False):
    """Sorted indices of a fraction `ratio` of the samples, drawn by a generator seeded with `seed`.

    Plain: int(N * ratio) samples (the published count, at least 1) uniformly without replacement.
    Balanced: the same number from every class present, round(int(N * ratio) / classes) (at least 1, at
    most the class size).
    """
    rng = np.random.default_rng(seed)
    total = max(1, int(len(labels) * ratio))
    if not balanced:
        return np.sort(rng.choice(len(labels), total, replace=False))
    classes = np.unique(labels)
    per_class = max(1, int(round(total / len(classes))))
    picks = [rng.choice(members, min(per_class, len(members)), replace=False)
             for members in (np.flatnonzero(labels == c) for c in classes)]
    return np.sort(np.concatenate(picks))


class Feeder(Dataset):
    """Samples of one split of a preprocessed `.npz`: `(data (3, window, 25, 2) float32, label, index)`.

    Valid frames: as many as there are frames whose values do not sum to 0 (counted once per sample),
    taken from the start, as published.
    p_interval: one value p (test): centre crop keeping the middle p of the valid frames; two values
        (train): crop ratio uniform in the interval, at least 64 frames, at a random offset. The crop is
        then resampled linearly to `window_size` frames (-1: keep the cropped frames).
    random_rot: one random rotation (angles uniform in [-0.3, 0.3] about x, y, z) per sequence.
    bone, vel: joint minus parent joint, next frame minus this frame (both: motion of the bones).
    debug: the first 100 samples only. data_ratio < 1: a subset for semi-supervised training, drawn
        with `subset_seed` (the same subset on every rank; the published code seeds it with the rank),
        class-balanced with `balanced_subset`. exclude_actions: action numbers (from 1) left out, e.g. the
        actions held out from pre-training and tuning for the few-shot evaluation (main_fewshot.py).
    batch_augment: items are `(data (3, T, 25, 2), label, index, valid_len, offset, length, angles (3,))`:
        the full-length sequence and the crop and rotation angles drawn for it (zero angles without
        random_rot); `feeder.augment.BatchAugment.from_feeder(dataset)` applies the crop, rotation, bone
        and vel to the batch on its device, giving the items of the per-sample path.
    random_choose, random_shift, random_move, normalization: accepted for the published configs; the
        published feeder does not use them either.
    Random draws (`draw`) follow the published order (one NumPy uniform for the crop ratio,
    np.random.randint for the offset, torch `uniform_` for the three angles), so the same seeds give the
    same samples, with or without batch_augment.
    """

    def __init__(self, data_path, split="train", p_interval=1, window_size=-1, random_rot=False, bone=False,
                 vel=False, debug=False, data_ratio=1.0, subset_seed=0, balanced_subset=False,
                 batch_augment=False, exclude_actions=(), random_choose=False, random_shift=False,
                 random_move=False, normalization=False, use_mmap=True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        p_interval = tuple(float(p) for p in np.atleast_1d(p_interval))
        if len(p_interval) not in (1, 2) or not all(0 < p <= 1 for p in p_interval):
            raise ValueError(f"p_interval must be one or two numbers in (0, 1], got {p_interval}")
        if not 0 < data_ratio <= 1:
            raise ValueError(f"data_ratio must be in (0, 1], got {data_ratio}")
        self.data_path, self.split = str(data_path), split
        self.p_interval, self.window_size = p_interval, window_size
        self.random_rot, self.bone, self.vel = random_rot, bone, vel
        self.batch_augment = batch_augment

        x_key, y_key, names_key = f"x_{split}", f"y_{split}", f"names_{split}"
        arrays, present = load_npz(data_path, (x_key, y_key, names_key), mmap=use_mmap)
        for key in (x_key, y_key):
            if key not in arrays:
                raise ValueError(f"{data_path}: no array {key} (arrays in the file: {', '.join(present) or 'none'})")
        data, onehot = arrays[x_key], np.asarray(arrays[y_key])
        if data.ndim != 3 or data.shape[2] != NUM_CHANNELS:
            raise ValueError(f"{data_path}: {x_key} has shape {data.shape}; expected (samples, frames, "
                             f"{NUM_CHANNELS}) = 2 bodies x 25 joints x 3 coordinates")
        if data.dtype != np.float32:
            raise ValueError(f"{data_path}: {x_key} has dtype {data.dtype}; expected float32")
        if onehot.ndim != 2 or len(onehot) != len(data):
            raise ValueError(f"{data_path}: {y_key} has shape {onehot.shape}; expected one-hot rows "
                             f"({len(data)}, classes) matching {x_key}")
        positives = (onehot > 0).sum(1)
        if len(onehot) and (positives != 1).any():
            row = int(np.flatnonzero(positives != 1)[0])
            raise ValueError(f"{data_path}: {y_key} row {row} has {positives[row]} positive entries; expected one-hot")
        names = arrays.get(names_key)
        if names is not None and len(names) != len(data):
            raise ValueError(f"{data_path}: {names_key} has {len(names)} entries for {len(data)} samples")
        names = [str(n) for n in names] if names is not None else [f"{split}_{i}" for i in range(len(data))]

        labels = onehot.argmax(1)
        rows = np.arange(min(len(data), 100) if debug else len(data))
        if exclude_actions:
            try:
                rows = rows[~np.isin(labels[rows], action_labels(exclude_actions, onehot.shape[1]))]
            except ValueError as e:
                raise ValueError(f"exclude_actions: {e} in {data_path}") from None
        if data_ratio < 1:
            rows = rows[label_subset(labels[rows], data_ratio, subset_seed, balanced_subset)]
        self._x_key, self._use_mmap = x_key, use_mmap
        self._attach(data)
        self.rows = rows
        self._ones = np.ones(NUM_CHANNELS, np.float32)
        self._valid = np.zeros(len(rows), np.int32)  # valid lengths, 0 until first computed
        self.label = labels[rows]
        self.sample_name = [names[r] for r in rows]
        self._num_classes = onehot.shape[1]

    def _attach(self, data):
        self.data = data.view(np.ndarray)  # (N, T, 150)
        self.frames = torch.from_numpy(self.data.reshape(-1, NUM_CHANNELS))  # (N * T, 150), the same memory

    def __getstate__(self):
        """Without the arrays: a worker started by 'spawn' maps the file again instead of receiving a copy."""
        return {k: v for k, v in self.__dict__.items() if k not in ("data", "frames")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._attach(load_npz(self.data_path, (self._x_key,), self._use_mmap, check=False)[0][self._x_key])

    def digests(self):
        """(len(self), 16) uint8: the digest of every sample the feeder reads (data.splits.digest), which a
        training run stores in its checkpoints so that predict.py can tell the inputs it was trained on."""
        return digests(self.data, self.rows)

    @property
    def num_classes(self):
        """Width of the one-hot labels in the file."""
        return self._num_classes

    def check_num_classes(self, num_classes):
        if num_classes != self.num_classes:
            raise ValueError(f"the model has {num_classes} classes but {self.data_path} has {self.num_classes}")

    def __len__(self):
        return len(self.rows)

    def valid_length(self, index):
        """Number of frames of sample `index` whose values do not sum to 0 (computed once, then kept)."""
        if not self._valid[index]:
            x = self.data[self.rows[index]]
            self._valid[index] = np.count_nonzero(x @ self._ones)
            if not self._valid[index]:
                raise ValueError(f"{self.data_path}: sample {self.sample_name[index]} ({self.split} row "
                                 f"{self.rows[index]}) has no non-zero frame")
        return int(self._valid[index])

    def draw(self, valid):
        """The crop (offset, length) of a sample with `valid` frames and its rotation angles (3,) float32
        (None without random_rot): random with two p_interval values, else the centre crop."""
        if len(self.p_interval) == 1:
            offset, length = (int(n) for n in centre_crop(valid, self.p_interval[0]))
        else:
            low, high = self.p_interval
            length = int(crop_length(valid, np.random.random_sample() * (high - low) + low))
            offset = np.random.randint(0, valid - length + 1)
        angles = torch.empty(3).uniform_(-0.3, 0.3) if self.random_rot else None
        return offset, length, angles

    def drawn(self, index):
        """(valid length, crop offset, crop length, angles or None) drawn for sample `index`, as published."""
        valid = self.valid_length(index)
        return (valid, *self.draw(valid))

    def __getitem__(self, index):
        return self.item(index, self.drawn(index))

    def __getitems__(self, indices):
        """The items of a DataLoader batch (torch's loader calls this instead of __getitem__): each sample's
        draws in turn, as __getitem__ makes them, then `items`."""
        return self.items(indices, [self.drawn(i) for i in indices])

    def item(self, index, drawn):
        """The item of sample `index` from its draws (valid, offset, length, angles)."""
        valid, offset, length, angles = drawn
        sample = self.data[self.rows[index]]  # (T, 150): T x (body, joint, xyz), a view of the file
        if self.batch_augment:
            angles = torch.zeros(3) if angles is None else angles
            return to_layout(sample), int(self.label[index]), index, valid, offset, length, angles
        clip = sample[offset:offset + length]
        if self.window_size > 0:
            clip = resample(clip, self.window_size)
        data = to_layout(clip)
        if angles is not None:
            data = rotated(data, angles)
        return self.modalities(data), int(self.label[index]), index

    def items(self, indices, drawn):
        """The items of samples `indices` from their draws: with a window, the crops of all of them resampled,
        laid out and rotated in a few operations over the batch (the same values as `item`)."""
        if self.batch_augment or self.window_size <= 0:
            return [self.item(i, d) for i, d in zip(indices, drawn)]
        starts = [int(self.rows[i]) * self.data.shape[1] + offset for i, (_, offset, _, _) in zip(indices, drawn)]
        data = to_layout(resample_crops(self.frames, starts, [length for _, _, length, _ in drawn],
                                        self.window_size).numpy())  # (n, 3, window, 25, 2)
        if self.random_rot:
            data = rotated(data, [angles for *_, angles in drawn])
        return [(self.modalities(d), int(self.label[i]), i) for d, i in zip(data, indices)]

    def modalities(self, data):
        """bone and vel of one sequence (3, T, 25, 2)."""
        if self.bone:
            data = to_bone(torch.from_numpy(data)).numpy()
        if self.vel:
            data = to_velocity(torch.from_numpy(data)).numpy()
        return data
