"""Dense features of untrimmed recordings, their cache, frame probabilities and the detection evaluation of
main_detect.py.

A recording's windows (feeder/untrimmed.py) are centred every `hop` frames; each window goes through the
encoder once, and every frame takes the pooled feature of the window whose centre is nearest to it. With
hop 1 this is the published test protocol (one window centred on each frame); a larger hop shares each
window among the hop frames nearest its centre instead of encoding a window per frame.
"""
import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from feeder.untrimmed import nearest_window, read_windows, window_centres, window_starts
from util import devices, dist, engine, figures, output
from util.actions import action_names
from util.detection import frame_accuracy, score, write_proposals
from util.segments import segments_from_probs

CACHE_VERSION = 1


@torch.inference_mode()
def dense_features(model, frames, window, hop, window_size, p_interval=1.0, device='cpu', amp='none',
                   batch_size=256):
    """Pooled features (W, dim_feat) float32 on the CPU of the windows of `window` frames centred every `hop`
    frames of a recording's frames (n, 150), n >= window; model.pooled reads each window once."""
    length = len(frames)
    starts = window_starts(window_centres(length, hop), length, window)
    device, dtype = torch.device(device), devices.AMP_DTYPES[amp]
    chunks = []
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for i in range(0, len(starts), batch_size):
            x = read_windows(frames, starts[i:i + batch_size], window, window_size, p_interval)
            chunks.append(model.pooled(x.to(device, non_blocking=True)).float().cpu())
    return torch.cat(chunks)


def split_features(model, recordings, window, hop, window_size, p_interval, device, amp, batch_size,
                   desc='features'):
    """(features (windows of all recordings, dim_feat), offsets (V + 1,)) of every recording of `recordings`,
    recording v's windows from row offsets[v]. Each process encodes the recordings rank, rank + world, ...;
    the features are then gathered on every process."""
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {}
    for v in engine.progress(range(rank, len(recordings), world), desc, unit='recording'):
        mine[v] = dense_features(model, recordings.frames(v), window, hop, window_size, p_interval, device, amp,
                                 batch_size)
    every = {}
    for part in dist.all_gather_objects(mine):
        every.update(part)
    counts = [len(every[v]) for v in range(len(recordings))]
    return torch.cat([every[v] for v in range(len(recordings))]), np.concatenate([[0], np.cumsum(counts)])


def encoder_digest(model):
    """sha256 of the encoder's weights (every tensor but the head's), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith('head.'):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(model, recordings, **settings):
    """The name of the cached features of `model`'s encoder on `recordings` with `settings` (window, hop,
    window_size, p_interval, amp): the weights' digest, the data file (path, size, modification time) and
    split, and the settings."""
    path = Path(recordings.data_path).resolve()
    stat = path.stat()
    what = {'version': CACHE_VERSION, 'encoder': encoder_digest(model), 'data': str(path), 'size': stat.st_size,
            'mtime_ns': stat.st_mtime_ns, 'split': recordings.split, **settings}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


def cached_features(model, recordings, cache_dir, window, hop, window_size, p_interval, device, amp, batch_size):
    """split_features of a frozen encoder, read from cache_dir/<cache_key>.npz when there, else computed and
    written there (by rank 0; whole or not at all)."""
    settings = dict(window=window, hop=hop, window_size=window_size, p_interval=p_interval, amp=amp)
    path = Path(cache_dir) / f"{recordings.split}_{cache_key(model, recordings, **settings)}.npz"
    if path.is_file():
        found = read_cached(path, len(recordings))
        if found is not None:
            print(f"Features of the {recordings.split} recordings (window {window}, hop {hop}) read from {path}")
            return found
    began = time.time()
    features, offsets = split_features(model, recordings, window, hop, window_size, p_interval, device, amp,
                                       batch_size, desc=f'{recordings.split} features (window {window})')
    if dist.is_main_process():
        output.make_dir(cache_dir, 'feature cache')
        output.atomic_write(path, lambda tmp: np.savez(tmp, features=features.numpy(), offsets=offsets))
        print(f"Features of the {recordings.split} recordings (window {window}, hop {hop}): {len(features)} windows "
              f"in {time.time() - began:.1f} s, cached in {path}")
    return features, offsets


def read_cached(path, num_recordings):
    """(features (W, dim) tensor, offsets (recordings + 1,)) of a feature cache file, or None, with a note, when it
    cannot be read or does not hold finite features of `num_recordings` recordings (then they are computed
    again and the file replaced)."""
    try:
        with np.load(path) as f:
            features, offsets = f['features'], f['offsets']
        if (features.ndim != 2 or offsets.shape != (num_recordings + 1,) or offsets[0] != 0
                or offsets[-1] != len(features) or (np.diff(offsets) < 0).any() or not np.isfinite(features).all()):
            raise ValueError("not the features of these recordings")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        print(f"note: the feature cache {path} cannot be used ({' '.join(str(e).split())[:80]}): computing it again")
        return None
    return torch.from_numpy(features), offsets


@torch.inference_mode()
def frame_probabilities(model, features, length, hop):
    """(length, classes) float64 softmax of the head over the window features (W, dim_feat) of a recording,
    each frame taking its nearest window's."""
    logits = model(features.to(next(model.parameters()).device)).cpu()
    probs = torch.softmax(logits.double(), dim=1)
    return probs[torch.from_numpy(nearest_window(np.arange(length), hop, len(features)))].numpy()


