"""Temporal crop-resize, rotation, bone and motion modalities on batches of skeleton sequences.

Sequences are tensors (N, C=3, T, V=25, M=2) on any device, so that training can augment whole batches on
the GPU; the feeder uses the same arithmetic on crops in its file layout (`resample`, `resample_crops`)
and on one (C, T, V, M) sequence. They reproduce the published feeder bit for bit on CPU. Its resampling,
`F.interpolate(..., mode='bilinear', align_corners=False)` on a (1, 1, C*V*M, T) tensor, computes in
float32 the source position of output frame j as fma(scale, j + 0.5, -0.5) with scale = L / window (exact
in float64, then rounded) and the output as fma(w0, x[i0], w1 * x[i1]); its rotation is a float32 3 x 3
matrix product. On a GPU the last bit may differ.
"""
import functools

import numpy as np
import torch

from data.skeleton import PARENTS

MIN_CROP = 64  # the shortest random crop, in frames (published value)


def centre_crop(valid_len, p):
    """Remove int((1 - p) * valid / 2) frames at each end -> (offset, length).

    valid_len: a number or a float64 tensor (N,); the results are of the same kind (float-valued).
    """
    bias = (1 - p) * valid_len / 2 // 1
    return bias, valid_len - 2 * bias


def crop_length(valid_len, ratio):
    """min(max(floor(valid * ratio), 64), valid); numbers or float64 tensors (N,), float-valued."""
    length = valid_len * ratio // 1
    if torch.is_tensor(length):
        return torch.minimum(length.clamp(min=MIN_CROP), valid_len)
    return min(max(length, MIN_CROP), valid_len)


def random_crop(valid_len, p_interval, generator=None):
    """valid_len (N,) float64: ratio uniform in p_interval, length as `crop_length`, offset uniform
    among the valid positions -> (offsets, lengths) (N,) int64."""
    low, high = p_interval
    ratio = torch.rand(valid_len.shape, dtype=torch.float64, device=valid_len.device, generator=generator)
    lengths = crop_length(valid_len, ratio * (high - low) + low)
    draw = torch.rand(valid_len.shape, dtype=torch.float64, device=valid_len.device, generator=generator)
    offsets = (draw * (valid_len - lengths + 1)) // 1
    return offsets.long(), lengths.long()


def resample_weights(lengths, window):
    """Linear resampling of `lengths` (N,) frames to `window` frames, as bilinear with align_corners=False.

    Returns source indices i0, i1 (N, window) int64 and float32 weights w0, w1 (N, window): output frame
    j = w0 * x[i0] + w1 * x[i1]. A length equal to the window copies the frames.
    """
    j = torch.arange(window, device=lengths.device, dtype=torch.float64)
    scale = (lengths.float() / window).double()[:, None]
    src = (scale * (j + 0.5) - 0.5).float().clamp(min=0)
    last = (lengths - 1)[:, None]
    i0 = torch.minimum(src.floor().long(), last)
    w1 = (src - i0).clamp(0, 1)
    same = (lengths == window)[:, None]
    i0 = torch.where(same, j.long(), i0)
    w1 = torch.where(same, torch.zeros_like(w1), w1)
    i1 = i0 + (i0 < last).long()
    return i0, i1, 1 - w1, w1


def crop_resize(x, offsets, lengths, window):
    """x (N, C, T, V, M), crop [offset, offset + length) per sample -> (N, C, window, V, M)."""
    n, c, _, v, m = x.shape
    i0, i1, w0, w1 = resample_weights(lengths, window)

    def frames(idx):
        idx = (offsets[:, None] + idx)[:, None, :, None, None].expand(n, c, window, v, m)
        return torch.gather(x, 2, idx)

    return _lerp(frames(i0), frames(i1), w0[:, None, :, None, None], w1[:, None, :, None, None])


@functools.lru_cache(maxsize=16)
def _weights_by_length(window, longest):
    """[(i0 and i1 concatenated as a NumPy index, w0, w1) for lengths 1 .. longest], resampling to `window`."""
    i0, i1, w0, w1 = resample_weights(torch.arange(1, longest + 1), window)
    return list(zip(torch.cat([i0, i1], 1).numpy(), w0[..., None], w1[..., None]))


def _weights(window, length):
    """(i0 and i1 concatenated (2 window,) int64, w0 (window, 1), w1 (window, 1)) resampling `length` frames."""
    return _weights_by_length(window, max(512, 1 << (length - 1).bit_length()))[length - 1]


def resample(clip, window):
    """The feeder's resampling of one crop in file layout, a NumPy array (L, features) -> (window, features),
    with weights computed once. At this size the calls cost more than the arithmetic: NumPy's gather (which
    first copies a crop of a misaligned mapped file) and two zero-copy views for torch's interpolation take
    about 15% less time per sample than torch's gather and slices."""
    both, w0, w1 = _weights(window, len(clip))
    frames = clip.take(both, axis=0)  # frames i0, then frames i1
    return _lerp(torch.from_numpy(frames[:window]), torch.from_numpy(frames[window:]), w0, w1).numpy()


