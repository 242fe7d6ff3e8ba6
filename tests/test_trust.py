"""Files are data, never code: a checkpoint, a config, an exported model or a score file that names a callable
(subprocess.run, torch.hub.load on a folder of code, a pickled object) runs nothing, at every tool; the tool
stops in one line naming the file, the key and what is allowed. Class names resolve only through
util/registry.py."""
import json
import os
import pathlib
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import ensemble
import export
import main_finetune
import main_knn
import main_linprobe
import main_pretrain
import predict
import visualize
from model_transformer import load_exported
from train_fixtures import (CHECKPOINT_READERS, ROOT, TINY_WINDOW, one_line_exit, one_thread, run_entry, train_entry,
                            write_classifier_checkpoint)
from util import config, registry


class Payload:
    """Unpickling this object touches `marker`: the classic code-running pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / 'code-ran'


@pytest.fixture
def hub(tmp_path, marker):
    """torch.hub.load arguments that run this folder's hubconf.py, which touches `marker`."""
    folder = tmp_path / 'hub'
    folder.mkdir()
    (folder / 'hubconf.py').write_text(f"import pathlib\n\n\ndef entry(*args, **kwargs):\n"
                                       f"    pathlib.Path({str(marker)!r}).touch()\n")
    return {'repo_or_dir': str(folder), 'model': 'entry', 'source': 'local'}


def test_the_payloads_run_code_when_trusted(tmp_path, marker, hub):
    """What the refusals below prevent: each payload, called or unpickled without restriction, runs code."""
    torch.hub.load(**hub, data_path='x.npz', split='test')
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
    marker.unlink()
    subprocess.run(['touch', str(marker)], check=True)
    assert marker.exists()


# ------------------------------------------------------------------------------------------------ checkpoints

def settings_attack(path, marker, hub, attack):
    """A classifier checkpoint whose stored settings name torch.hub.load as feeder or subprocess.run as model."""
    write_classifier_checkpoint(path, 'finetune')
    checkpoint = torch.load(path, weights_only=True)
    if attack == 'feeder':
        checkpoint['args'].update(feeder='torch.hub.load', val_feeder_args=hub)
    else:
        checkpoint['args'].update(model='subprocess.run', model_args={'args': ['touch', str(marker)]})
    torch.save(checkpoint, path)
    name = 'torch.hub.load' if attack == 'feeder' else 'subprocess.run'
    return f"{path}: args.{attack}: refused {attack} '{name}': not a registered {attack} class (allowed: "


@pytest.mark.parametrize('attack', ['feeder', 'model'])
@pytest.mark.parametrize('reader', ['predict.py --checkpoint', 'export.py'])
def test_checkpoint_settings_naming_a_callable_are_refused(work, tmp_path, marker, hub, reader, attack):
    path = tmp_path / 'hostile.pth'
    expected = settings_attack(path, marker, hub, attack)
    message = one_line_exit(lambda: CHECKPOINT_READERS[reader](work, path, tmp_path / 'out'))
    assert message.startswith(f"error: {expected}")
    assert not marker.exists() and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('reader', CHECKPOINT_READERS)
def test_a_pickled_payload_runs_nothing_at_any_tool(work, tmp_path, marker, reader):
    path = tmp_path / 'hostile.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'args': Payload(marker)}, path)
    message = one_line_exit(lambda: CHECKPOINT_READERS[reader](work, path, tmp_path / 'out'))
    assert f"{path}: refused to load: it holds Python objects we refuse to load (getattr" in message
    assert not marker.exists()


@pytest.mark.parametrize('wording', ['Unsupported global: GLOBAL getattr', 'a reworded refusal of a later torch'])
def test_the_refusal_does_not_depend_on_torchs_wording(tmp_path, marker, monkeypatch, wording):
    """The refusal is told by the file (a pickle naming a global outside the allow-list), not by the words of
    torch's error; an ordinary checkpoint whose unpickling fails the same way is not called malicious."""
    from util.checkpoint import load_checkpoint
    hostile, plain = tmp_path / 'hostile.pth', tmp_path / 'plain.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'args': Payload(marker)}, hostile)
    torch.save({'model': {'w': torch.zeros(1)}}, plain)

    def load(*args, **kwargs):
        raise pickle.UnpicklingError(wording)
    monkeypatch.setattr(torch, 'load', load)
    with pytest.raises(ValueError, match=r"hostile.pth: refused to load: it holds Python objects we refuse to load "
                                         r"\(getattr, pathlib.Path, pathlib.PosixPath\)"):
        load_checkpoint(hostile)
    with pytest.raises(ValueError, match='plain.pth: damaged checkpoint') as error:
        load_checkpoint(plain)
    assert 'refuse' not in str(error.value)
    assert not marker.exists()


