"""The timed rows of dense features: one untrimmed recording detected (windows through the encoder, frame
probabilities, segments; engine_detect.detect_recording) at the full model size and at the real study's."""
import numpy as np
import torch

from bench.timing import time_calls, timing_fields
from engine_detect import detect_recording
from model_detect import FrameDetector
from util.config import load_yaml

TARGET_FRAMES = 9000  # a long PKU-MMD recording: 5 minutes at 30 fps
ENCODER_KEYS = ('dim_feat', 'depth', 'num_heads', 'mlp_ratio', 'num_frames', 'num_joints', 'patch_size',
                't_patch_size')


def real_study():
    """The encoder of config/real_pku/pretrain_mamp.yaml with the test windows of config/real_pku/detect.yaml."""
    encoder = load_yaml('config/real_pku/pretrain_mamp.yaml')['model_args']
    windows = load_yaml('config/real_pku/detect.yaml')['val_feeder_args']
    return {k: encoder[k] for k in ENCODER_KEYS}, windows['window'], windows['hop']


def dense_settings(size, quick):
    """[(name, encoder, window, hop, frames)]: the full size (FULL; its published hop 1 would take hours on a
    CPU, so a short stretch at hop 16, whose windows/s is the frames/s at hop 1) and the real study's on a
    whole 9000-frame recording; tiny ones with --quick."""
    full = {k: size[k] for k in ENCODER_KEYS}
    if quick:
        return [('quick model', full, 32, 4, 120), ('quick model, longer', full, 32, 8, 240)]
    encoder, window, hop = real_study()
    return [('full size', full, 64, 16, 64 + 16 * 19), ('real study size', encoder, window, hop, TARGET_FRAMES)]


def dense_row(name, encoder, window, hop, frames, device, precision, warmup, steps, memory):
    """One timed row: detect_recording on a random-walk recording of `frames` frames with both bodies."""
    torch.manual_seed(0)
    memory.reset()
    model = FrameDetector(**encoder).to(device).eval()
    rng = np.random.default_rng(0)
    recording = torch.from_numpy((rng.standard_normal((frames, 150)).cumsum(axis=0) * .02).astype(np.float32))
    amp = {'fp32': 'none'}.get(precision, precision)
    warm, times, cpu = time_calls(lambda: detect_recording(model, recording, window, hop, encoder['num_frames'],
                                                           device=device, amp=amp), warmup, steps, device)
    seconds = float(np.median(times))
    windows = len(range(0, frames, hop))
    return {'section': 'dense', 'variant': f"{name}, window {window} hop {hop}", 'precision': precision,
            'compile': False, 'encoder': encoder, 'window': window, 'hop': hop, 'frames': frames,
            'windows': windows, 'ms_per_step': 1e3 * seconds, 'frames_per_s': frames / seconds,
            'windows_per_s': windows / seconds, 'seconds_per_9000_frames': TARGET_FRAMES * seconds / frames,
            'peak_memory_mb': memory.peak_mb(), 'memory_kind': memory.kind,
            'warmup_ms': [1e3 * t for t in warm], **timing_fields(times, cpu)}


def dense_rows(size, quick, device, precision, warmup, steps, memory):
    return [dense_row(name, encoder, window, hop, frames, device, precision, warmup, steps, memory)
            for name, encoder, window, hop, frames in dense_settings(size, quick)]
