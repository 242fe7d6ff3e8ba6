"""Tiny data files and configs for the entry-point tests: real configs from config/ with a small model."""
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import export
import main_knn
import main_linprobe
import main_pretrain
import predict
import visualize
from conftest import ROOT
from model_transformer import SkeletonTransformer, add_probe_norm
from util import config
from util.checkpoint import load_checkpoint

FRAMES, CLASSES = 300, 60

# A few hundred thousand parameters: 24 frames (6 temporal patches x 25 joints = 150 tokens), width 32.
TINY_ENCODER = {'dim_feat': 32, 'depth': 1, 'num_heads': 2, 'num_frames': 24}
TINY_WINDOW = 24


def write_npz(path, num_train=16, num_test=12, num_labels=4, seed=0):
    """NTU-layout arrays: x (N, 300, 150) zero after each sample's valid frames, one-hot y with 60 columns.

    Each of `num_labels` classes moves its joints with its own frequency, so the classes can be told apart.
    """
    rng = np.random.default_rng(seed)

    def split(n):
        labels = np.arange(n) % num_labels
        x = np.zeros((n, FRAMES, 150), np.float32)
        for i, label in enumerate(labels):
            valid = rng.integers(70, FRAMES + 1)
            t = np.arange(valid)[:, None] / 30.0
            pose = rng.normal(0, 0.3, 150)
            bodies = 2 if i % 3 else 1
            x[i, :valid, :75 * bodies] = (pose + 0.2 * np.sin((label + 1) * t + pose))[:, :75 * bodies]
        y = np.eye(CLASSES, dtype=np.float32)[labels]
        return x, y

    x_train, y_train = split(num_train)
    x_test, y_test = split(num_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def write_config(path, base, data_path, **overrides):
    """A config extending config/<base> with the tiny model, `data_path`, no start checkpoint and `overrides`
    (nested dicts merge)."""
    model = dict(TINY_ENCODER)
    if 'pretrain' in base:
        model.update(decoder_dim_feat=32, decoder_depth=1)
    feeder = {'data_path': str(data_path), 'window_size': TINY_WINDOW}
    config = {'_base_': str(ROOT / 'config' / base), 'train_feeder_args': dict(feeder), 'model_args': model,
              'epochs': 1, 'warmup_epochs': 0, 'batch_size': 4, 'print_freq': 2}
    if 'pretrain' in base:
        config['knn_every'] = 0  # the published configs monitor kNN; the tests of the monitor turn it on
    else:
        config['val_feeder_args'] = dict(feeder)
        config['finetune'] = ''  # a random start unless --finetune names a tiny checkpoint
    for key, value in overrides.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    Path(path).write_text(yaml.safe_dump(config))
    return path


def run_entry(script, *args, nproc=None, check=True, timeout=300, env=None, torchrun=()):
    """Run an entry point as a subprocess on CPU (with torchrun and its options `torchrun` when nproc is
    given), with the variables `env` added to the environment; returns the result."""
    if nproc is None:
        cmd = [sys.executable, str(ROOT / script)]
    else:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
               *torchrun, str(ROOT / script)]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), **(env or {})}
    result = subprocess.run(cmd + ['--device', 'cpu', *map(str, args)], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def assert_same_training_state(a, b):
    """Checkpoints `a` and `b` hold the same epoch, weights and optimiser state, bit for bit."""
    a, b = load_checkpoint(a), load_checkpoint(b)
    assert a['epoch'] == b['epoch']
    assert a['model'].keys() == b['model'].keys()
    for key in a['model']:
        assert torch.equal(a['model'][key], b['model'][key]), key
    state_a, state_b = a['optimizer']['state'], b['optimizer']['state']
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        for name in state_a[key]:
            assert torch.equal(state_a[key][name], state_b[key][name]), (key, name)


def log_entries(output_dir):
    """Every JSON line of output_dir/log.txt (util.summary.read_log keeps those with a test accuracy)."""
    return [json.loads(line) for line in (Path(output_dir) / 'log.txt').read_text().splitlines()]


def scalar_tags(log_dir):
    """The TensorBoard events of log_dir and the set of their scalar tags."""
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events, set(events.Tags()['scalars'])


@contextlib.contextmanager
def one_thread():
    """One intra-op thread, as the subprocesses (OMP_NUM_THREADS=1): tiny models on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pretrain_in_process(work, out, *flags):
    """Two epochs of main_pretrain.py with work['pretrain'] in this process, a checkpoint and a loss every step."""
    argv = ['--config', str(work['pretrain']), '--output_dir', str(out), '--device', 'cpu', '--epochs', '2',
            '--save_every', '1', '--print_freq', '1', *map(str, flags)]
    with one_thread():
        return main_pretrain.main(config.parse_args('pretrain', argv))


def write_classifier_checkpoint(path, protocol, data_path='NTU60_XSub.npz', num_classes=60, **feeder):
    """A tiny classifier's checkpoint in the format of checkpoint.save_model (the settings a run stores under
    'args'), with random norm statistics and test feeder options `feeder` (e.g. bone=True); returns the model in
    eval mode."""
    torch.manual_seed(1)
    model_args = {**TINY_ENCODER, 'num_classes': num_classes, 'protocol': protocol}
    model = SkeletonTransformer(**model_args)
    if protocol == 'linprobe':
        add_probe_norm(model)
    for name, buffer in model.named_buffers():
        if 'running' in name:
            buffer.copy_(torch.rand_like(buffer) + 0.5)
    val_feeder_args = {'data_path': str(data_path), 'split': 'test', 'p_interval': [0.95], 'window_size': TINY_WINDOW,
                       'bone': False, 'vel': False, **feeder}
    args = {'model': 'model_transformer.SkeletonTransformer', 'model_args': model_args,
            'feeder': 'feeder.feeder_ntu.Feeder', 'val_feeder_args': val_feeder_args}
    torch.save({'model': model.state_dict(), 'optimizer': {}, 'epoch': 0, 'args': args}, path)
    return model.eval()


def train_entry(main, protocol, work, config_key, out, *flags):
    return main(config.parse_args(protocol, ['--config', str(work[config_key]), '--output_dir', str(out),
                                             '--device', 'cpu', *map(str, flags)]))


# Every way a user gives a checkpoint to a tool: name -> reader(work, checkpoint path, output folder), run in
# this process. `work` is the fixture of tests/conftest.py.
CHECKPOINT_READERS = {
    'main_pretrain.py --resume': lambda w, p, o: train_entry(main_pretrain.main, 'pretrain', w, 'pretrain', o,
                                                             '--resume', p),
    'main_linprobe.py --finetune': lambda w, p, o: train_entry(main_linprobe.main, 'linprobe', w, 'linear', o,
                                                               '--finetune', p),
    'main_knn.py --finetune': lambda w, p, o: train_entry(main_knn.main, 'knn', w, 'linear', o, '--finetune', p),
    'predict.py --checkpoint': lambda w, p, o: predict.main(['--checkpoint', str(p), str(w['npz']), '--device',
                                                             'cpu']),
    'export.py': lambda w, p, o: export.main([str(p), '--out', str(o)]),
    'visualize.py masking --checkpoint': lambda w, p, o: visualize.main([
        'masking', '--config', str(w['pretrain']), '--checkpoint', str(p), '--out', str(o / 'm.png'), '--device',
        'cpu']),
    'visualize.py confusion --checkpoint': lambda w, p, o: visualize.main([
        'confusion', '--config', str(w['finetune']), '--checkpoint', str(p), '--out', str(o / 'c.png'),
        '--device', 'cpu']),
    'visualize.py tsne --encoder': lambda w, p, o: visualize.main([
        'tsne', '--config', str(w['linear']), '--encoder', f'x={p}', '--out', str(o / 't.png'), '--device', 'cpu']),
}


def one_line_exit(call):
    """The message of the SystemExit that call() ends with: one line, 'error: ...' (as util.config.fail)."""
    with pytest.raises(SystemExit) as stop:
        call()
    message = str(stop.value.code)
    assert message.startswith('error: ') and '\n' not in message, message
    return message