def test_an_exported_model_naming_a_callable_is_refused(tmp_path, marker):
    (tmp_path / 'config.json').write_text(json.dumps({'model': 'subprocess.run',
                                                      'model_args': {'args': ['touch', str(marker)]}}))
    with pytest.raises(ValueError, match=r"config.json: model: refused model 'subprocess.run'"):
        load_exported(tmp_path)
    assert not marker.exists()


def test_a_score_file_with_a_pickled_object_runs_nothing(tmp_path, marker):
    path = tmp_path / 'scores.npz'
    np.savez(path, names=np.array([Payload(marker)], dtype=object), logits=np.zeros((1, 3), np.float32),
             labels=np.zeros(1, np.int64))
    message = one_line_exit(lambda: ensemble.main([str(path), str(path)]))
    assert message.startswith(f"error: {path}: not a score file") and 'Object arrays cannot be loaded' in message
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ configs

def hostile_config(work, tmp_path, marker, hub, base, protocol, attack):
    """The resolved config `base` of the work fixture with model subprocess.run (touching `marker`) or feeder
    torch.hub.load (running the hub folder's code); returns its path and the refusal expected."""
    values = {k: v for k, v in vars(config.parse_args(protocol, ['--config', str(work[base])])).items()
              if k not in config.NOT_IN_CONFIG}
    if attack == 'model':
        values.update(model='subprocess.run', model_args={'args': ['touch', str(marker)]})
    else:
        values['feeder'] = 'torch.hub.load'
        for key in ('train_feeder_args', 'val_feeder_args'):
            if key in values:
                values[key] = {**hub, 'data_path': str(work['npz'])}
    path = tmp_path / 'hostile.yaml'
    path.write_text(yaml.safe_dump(values))
    name = 'subprocess.run' if attack == 'model' else 'torch.hub.load'
    return path, f"error: {path}: {attack}: refused {attack} '{name}': not a registered {attack} class"


CONFIG_READERS = {  # name -> (config of the work fixture, protocol it is read as, run(config path, output folder))
    'main_pretrain.py': ('pretrain', 'pretrain', lambda c, o: main_pretrain.main(config.parse_args(
        'pretrain', ['--config', str(c), '--output_dir', str(o), '--device', 'cpu']))),
    'main_linprobe.py': ('linear', 'linprobe', lambda c, o: main_linprobe.main(config.parse_args(
        'linprobe', ['--config', str(c), '--output_dir', str(o), '--device', 'cpu']))),
    'main_finetune.py': ('finetune', 'finetune', lambda c, o: main_finetune.main(config.parse_args(
        'finetune', ['--config', str(c), '--output_dir', str(o), '--device', 'cpu']))),
    'main_knn.py': ('linear', 'knn', lambda c, o: main_knn.main(config.parse_args(
        'knn', ['--config', str(c), '--output_dir', str(o), '--device', 'cpu']))),
    'visualize.py masking': ('pretrain', 'pretrain', lambda c, o: visualize.main(
        ['masking', '--config', str(c), '--checkpoint', 'x.pth', '--out', str(o / 'm.png'), '--device', 'cpu'])),
    'visualize.py tsne': ('linear', 'knn', lambda c, o: visualize.main(
        ['tsne', '--config', str(c), '--encoder', 'random=', '--out', str(o / 't.png'), '--device', 'cpu'])),
    'visualize.py confusion': ('finetune', 'finetune', lambda c, o: visualize.main(
        ['confusion', '--config', str(c), '--checkpoint', 'x.pth', '--out', str(o / 'c.png'), '--device', 'cpu'])),
}


@pytest.mark.parametrize('attack', ['model', 'feeder'])
@pytest.mark.parametrize('reader', CONFIG_READERS)
def test_a_config_naming_a_callable_runs_nothing(work, tmp_path, marker, hub, reader, attack):
    base, protocol, run = CONFIG_READERS[reader]
    path, expected = hostile_config(work, tmp_path, marker, hub, base, protocol, attack)
    message = one_line_exit(lambda: run(path, tmp_path / 'out'))
    assert message.startswith(expected)
    assert not marker.exists() and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('protocol, main, base', [('linprobe', main_linprobe.main, 'linear'),
                                                  ('finetune', main_finetune.main, 'finetune')])
