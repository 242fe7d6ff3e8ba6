"""Untrimmed recordings for temporal action detection: the file data.pku writes beside the clip arrays
(PKUv1_XSub_untrimmed.npz), the windows an encoder reads from a recording, and the training windows.

The file holds, for each split s: `x_s` (F, 150) float32, the frames of the split's recordings one after the
other (2 bodies x 25 joints x xyz, uncentred, as the clip arrays hold them); `offsets_s` (V + 1,) int64, where
each recording starts in x_s; `frame_labels_s` (F,) int64, 0 for background and k for action number k;
`names_s` (V,) str; `intervals_s` (M, 4) int64 rows (recording index, label, start, end), frames [start, end).

A window of `window` raw frames centred on frame t starts at t - window // 2, moved inside the recording at its
ends (the published sliding window). It is read like a test clip of the clip feeder: the centre crop of
`p_interval` (feeder.augment.centre_crop), then the linear resampling to the model's `window_size` frames
(feeder.augment.resample_crops). A recording shorter than a window is refused rather than stretched: the
encoder would see its motion at another speed than in every training window.
"""
import numpy as np
import torch
from torch.utils.data import Dataset

from data.pku import NUM_CLASSES
from feeder.augment import centre_crop, resample_crops
from feeder.feeder_ntu import NUM_CHANNELS, load_npz, to_layout

SPLITS = ('train', 'test')
KEYS = ('x', 'offsets', 'frame_labels', 'names', 'intervals')


def window_centres(length, hop):
    """Centre frames 0, hop, 2 hop, ... of the windows read from a recording of `length` frames: every frame
    is within hop / 2 of one, but for the last few, whose own window (moved inside the recording) is the last
    one's when hop <= window / 2."""
    return np.arange(0, length, hop)


