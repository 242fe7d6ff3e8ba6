"""scripts/demo.sh end to end (a few samples, one epoch per stage, run twice), and the one-line errors of the
three entry points for a mistyped config path, a missing data file and --device cuda without CUDA."""
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT
from util.checkpoint import load_checkpoint
from util.summary import read_log

ROWS = {'linear probe after MAMP': 'linear', 'linear probe from random init': 'linear_random',
        'fine-tune after MAMP': 'finetune'}
NUM_TRAIN, NUM_TEST = 32, 16  # two batches of 16 (the batch size of config/demo/*.yaml)
STAGES = ('pretrain', 'linear', 'linear_random', 'finetune')


def start_demo(output_root, cwd, quick='0'):
    """scripts/demo.sh with a few samples and one epoch per stage, on CPU with one thread (QUICK=`quick`: the
    settings given here still win)."""
    env = {**os.environ, 'OUTPUT_ROOT': str(output_root), 'SEED': '1', 'DEVICE': 'cpu', 'NUM_TRAIN': str(NUM_TRAIN),
           'NUM_TEST': str(NUM_TEST), 'PRETRAIN_EPOCHS': '1', 'LINEAR_EPOCHS': '1', 'FINETUNE_EPOCHS': '1',
           'OMP_NUM_THREADS': '1', 'QUICK': quick}
    return subprocess.Popen(['bash', str(ROOT / 'scripts' / 'demo.sh')], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def table_rows(stdout):
    """{row name: (last top-1, last mean class accuracy, best top-1, its epoch, epochs)} from the table the demo
    prints."""
    rows = {}
    for line in stdout.splitlines():
        for name in ROWS:
            match = re.fullmatch(rf"{re.escape(name)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+) \((\d+)\)\s+(\d+)", line)
            if match:
                rows[name] = (float(match[1]), float(match[2]), float(match[3]), int(match[4]), int(match[5]))
    return rows


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """Two demo runs started together (usually in the same second) into one OUTPUT_ROOT, from another
    directory, the second with QUICK=1: (OUTPUT_ROOT, [stdout of the first, stdout of the second])."""
    root = tmp_path_factory.mktemp('demo') / 'out'
    cwd = tmp_path_factory.mktemp('cwd')
    runs = [start_demo(root, cwd), start_demo(root, cwd, quick='1')]
    outputs = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=900)
        assert run.returncode == 0, f"demo failed:\n{stdout[-3000:]}\n{stderr[-3000:]}"
        outputs.append(stdout)
    return root, outputs


def run_folder(stdout):
    return Path(re.search(r"writing to (.+)\n", stdout)[1])


@pytest.mark.slow
def test_demo_writes_checkpoints_logs_and_events(demo):
    _, outputs = demo
    for stdout in outputs:
        run = run_folder(stdout)
        assert (run / 'data' / 'NTU60_XSub.npz').is_file()
        checkpoint = load_checkpoint(run / 'pretrain' / 'checkpoint-last.pth')
        assert checkpoint['epoch'] == 0 and 'decoder_pred.weight' in checkpoint['model']
        for stage in STAGES:
            out = run / stage
            assert [entry['epoch'] for entry in map(json.loads, (out / 'log.txt').read_text().splitlines())] == [0]
            assert (out / 'checkpoint-last.pth').is_file()
            events = EventAccumulator(str(out))
            events.Reload()
            assert 'train/loss' in events.Tags()['scalars']
        assert f"tensorboard --logdir {run}\n" in stdout
        assert f"Pre-trained encoder: {run / 'pretrain' / 'checkpoint-last.pth'}\n" in stdout


@pytest.mark.slow
def test_demo_shows_each_stage_with_the_time_so_far_and_an_eta(demo):
    _, outputs = demo
    for stdout, mode in zip(outputs, ('', ' (quick: fewer samples and epochs)')):
        assert f"MAMP demo{mode}, seed 1: writing to " in stdout
        stages = re.findall(r"^== (\d)/8 .* \[(\d+) min (\d+) s(, about (\d+) min (\d+) s left)?\]$", stdout, re.M)
        assert [int(s[0]) for s in stages] == list(range(1, 9))
        elapsed = [60 * int(s[1]) + int(s[2]) for s in stages]
        assert elapsed == sorted(elapsed) and not stages[0][3] and all(s[3] for s in stages[1:])
        finished = re.search(r"Demo finished in (\d+) min (\d+) s", stdout)
        assert 60 * int(finished[1]) + int(finished[2]) >= elapsed[-1]


