"""Several processes: --dist_eval with differing BatchNorm statistics, resuming across ranks, fp16 resume,
the device of a process (all on CPU, gloo)."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from train_fixtures import log_entries, pretrain_in_process
from util import dist
from util.checkpoint import load_checkpoint


@pytest.mark.slow
def test_dist_eval_reports_rank_0s_model_on_the_whole_test_set(tmp_path):
    """2 gloo ranks with different BatchNorm statistics: the accuracy on shards is rank 0's model alone. The mean
    class accuracy, alone and summed per class over the shards, is util.scores' on predict()'s logits."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
           str(ROOT / 'tests' / 'dist_eval_worker.py'), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1))
    assert rank1['alone']['loss'] != pytest.approx(rank0['alone']['loss'], rel=1e-3)  # the models do differ
    for rank in (rank0, rank1):
        assert rank['dist_eval']['num_samples'] == rank0['alone']['num_samples'] == 11
        assert rank['dist_eval']['acc1'] == rank0['alone']['acc1']
        assert rank['dist_eval']['acc5'] == rank0['alone']['acc5']
        assert rank['dist_eval']['loss'] == pytest.approx(rank0['alone']['loss'], rel=1e-6)
        assert rank['alone']['mean_class_acc'] == pytest.approx(rank['predicted']['mean_class_acc'], abs=1e-9)
        assert rank['alone']['acc1'] == pytest.approx(rank['predicted']['acc1'], abs=1e-9)
        assert rank['dist_eval']['mean_class_acc'] == pytest.approx(rank0['predicted']['mean_class_acc'], abs=1e-9)
    assert rank0['alone']['mean_class_acc'] != pytest.approx(rank0['alone']['acc1'])  # the classes weigh alike


@pytest.fixture(scope='module')
def fp32_run(work):
    """One pre-training epoch without fp16: its checkpoint has an empty loss-scaler state."""
    out = work['root'] / 'fp32_one_epoch'
    pretrain_in_process(work, out, '--epochs', '1')
    assert load_checkpoint(out / 'checkpoint-0.pth')['scaler'] == {}
    return out


def test_fp16_resumes_from_a_checkpoint_saved_without_fp16(work, fp32_run, capsys):
    out = work['root'] / 'fp16_resumed'
    pretrain_in_process(work, out, '--amp', 'fp16', '--resume', fp32_run / 'checkpoint-0.pth')
    assert "no fp16 loss scale" in capsys.readouterr().out
    assert [entry['epoch'] for entry in log_entries(out)] == [1]
    assert 0 < load_checkpoint(out / 'checkpoint-last.pth')['scaler']['scale'] <= 2 ** 16


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# One DistributedDataParallel step, then the process group closed and the process ended by SystemExit, as a
# preempted run ends, with automatic collection off. The first atexit handler runs last: it counts the garbage
# that the interpreter's shutdown would otherwise be left to free.
LEFT_AT_EXIT = """
import atexit, gc
gc.disable()
atexit.register(lambda: print('left for shutdown:', gc.collect(), flush=True))
import torch
from torch.nn.parallel import DistributedDataParallel
from util import dist
dist.init_distributed_mode('cpu')
model = DistributedDataParallel(torch.nn.Linear(4, 4))
model(torch.randn(2, 4)).sum().backward()
del model
dist.cleanup()
raise SystemExit(0)
"""


def test_a_distributed_run_leaves_no_garbage_to_the_interpreters_shutdown():
    """A DDP step leaves reference cycles (thousands of objects). Freed during shutdown, they let gloo's threads
    abort one finished two-process run in five to eight with SIGABRT; collected at exit, none in 98."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'RANK': '0', 'WORLD_SIZE': '1',
           'LOCAL_RANK': '0', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port())}
    result = subprocess.run([sys.executable, '-c', LEFT_AT_EXIT], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == 'left for shutdown: 0'


@pytest.mark.slow
def test_ranks_resuming_from_different_points_all_stop_with_one_line(work, fp32_run, tmp_path):
    """Two nodes without a shared --output_dir: rank 0 finds a checkpoint, rank 1 none. Both stop, no hang."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'WORLD_SIZE': '2', 'LOCAL_RANK': '0',
           'LOCAL_WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port())}
    ranks = [subprocess.Popen([sys.executable, str(ROOT / 'main_pretrain.py'), '--config', str(work['pretrain']),
                               '--device', 'cpu', '--epochs', '2', '--auto_resume', '--output_dir', str(out)],
                              env={**env, 'RANK': str(rank)}, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for rank, out in enumerate([fp32_run, tmp_path / 'node1'])]
    try:
        errors = [p.communicate(timeout=180)[1] for p in ranks]
    finally:
        for p in ranks:
            p.kill()
    expected = ("error: the processes would resume from different points (rank 0: epoch 1 step 0, rank 1: no "
                "checkpoint): give every node the same --output_dir on a shared file system, or the same "
                "--resume checkpoint")
    for p, stderr in zip(ranks, errors):
        assert p.returncode == 1
        assert stderr.strip().splitlines() == [expected]


@pytest.mark.parametrize('requested, environment, expected', [
    ('cuda:1', {}, 'cuda:1'), ('cuda', {}, 'cuda:0'), ('cpu', {}, 'cpu'),
    ('cuda', {'RANK': '3', 'WORLD_SIZE': '4', 'LOCAL_RANK': '1'}, 'cuda:1'),
    ('cpu', {'RANK': '3', 'WORLD_SIZE': '4', 'LOCAL_RANK': '1'}, 'cpu')])
def test_process_device(monkeypatch, requested, environment, expected):
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert dist.process_device(torch.device(requested)) == torch.device(expected)
