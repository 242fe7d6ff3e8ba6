"""The official code's step and feeder, for the --published rows: explicit attention, AdamW with torch's default
kernel, and the published training feeder's __getitem__ (crop-resize by F.interpolate, a rotation per frame)."""
import inspect

import numpy as np
import torch
import torch.nn.functional as F

from bench.settings import CROP


def use_explicit_attention(model):
    """The published attention: softmax(Q K^T / sqrt(head_dim)) V with the attention matrix in memory
    (timm's non-fused path, the same math as the fused kernel)."""
    for module in model.modules():
        if hasattr(module, 'fused_attn'):
            module.fused_attn = False


def default_kernel(optimizer):
    """The same optimiser (groups, learning rates, betas, weight decays) with torch's default choice of kernel,
    as the official code builds it: on CPU the per-tensor loop, on CUDA foreach."""
    kernel = ('fused', 'foreach')
    options = set(inspect.signature(type(optimizer)).parameters).difference(kernel)
    defaults = {k: v for k, v in optimizer.defaults.items() if k in options}
    groups = [{k: v for k, v in g.items() if k not in kernel} for g in optimizer.param_groups]
    return type(optimizer)(groups, **defaults)


class PublishedFeeder:
    """The published train split as the official feeder holds it: x_train (N, T, 150) loaded into memory and
    viewed as (N, C, T, V, M)."""

    def __init__(self, path, window):
        with np.load(path) as npz:
            x = npz['x_train']
        n, t, _ = x.shape
        self.data, self.window = x.reshape(n, t, 2, 25, 3).transpose(0, 4, 1, 3, 2), window


def published_rotation(angles, frames):
    """The published _rot: Rz Ry Rx (frames, 3, 3) from the angles (3,) repeated for every frame, each
    matrix assembled from stacked rows."""
    rot = torch.stack([angles] * frames, dim=0)
    cos, sin = rot.cos(), rot.sin()
    zeros, ones = torch.zeros(frames, 1), torch.ones(frames, 1)
    rx = torch.cat((torch.stack((ones, zeros, zeros), dim=-1),
                    torch.stack((zeros, cos[:, 0:1], sin[:, 0:1]), dim=-1),
                    torch.stack((zeros, -sin[:, 0:1], cos[:, 0:1]), dim=-1)), dim=1)
    ry = torch.cat((torch.stack((cos[:, 1:2], zeros, -sin[:, 1:2]), dim=-1),
                    torch.stack((zeros, ones, zeros), dim=-1),
                    torch.stack((sin[:, 1:2], zeros, cos[:, 1:2]), dim=-1)), dim=1)
    rz = torch.cat((torch.stack((cos[:, 2:3], sin[:, 2:3], zeros), dim=-1),
                    torch.stack((-sin[:, 2:3], cos[:, 2:3], zeros), dim=-1),
                    torch.stack((zeros, zeros, ones), dim=-1)), dim=1)
    return rz.matmul(ry).matmul(rx)


def published_item(feeder, index):
    """The published Feeder.__getitem__ for training (p_interval CROP, random_rot): the sample copied out of
    the (C, T, V, M) view, its valid frames counted, a random crop resized by F.interpolate (bilinear) over
    (C*V*M, length), then a rotation matrix per frame in one batched matmul. NumPy 2 refuses the published
    int() of a size-1 array; it is read with [0] here."""
    data = np.array(feeder.data[index])
    C, T, V, M = data.shape
    valid = np.sum(data.sum(0).sum(-1).sum(-1) != 0)
    p = np.random.rand(1) * (CROP[1] - CROP[0]) + CROP[0]
    length = np.minimum(np.maximum(int(np.floor(valid * p)[0]), 64), valid)
    bias = np.random.randint(0, valid - length + 1)
    clip = torch.tensor(data[:, bias:bias + length], dtype=torch.float)
    clip = clip.permute(0, 2, 3, 1).contiguous().view(C * V * M, length)[None, None]
    clip = F.interpolate(clip, size=(C * V * M, feeder.window), mode='bilinear', align_corners=False).squeeze()
    data = clip.contiguous().view(C, V, M, feeder.window).permute(0, 3, 1, 2).contiguous().numpy()
    x = torch.from_numpy(data).permute(1, 0, 2, 3).contiguous().view(feeder.window, C, V * M)
    rot = published_rotation(torch.zeros(3).uniform_(-0.3, 0.3), feeder.window)
    return torch.matmul(rot, x).view(feeder.window, C, V, M).permute(1, 0, 2, 3).contiguous(), index
