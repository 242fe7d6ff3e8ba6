"""export.py: safetensors + config.json loaded by model_transformer.load_exported, and a .pt2 program that runs
in a process without this repository, both giving the checkpoint's logits."""
import subprocess
import sys

import pytest
import torch

import export
from model_transformer import load_exported
from train_fixtures import TINY_WINDOW, write_classifier_checkpoint

RUN_PT2 = """
import importlib.util, torch
assert importlib.util.find_spec('model_transformer') is None, 'the repository is importable'
program = torch.export.load('model.pt2')
x = torch.load('x.pt')
torch.save({'all': program.module()(x), 'one': program.module()(x[:1])}, 'y.pt')
"""


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


def test_pretraining_checkpoint_and_other_files_get_one_line(tmp_path):
    torch.save({'model': {'w': torch.zeros(1)}, 'args': {'model': 'model_mamp.MAMP', 'model_args': {}}},
               tmp_path / 'pre.pth')
    with pytest.raises(SystemExit, match='pre.pth: a pre-training checkpoint'):
        export.main([str(tmp_path / 'pre.pth'), '--out', str(tmp_path / 'out')])
    (tmp_path / 'notes.txt').write_text('no checkpoint')
    with pytest.raises(SystemExit, match='notes.txt: not a PyTorch checkpoint'):
        export.main([str(tmp_path / 'notes.txt'), '--out', str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()