def test_a_pickled_payload_given_to_finetune_runs_nothing(work, tmp_path, marker, protocol, main, base):
    path = tmp_path / 'hostile.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'payload': Payload(marker)}, path)
    message = one_line_exit(lambda: train_entry(main, protocol, work, base, tmp_path / 'out', '--finetune', path))
    assert message.startswith(f"error: --finetune {path}: {path}: refused to load")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ as a user sees it

@pytest.mark.slow
def test_the_refusals_are_one_line_without_traceback(work, tmp_path, marker, hub):
    """The real processes: status 1, stderr one line."""
    hostile = tmp_path / 'hostile.pth'
    settings_attack(hostile, marker, hub, 'feeder')
    cfg, _ = hostile_config(work, tmp_path, marker, hub, 'pretrain', 'pretrain', 'model')
    payload = tmp_path / 'payload.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'payload': Payload(marker)}, payload)
    runs = [[sys.executable, str(ROOT / 'predict.py'), '--checkpoint', str(hostile), str(work['npz']), '--device',
             'cpu'],
            [sys.executable, str(ROOT / 'main_pretrain.py'), '--config', str(cfg), '--output_dir',
             str(tmp_path / 'out'), '--device', 'cpu']]
    for cmd in runs:
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-3000:]
        assert 'refused' in result.stderr
    result = run_entry('main_finetune.py', '--config', work['finetune'], '--output_dir', tmp_path / 'out',
                       '--resume', payload, check=False)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: --resume: {payload}: refused to load: it holds Python objects we refuse to load (getattr, "
        f"pathlib.Path, pathlib.PosixPath), which could run code (only tensors, plain containers and Namespace are read)"]
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ the registry

def test_the_registry_holds_every_class_the_configs_name():
    named = {(key, value) for path in (ROOT / 'config').glob('*/*.yaml')
             for key, value in yaml.safe_load(path.read_text()).items() if key in ('model', 'feeder')}
    assert named and all(value in registry.TABLES[key][1] for key, value in named)
    for key, value in named:
        assert registry.resolve(key, value, 'config').__name__ == value.rsplit('.', 1)[1]


def test_a_class_is_allowed_once_registered_in_code_and_only_as_its_kind(monkeypatch):
    allowed = re.escape(', '.join(registry.MODELS))
    with pytest.raises(ValueError, match=rf"^here: refused model 'collections.OrderedDict': not a registered model "
                                         rf"class \(allowed: {allowed}; a class of your own is added to MODELS in "
                                         rf"util/registry.py\)$"):
        registry.resolve('model', 'collections.OrderedDict', 'here')
    with pytest.raises(ValueError, match="refused feeder 'model_mamp.MAMP'"):
        registry.resolve('feeder', 'model_mamp.MAMP', 'here')
    monkeypatch.setitem(registry.MODELS, 'collections.OrderedDict', 'a researcher-added model')
    from collections import OrderedDict
    assert registry.resolve('model', 'collections.OrderedDict', 'here') is OrderedDict


# ------------------------------------------------------------------------------------------------ stored settings

def stored(path, tmp_path, change, **kwargs):
    """A tiny classifier checkpoint at `path` whose stored settings `change(args)` alters; returns str(path)."""
    write_classifier_checkpoint(path, 'finetune', **kwargs)
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint['args'])
    torch.save(checkpoint, path)
    return str(path)


def listing(folder):
    """{path: (kind, bytes)} of everything under `folder`: what a run must leave as it was."""
    return {p: ('fifo' if p.is_fifo() else 'dir' if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob('*'))
            if not p.name.endswith('.lock')}