def window_starts(centres, length, window):
    """First frames (W,) of the windows of `window` frames centred on `centres`, moved inside [0, length)."""
    return np.clip(np.asarray(centres) - window // 2, 0, length - window)


def nearest_window(frames, hop, count):
    """Index of the window of centre nearest to each frame (the later one on a tie), for windows every `hop`
    frames from frame 0; `count` windows."""
    return np.minimum((np.asarray(frames) + hop // 2) // hop, count - 1)


class Recordings:
    """One split of an untrimmed file: `frames(v)` (n, 150), `labels(v)` (n,), `names`, `intervals`."""

    def __init__(self, data_path, split, use_mmap=True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.data_path, self.split = str(data_path), split
        keys = [f"{k}_{split}" for k in KEYS]
        arrays, present = load_npz(data_path, keys, mmap=use_mmap)
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise ValueError(f"{data_path}: no array {missing[0]} (arrays in the file: {', '.join(present) or 'none'};"
                             f" expected the untrimmed file of python -m data.pku)")
        x, offsets, labels, names, intervals = (arrays[k] for k in keys)
        where = f"{data_path}: "
        if x.ndim != 2 or x.shape[1] != NUM_CHANNELS or x.dtype != np.float32:
            raise ValueError(f"{where}{keys[0]} is {x.dtype} {x.shape}; expected float32 (frames, {NUM_CHANNELS})")
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(x) or (
                np.diff(offsets) < 0).any():
            raise ValueError(f"{where}{keys[1]} must rise from 0 to the {len(x)} frames of {keys[0]}")
        if len(names) != len(offsets) - 1:
            raise ValueError(f"{where}{keys[3]} has {len(names)} names for {len(offsets) - 1} recordings")
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(x),):
            raise ValueError(f"{where}{keys[2]} has shape {labels.shape}; expected ({len(x)},), one per frame")
        bad = np.flatnonzero((labels < 0) | (labels > NUM_CLASSES))
        if bad.size:
            raise ValueError(f"{where}{keys[2]}[{bad[0]}] is {labels[bad[0]]}; expected 0 (background) to "
                             f"{NUM_CLASSES} (PKU-MMD action numbers)")
        intervals = np.asarray(intervals, dtype=np.int64).reshape(-1, 4)
        self.x, self.offsets, self.frame_labels, self.intervals = x, offsets, labels, intervals
        self.names = [str(n) for n in names]
        self.tensor = torch.from_numpy(np.asarray(x).view(np.ndarray))  # (F, 150), the file's memory

    def __len__(self):
        return len(self.names)

    def length(self, v):
        return int(self.offsets[v + 1] - self.offsets[v])

    def frames(self, v):
        """(n, 150) frames of recording v (a view)."""
        return self.tensor[self.offsets[v]:self.offsets[v + 1]]

    def labels(self, v):
        """(n,) frame labels of recording v."""
        return self.frame_labels[self.offsets[v]:self.offsets[v + 1]]

    def ground_truth(self):
        """{name: [(label, start, end), ...]} of the labelled instances."""
        truth = {name: [] for name in self.names}
        for v, label, start, end in self.intervals.tolist():
            truth[self.names[v]].append((label, start, end))
        return truth

    def check_lengths(self, window):
        """Stop (ValueError) on a recording shorter than `window` frames."""
        lengths = np.diff(self.offsets)
        short = np.flatnonzero(lengths < window)
        if short.size:
            v = int(short[0])
            raise ValueError(f"{self.data_path}: recording {self.names[v]} ({self.split}) has {lengths[v]} frames, "
                             f"fewer than one window of {window}: leave it out, or lower the window")


def read_windows(frames, starts, window, window_size, p_interval=1.0):
    """The windows of `window` frames starting at `starts` (W,) in a recording's frames (n, 150), read as the
    clip feeder reads a test clip -> (W, 3, window_size, 25, 2) float32."""
    offset, length = (int(v) for v in centre_crop(window, p_interval))
    data = resample_crops(frames, np.asarray(starts) + offset, [length] * len(starts), window_size)
    return torch.from_numpy(to_layout(data.numpy()))


class UntrimmedFeeder(Dataset):
    """Training windows of the published protocol over one split of an untrimmed file: an epoch draws
    `samples_per_recording` windows per recording, each of a random recording, centre frame and length among
    `train_windows` (16 d raw frames for d in 3, 4, 5), labelled with its centre frame's label. Items:
    (data (3, window_size, 25, 2), label, index).

    window, hop: the test windows, `window` raw frames every `hop` frames (the published: 64, every frame).
    p_interval: the centre crop of each window before resampling (1: the whole window).
    """

    def __init__(self, data_path, split='train', window_size=120, train_windows=(48, 64, 80),
                 samples_per_recording=16, window=64, hop=1, p_interval=1.0, use_mmap=True):
        sizes = [window] + list(train_windows)
        if not train_windows:
            raise ValueError("train_windows: expected at least one window length")
        if not all(isinstance(w, int) and w >= 1 for w in sizes + [hop, samples_per_recording, window_size]):
            raise ValueError(f"window {window}, train_windows {list(train_windows)}, hop {hop}, window_size "
                             f"{window_size} and samples_per_recording {samples_per_recording}: expected integers "
                             f">= 1")
        if not 0 < float(p_interval) <= 1:
            raise ValueError(f"p_interval must be a number in (0, 1], got {p_interval}")
        self.recordings = Recordings(data_path, split, use_mmap)
        if not len(self.recordings):
            raise ValueError(f"{data_path}: no recording in the {split} split")
        self.recordings.check_lengths(max(train_windows) if split == 'train' else window)
        self.data_path, self.split, self.window_size = str(data_path), split, window_size
        self.train_windows, self.samples_per_recording = tuple(train_windows), samples_per_recording
        self.window, self.hop, self.p_interval = window, hop, float(p_interval)
        self.num_classes = NUM_CLASSES + 1

    def __len__(self):
        return len(self.recordings) * self.samples_per_recording

    def draw(self, index):
        """(recording, centre frame, window length) of item `index`: the recording index % V, a centre frame
        uniform among its frames, a length uniform among train_windows (the global NumPy generator)."""
        v = index % len(self.recordings)
        centre = np.random.randint(self.recordings.length(v))
        return v, centre, self.train_windows[np.random.randint(len(self.train_windows))]

    def label(self, v, start, window):
        """The label of the centre frame of the window [start, start + window) of recording v."""
        return int(self.recordings.labels(v)[start + window // 2])

    def __getitem__(self, index):
        v, centre, window = self.draw(index)
        start = int(window_starts(centre, self.recordings.length(v), window))
        data = read_windows(self.recordings.frames(v), [start], window, self.window_size, self.p_interval)[0]
        return data.numpy(), self.label(v, start, window), index


class CachedWindows(Dataset):
    """The training windows of `feeder` (an UntrimmedFeeder) as a frozen encoder's features: the window drawn
    as feeder.draw draws it is replaced by the window of the dense grid (every feeder.hop frames) of the same
    length whose centre is nearest, and the item is its cached feature (dim_feat,), its centre frame's label
    and the index. features[w]: (windows of all recordings, dim_feat) for window length w, recording v's from
    row offsets[w][v] (engine_detect.split_features)."""

    def __init__(self, feeder, features, offsets):
        self.feeder, self.features, self.offsets = feeder, features, offsets
        self.num_classes = feeder.num_classes

    def __len__(self):
        return len(self.feeder)

    def __getitem__(self, index):
        v, centre, window = self.feeder.draw(index)
        length, hop = self.feeder.recordings.length(v), self.feeder.hop
        count = self.offsets[window][v + 1] - self.offsets[window][v]
        w = int(nearest_window(centre, hop, count))
        start = int(window_starts(w * hop, length, window))
        return self.features[window][self.offsets[window][v] + w], self.feeder.label(v, start, window), index