def detect_recording(model, frames, window, hop, window_size, p_interval=1.0, smooth=20, threshold=0.4,
                     device='cpu', amp='none', batch_size=256):
    """One recording's frames (n, 150) -> (frame probabilities (n, classes), segments [(label, start, end,
    score)]): dense_features, frame_probabilities, util.segments.segments_from_probs."""
    features = dense_features(model, frames, window, hop, window_size, p_interval, device, amp, batch_size)
    probs = frame_probabilities(model, features, len(frames), hop)
    return probs, segments_from_probs(probs, smooth=smooth, threshold=threshold)


def detect(args, model, feeder, features, offsets):
    """Frame probabilities -> segments (util.segments.segments_from_probs with --smooth, --threshold) of
    every recording -> OUT/proposals/<name>.txt. Returns the scores against the recordings' intervals,
    {'mAP_a': {'0.1': ..}, 'mAP_v': {..}, 'frame_acc': ..} in percent, and the segments {name: [...]}."""
    folder = output.make_dir(Path(args.output_dir) / 'proposals', 'proposals')
    recordings, proposals, true, predicted = feeder.recordings, {}, [], []
    model.eval()
    for v, name in enumerate(recordings.names):
        probs = frame_probabilities(model, features[offsets[v]:offsets[v + 1]], recordings.length(v), feeder.hop)
        proposals[name] = segments_from_probs(probs, smooth=args.smooth, threshold=args.threshold)
        write_proposals(folder / f"{name}.txt", proposals[name])
        true.append(recordings.labels(v))
        predicted.append(probs.argmax(1))
    stats = score(recordings.ground_truth(), proposals, thetas=tuple(args.thetas))
    stats['frame_acc'] = float(frame_accuracy(np.concatenate(true), np.concatenate(predicted)))
    return stats, proposals


def timeline_picture(recordings, proposals, v, epoch):
    """The true and detected segments of test recording v, with action names (util.figures.timeline_figure)."""
    name = recordings.names[v]
    truth = recordings.ground_truth()[name]
    title = f"{name} after epoch {epoch}: {len(truth)} true, {len(proposals[name])} detected action(s)"
    return figures.timeline_figure([('true', truth), ('detected', proposals[name])], action_names('pku'),
                                   recordings.length(v), title)


class DetectionEvaluation:
    """The runner's after_epoch hook of main_detect.py: after the last epoch, the detection of the test
    recordings (`detect`) with features from `test_features(model)`, written to OUT/detection.json, printed,
    added to the epoch's log.txt line and to TensorBoard (the scores, and the timeline of the first test
    recording). Rank 0 detects; the others wait for it."""

    def __init__(self, args, feeder, test_features):
        self.args, self.feeder, self.test_features = args, feeder, test_features

    def __call__(self, model, epoch, log_writer=None, **_):
        if epoch + 1 < self.args.epochs:
            return {}
        model.eval()
        features, offsets = self.test_features(model)
        stats = None
        if dist.is_main_process():
            stats, proposals = detect(self.args, model, self.feeder, features, offsets)
            path = Path(self.args.output_dir) / 'detection.json'
            output.atomic_write(path, lambda tmp: tmp.write_text(json.dumps(stats) + '\n'))
            a, v = stats['mAP_a'], stats['mAP_v']
            print(f"Detection on the {len(self.feeder.recordings)} test recordings after epoch {epoch}: mAP_a "
                  + ', '.join(f"{k} {a[k]:.2f}%" for k in a) + "; mAP_v "
                  + ', '.join(f"{k} {v[k]:.2f}%" for k in v) + f"; frame accuracy {stats['frame_acc']:.2f}% "
                  f"({path}, proposals in {Path(self.args.output_dir) / 'proposals'})")
            if log_writer is not None:
                step = epoch  # TensorBoard's step axis is the epoch
                for kind in ('mAP_a', 'mAP_v'):
                    for theta, value in stats[kind].items():
                        log_writer.add_scalar(f'test/{kind}@{theta}', value, step)
                log_writer.add_scalar('test/frame_acc', stats['frame_acc'], step)
                log_writer.add_figure('timeline', timeline_picture(self.feeder.recordings, proposals, 0, epoch), step)
        stats = dist.all_gather_objects(stats)[0]
        return {f'test_{k}': v for k, v in stats.items()}