def test_a_data_path_a_checkpoint_stores_is_never_opened(work, tmp_path):
    """The training and test data paths a checkpoint stores are pipes: predict.py (a real process; opening one
    would block forever) scores the data of its command line and ends; the pipes are as they were."""
    fifo = tmp_path / 'NTU60_XSub.npz'
    os.mkfifo(fifo)

    def to_fifo(args):
        args['val_feeder_args']['data_path'] = str(fifo)
        args['train_feeder_args'] = {'data_path': str(fifo)}
    checkpoint = stored(tmp_path / 'c.pth', tmp_path, to_fifo)
    before = listing(tmp_path)
    result = subprocess.run([sys.executable, str(ROOT / 'predict.py'), '--checkpoint', checkpoint, str(work['npz']),
                             '--device', 'cpu'], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"11 samples of {work['npz']}" in result.stdout
    assert listing(tmp_path) == before


@pytest.mark.parametrize('key, value', [('data_ratio', 0.1), ('exclude_actions', [1, 2]), ('debug', True)])
def test_stored_settings_that_choose_training_samples_are_not_applied(work, tmp_path, capsys, key, value):
    """Every test sample is scored (as with no such setting), and one note says what was not applied; the
    export leaves them out, with the same note."""
    checkpoint = stored(tmp_path / 'c.pth', tmp_path, lambda args: args['val_feeder_args'].update({key: value}))
    plain = stored(tmp_path / 'plain.pth', tmp_path, lambda args: None)
    with one_thread():
        names, logits, _ = predict.main(['--checkpoint', checkpoint, str(work['npz']), '--device', 'cpu'])
        all_names, all_logits, _ = predict.main(['--checkpoint', plain, str(work['npz']), '--device', 'cpu'])
    assert names == all_names and len(names) == 11
    np.testing.assert_array_equal(logits, all_logits)
    note = (f"note: {checkpoint} stores val_feeder_args {key}={value}, which choose training samples: not "
            f"applied, every input is scored")
    assert [line for line in capsys.readouterr().out.splitlines() if 'choose training samples' in line] == [note]
    export.main([checkpoint, '--out', str(tmp_path / 'exported')])
    assert (f"note: {checkpoint} stores val_feeder_args {key}={value}, which choose training samples: not part of "
            f"the export") in capsys.readouterr().out
    exported = json.loads((tmp_path / 'exported' / 'config.json').read_text())
    assert key not in exported['input'] and exported['input']['window_size'] == TINY_WINDOW


def peak_memory(*argv):
    """(peak resident memory in MB, exit status, stdout lines) of the process `argv` (python and its arguments)."""
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode); print(r.stderr, end='')")
    result = subprocess.run([sys.executable, '-c', measure, sys.executable, *map(str, argv)], capture_output=True,
                            text=True, cwd=ROOT, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    peak_kb, status = map(int, result.stdout.splitlines()[0].split())
    return peak_kb / 1024, status, result.stdout.splitlines()[1:]


def test_model_args_are_checked_against_the_weights_before_a_model_is_built(work, tmp_path):
    """A 43 MB checkpoint whose stored model_args describe a model of 1.2 GB (width 1024, 24 blocks): refused in
    one line, the process's peak resident memory (measured) less than 500 MB above what predict.py takes to
    start (its imports: torch alone takes about 520 MB with a CUDA build)."""
    def huge(args):
        args['model_args'].update(dim_feat=1024, depth=24, num_heads=16)
    path = tmp_path / 'huge.pth'
    checkpoint = stored(path, tmp_path, huge)
    padded = torch.load(path, weights_only=True)
    padded['model']['padding'] = torch.zeros((43_000_000 - path.stat().st_size) // 4)
    torch.save(padded, path)
    assert 42.9e6 < path.stat().st_size < 43.1e6
    start, status, _ = peak_memory(ROOT / 'predict.py', '--help')
    peak, status, stderr = peak_memory(ROOT / 'predict.py', '--checkpoint', checkpoint, work['npz'], '--device', 'cpu')
    assert status == 1 and stderr == [
        f"error: {checkpoint}: the stored model_args do not fit its weights: dim_feat is 1024, the weights have 32"]
    print(f"peak resident memory of predict.py: {start:.0f} MB to start, {peak:.0f} MB refusing the checkpoint")
    assert peak - start < 500


@pytest.mark.parametrize('change, expected', [
    (lambda c: c['input'].update(window_size=0), r"config.json: input.window_size: expected -1 \(keep the frames\) or "
                                                 r"an integer in \[1, 1000\], got 0"),
    (lambda c: c['input'].update(shuffle=True), r"config.json: unknown key 'shuffle' in input"),
    (lambda c: c['model_args'].update(depth=40), r"config.json: the stored model_args do not fit its weights: depth "
                                                 r"is 40, the weights have 1")])
def test_an_exported_config_goes_through_the_same_checks(tmp_path, change, expected):
    """config.json of an export (as export.py writes it) with a setting out of range, an unknown key or model_args
    that do not fit model.safetensors: one ValueError, before a model is built."""
    from safetensors.torch import save_file
    model = write_classifier_checkpoint(tmp_path / 'c.pth', 'finetune')
    settings = torch.load(tmp_path / 'c.pth', weights_only=True)['args']
    config_json = {'model': settings['model'], 'model_args': settings['model_args'],
                   'input': {'p_interval': [0.95], 'window_size': TINY_WINDOW, 'bone': False, 'vel': False}}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / 'model.safetensors')
    (tmp_path / 'config.json').write_text(json.dumps(config_json))
    assert load_exported(tmp_path).head.fc2.out_features == 60
    change(config_json)
    (tmp_path / 'config.json').write_text(json.dumps(config_json))
    with pytest.raises(ValueError, match=expected):
        load_exported(tmp_path)