def resample_crops(frames, starts, lengths, window):
    """The crops frames[start : start + length] of a tensor frames (F, features), each resampled as `resample`
    does, in one gather and one interpolation -> (n, window, features). For a single crop `resample` is faster
    (no index arithmetic or stacking). The gather is torch's: NumPy's copies a misaligned array (a file mapped
    at an odd offset) whole before gathering from it."""
    picked = [_weights(window, length) for length in lengths]
    index = np.stack([both for both, _, _ in picked]) + np.asarray(starts)[:, None]  # per crop: i0, then i1
    x = frames.index_select(0, torch.from_numpy(index.ravel())).view(len(starts), 2 * window, -1)
    w0, w1 = (torch.stack([p[k] for p in picked]) for k in (1, 2))
    return _lerp(x[:, :window], x[:, window:], w0, w1)


def _lerp(x0, x1, w0, w1):
    """fma(w0, x0, w1 * x1) in float32: torch's addcmul fuses its multiply-add, as the interpolation does."""
    return torch.addcmul(x1 * w1, x0, w0)


@functools.lru_cache(maxsize=None)
def _parents(device):
    """The parent of each joint as an index tensor on `device`, copied there once."""
    return torch.tensor(PARENTS, device=device)


def rotation_rows(cos, sin):
    """Rows of R = Rz Ry Rx from the cosines and sines of the angles about x, y, z (numbers or arrays).

    Rx = [[1, 0, 0], [0, cx, sx], [0, -sx, cx]], Ry = [[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]],
    Rz = [[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]]. Written out, it rounds exactly like the published
    float32 matrix product: every entry of Rz Ry is one product, every entry of R one product or the
    sum of two.
    """
    cx, cy, cz = cos
    sx, sy, sz = sin
    rz_ry = ((cz * cy, sz, cz * -sy), (-sz * cy, cz, -sz * -sy), (sy, 0, cy))
    return [(a, b * cx + c * -sx, b * sx + c * cx) for a, b, c in rz_ry]


def rotation_matrix(angles):
    """angles (N, 3) about x, y, z -> R = Rz Ry Rx (N, 3, 3)."""
    rows = rotation_rows(angles.cos().unbind(1), angles.sin().unbind(1))
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def rotate(x, rot):
    """Apply rot (N, 3, 3) to the (x, y, z) of every joint of x (N, 3, T, V, M): one batched matrix product."""
    return torch.bmm(rot, x.reshape(len(x), 3, -1)).view(x.shape)


def random_angles(n, theta=0.3, device=None, generator=None):
    """(n, 3) angles uniform in [-theta, theta]."""
    return torch.empty(n, 3, device=device).uniform_(-theta, theta, generator=generator)


def to_bone(x):
    """Joint minus its parent (the NTU bone pairs) on x (..., T, V, M); the root's bone is 0."""
    return x - x.index_select(-2, _parents(x.device))


def to_velocity(x):
    """Next frame minus this frame on x (..., T, V, M); the last frame is 0."""
    return torch.cat([x[..., 1:, :, :] - x[..., :-1, :, :], torch.zeros_like(x[..., -1:, :, :])], dim=-3)


class BatchAugment:
    """The feeder's crop-resize, rotation and bone / motion modalities applied to a batch on its device.

    Use with a `Feeder(..., batch_augment=True)`, whose items are full-length sequences, their valid
    lengths and the crops and angles the feeder drew for them (`Feeder.draw`):
    `x = BatchAugment.from_feeder(dataset)(x, valid_len, offsets, lengths, angles)` is then the batch of
    the per-sample feeder with the same seeds. Without offsets, lengths and angles it draws its own on
    the device (another random stream than the feeder's).
    p_interval: one value (centre crop) or two (random crop ratio range), as in the feeder.
    """

    def __init__(self, p_interval, window_size, random_rot=False, bone=False, vel=False, theta=0.3):
        self.p_interval = tuple(float(p) for p in p_interval)
        if len(self.p_interval) not in (1, 2):
            raise ValueError(f"p_interval must have 1 or 2 values, got {p_interval}")
        if window_size <= 0:
            raise ValueError(f"window_size must be a positive number of frames for batches, got {window_size}")
        self.window_size = window_size
        self.random_rot, self.bone, self.vel, self.theta = random_rot, bone, vel, theta

    @classmethod
    def from_feeder(cls, feeder):
        return cls(feeder.p_interval, feeder.window_size, feeder.random_rot, feeder.bone, feeder.vel)

    def __call__(self, x, valid_len, offsets=None, lengths=None, angles=None, *, generator=None):
        """x (N, 3, T, 25, 2), valid_len (N,) int -> (N, 3, window_size, 25, 2) float32.

        offsets, lengths (N,) int: the crops; angles (N, 3): the rotations (used with random_rot). When
        not given they are drawn with `generator` on x's device.
        """
        if offsets is None:
            valid_len = valid_len.to(x.device, torch.float64)
            if len(self.p_interval) == 1:
                offsets, lengths = (t.long() for t in centre_crop(valid_len, self.p_interval[0]))
            else:
                offsets, lengths = random_crop(valid_len, self.p_interval, generator)
        offsets, lengths = (t.to(x.device, non_blocking=True) for t in (offsets, lengths))
        x = crop_resize(x.float(), offsets, lengths, self.window_size)
        if self.random_rot:
            if angles is None:
                angles = random_angles(len(x), self.theta, x.device, generator)
            x = rotate(x, rotation_matrix(angles.to(x.device, non_blocking=True)))
        if self.bone:
            x = to_bone(x)
        if self.vel:
            x = to_velocity(x)
        return x
