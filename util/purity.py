"""Neighbour purity of contrastive tuning: how often the nearest neighbour a sample finds in the queue shares its
action and, where the sample names say it, its camera. Labels and cameras are read for logging only.

Camera (view) of a sample name: NTU RGB+D names carry it as C### ('S001C002P003R002A013' -> 'C002'); PKU-MMD
names, '<video>-<view>_<instance>', as the view letter L, M or R ('0005-L_0' -> 'L').
"""
import re

import numpy as np
import torch

from util import dist

CAMERA_PATTERNS = (re.compile(r'S\d{3}(C\d{3})P\d{3}R\d{3}A\d{3}'), re.compile(r'^\d+-([LMR])_\d+$'))


def camera_of(name):
    """The camera of a sample name (see the module's docstring), or None when the name does not say."""
    for pattern in CAMERA_PATTERNS:
        match = pattern.search(name)
        if match:
            return match.group(1)
    return None


def cameras(names):
    """Camera numbers (N,) int64 of the sample names, numbered in order of first appearance; None when any name
    does not say its camera (synthetic data, 'train_7')."""
    found = [camera_of(n) for n in names]
    if not found or any(c is None for c in found):
        return None
    number = {}
    return np.array([number.setdefault(c, len(number)) for c in found], dtype=np.int64)


class Purity:
    """Counts over an epoch, on the device without reading back to the host until `result`: of the samples
    whose nearest neighbour came from the queue, how many share its action and its camera."""

    def __init__(self, labels, names, device):
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=device)
        camera = cameras(names)
        self.cameras = None if camera is None else torch.as_tensor(camera, device=device)
        self.counts = torch.zeros(3, dtype=torch.float64, device=device)  # neighbours, same action, same camera

    def add(self, ids, neighbour_ids):
        """ids (B,) dataset indices of a batch's samples, neighbour_ids (B,) those of their neighbours (-1: the
        sample itself was its positive, the queue being empty)."""
        found = neighbour_ids >= 0
        ids, nn = ids[found], neighbour_ids[found]
        same_camera = (self.cameras[ids] == self.cameras[nn]).sum() if self.cameras is not None else 0
        self.counts += torch.stack([torch.tensor(float(len(ids)), device=self.counts.device),
                                    (self.labels[ids] == self.labels[nn]).sum().double(),
                                    torch.as_tensor(same_camera, device=self.counts.device).double()])

    def result(self):
        """{'nn_action_purity', ['nn_camera_purity']} in % over every rank's samples (collective), {} without
        any neighbour from the queue."""
        total, action, camera = dist.all_reduce_sum(self.counts.clone()).tolist()
        if total == 0:
            return {}
        out = {'nn_action_purity': 100 * action / total}
        if self.cameras is not None:
            out['nn_camera_purity'] = 100 * camera / total
        return out