@pytest.mark.slow
def test_demo_measures_knn_and_draws_the_pictures(demo):
    _, outputs = demo
    for stdout in outputs:
        run = run_folder(stdout)
        pretrain_log = [json.loads(line) for line in (run / 'pretrain' / 'log.txt').read_text().splitlines()]
        assert 0 <= pretrain_log[-1]['knn_acc1'] <= 100
        for name, folder in (('MAMP encoder', 'knn'), ('random init encoder', 'knn_random')):
            result = json.loads((run / folder / 'knn.json').read_text())
            assert re.search(rf"\n{name}\s+{result['knn_acc1']:.2f}\s+{result['knn_acc5']:.2f}\s", stdout), stdout
        for picture in ('masking.png', 'tsne.png', 'confusion.png'):
            assert str(run / 'pictures' / picture) in stdout
            pixels = matplotlib.image.imread(run / 'pictures' / picture)
            assert min(pixels.shape[:2]) > 200 and pixels.std() > 0


@pytest.mark.slow
def test_demo_table_has_the_three_runs_from_their_logs(demo):
    _, outputs = demo
    for stdout in outputs:
        rows = table_rows(stdout)
        assert set(rows) == set(ROWS)
        for name, stage in ROWS.items():
            log = read_log(run_folder(stdout) / stage)
            assert log[0]['test_num_samples'] == NUM_TEST
            acc = pytest.approx(log[0]['test_acc1'], abs=0.005)
            assert rows[name] == (acc, pytest.approx(log[0]['test_mean_class_acc'], abs=0.005), acc, 0, 1)


@pytest.mark.slow
def test_two_runs_get_fresh_folders_and_the_same_numbers(demo):
    root, outputs = demo
    runs = sorted(root.iterdir())
    assert runs == sorted(run_folder(stdout) for stdout in outputs)
    assert len(runs) == 2 and all(re.fullmatch(r"\d{8}-\d{6}(-\d+)?", run.name) for run in runs)
    assert table_rows(outputs[0]) == table_rows(outputs[1])  # same SEED and settings (given: QUICK=1 keeps them)


ENTRY_POINTS = {'main_pretrain.py': 'pretrain', 'main_linprobe.py': 'linear', 'main_finetune.py': 'finetune'}


def mistakes(script, tmp_path):
    """{case: (command-line flags, texts the error line must hold)} of the user mistakes for `script`."""
    config = f'config/demo/{ENTRY_POINTS[script]}.yaml'
    typo = f'config/demo/{ENTRY_POINTS[script]}s.yaml'
    missing = tmp_path / 'missing.npz'
    return {'config': (['--config', typo], [f"config file {typo} not found", "the configs are under config/"]),
            'data': (['--config', config, '--data_path', str(missing)],
                     [f"data file {missing} not found", "prepare the data", "--data_path"]),
            'cuda': (['--config', config, '--device', 'cuda'],
                     ["--device cuda: CUDA is not available", "run with --device cpu"])}


@pytest.mark.parametrize('case', ['config', 'data', 'cuda'])
@pytest.mark.parametrize('script', ENTRY_POINTS)
def test_user_mistakes_stop_with_one_line(script, case, tmp_path, monkeypatch):
    """The entry point's __main__ raises SystemExit with one line saying what is wrong and what to do:
    Python prints it to stderr, without a traceback, and exits with status 1."""
    if case == 'cuda' and torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    flags, texts = mistakes(script, tmp_path)[case]
    monkeypatch.setattr(sys, 'argv', [script, *flags, '--output_dir', str(tmp_path / 'out')])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as excinfo:
        runpy.run_path(str(ROOT / script), run_name='__main__')
    message = excinfo.value.code
    assert isinstance(message, str) and message.startswith('error: ') and '\n' not in message
    assert all(text in message for text in texts), message


@pytest.mark.slow
def test_mistyped_config_exits_with_status_1_and_one_stderr_line(tmp_path):
    flags, texts = mistakes('main_finetune.py', tmp_path)['config']
    result = subprocess.run([sys.executable, 'main_finetune.py', *flags], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr.startswith('error: ') and result.stderr.count('\n') == 1
    assert all(text in result.stderr for text in texts), result.stderr
