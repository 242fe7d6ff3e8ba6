"""export.py: safetensors + config.json loaded by model_transformer.load_exported, and a .pt2 program that runs
in a process without this repository, both giving the checkpoint's logits."""
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import export
from model_transformer import load_exported
from train_fixtures import TINY_WINDOW, write_classifier_checkpoint
from util import lock
from util.actions import action_names

RUN_PT2 = """
import importlib.util, torch
assert importlib.util.find_spec('model_transformer') is None, 'the repository is importable'
program = torch.export.load('model.pt2')
x = torch.load('x.pt')
torch.save({'all': program.module()(x), 'one': program.module()(x[:1])}, 'y.pt')
"""


@pytest.mark.slow
@pytest.mark.parametrize('protocol', ['linprobe', 'finetune'])
def test_exported_models_give_the_checkpoint_logits(tmp_path, protocol):
    reference = write_classifier_checkpoint(tmp_path / 'checkpoint.pth', protocol)
    out = tmp_path / 'exported'
    export.main([str(tmp_path / 'checkpoint.pth'), '--out', str(out)])
    x = torch.randn(5, 3, TINY_WINDOW, 25, 2)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(load_exported(out)(x), expected, rtol=0, atol=1e-5)
    torch.save(x, out / 'x.pt')
    subprocess.run([sys.executable, '-I', '-c', RUN_PT2], cwd=out, check=True, timeout=300,
                   env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    y = torch.load(out / 'y.pt')
    torch.testing.assert_close(y['all'], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(y['one'], expected[:1], rtol=0, atol=1e-5)
    umask = os.umask(0)
    os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.suffix != '.pt'} == {
        name: 0o666 & ~umask for name in export.FILES}
    config = json.loads((out / 'config.json').read_text())
    assert config['dataset'] == 'ntu60' and config['actions'] == list(action_names('ntu60'))
    contract = (out / 'README.txt').read_text()
    assert f"x: (N, 3, {TINY_WINDOW}, 25, 2) float32" in contract and 'p_interval = [0.95]' in contract
    assert f"window_size = {TINY_WINDOW} frames" in contract and 'logits: (N, 60) float32' in contract


def test_a_failed_re_export_keeps_the_earlier_one_whole(tmp_path, monkeypatch):
    """A disk that fills while model.pt2 is written: one line, and --out still holds the earlier export, every
    file as it was (no mix of new weights and old program); no temporary folder is left."""
    out = tmp_path / 'exported'
    out.mkdir()
    for name in export.FILES:  # the earlier export's files (their content does not matter here)
        (out / name).write_bytes(f'earlier {name}'.encode())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_classifier_checkpoint(tmp_path / 'new.pth', 'finetune')
    write_bytes = Path.write_bytes

    def full_disk(path, data):
        if path.name == 'model.pt2':
            raise OSError(errno.ENOSPC, 'No space left on device')
        return write_bytes(path, data)
    monkeypatch.setattr(Path, 'write_bytes', full_disk)
    with pytest.raises(SystemExit) as stop:
        export.main([str(tmp_path / 'new.pth'), '--out', str(out)])
    assert re.fullmatch(rf"error: --out {out}: cannot write {tmp_path}/\.exported\.tmp{os.getpid()}\.\w{{8}}\.mamp/"
                        rf"model\.pt2: No space left on device \(free space, or write to another folder\); an earlier "
                        rf"export there is kept", str(stop.value))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    lock.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['exported', 'new.pth']


def test_pretraining_checkpoint_and_other_files_get_one_line(tmp_path):
    torch.save({'model': {'w': torch.zeros(1)}, 'args': {'model': 'model_mamp.MAMP', 'model_args': {}}},
               tmp_path / 'pre.pth')
    with pytest.raises(SystemExit, match='pre.pth: a pre-training checkpoint'):
        export.main([str(tmp_path / 'pre.pth'), '--out', str(tmp_path / 'out')])
    (tmp_path / 'notes.txt').write_text('no checkpoint')
    with pytest.raises(SystemExit, match='notes.txt: not a PyTorch checkpoint'):
        export.main([str(tmp_path / 'notes.txt'), '--out', str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()
