"""scripts/slurm.sh with stand-in srun / scancel / scontrol on PATH (no Slurm here): the srun command line,
and the requeue after the time-limit signal."""
import os
import subprocess

import pytest

from conftest import ROOT

SCRIPT = ROOT / 'scripts' / 'slurm.sh'


def stub(folder, name, body):
    path = folder / name
    path.write_text(f'#!/usr/bin/env bash\necho "$@" >> {folder}/{name}.log\n{body}\n')
    path.chmod(0o755)


def run_job(tmp_path, srun_body):
    """Run the sbatch script as Slurm would on one node; returns (status, stderr, log of each stub)."""
    stub(tmp_path, 'srun', srun_body)
    stub(tmp_path, 'scancel', '')
    stub(tmp_path, 'scontrol', '[ "$1" = show ] && echo node7 || true')
    env = {**os.environ, 'PATH': f'{tmp_path}:{os.environ["PATH"]}', 'SLURM_JOB_ID': '42',
           'SLURM_JOB_NODELIST': 'node[7-8]', 'SLURM_JOB_NUM_NODES': '2', 'SLURM_SUBMIT_DIR': str(ROOT),
           'GPUS': '4'}
    result = subprocess.run(['bash', str(SCRIPT), 'main_pretrain.py', '--config', 'my config.yaml'], env=env,
                            capture_output=True, text=True, timeout=60)
    logs = {name: (tmp_path / f'{name}.log').read_text() if (tmp_path / f'{name}.log').exists() else ''
            for name in ('srun', 'scancel', 'scontrol')}
    return result.returncode, result.stderr, logs


def test_script_parses():
    assert subprocess.run(['bash', '-n', str(SCRIPT)], timeout=30).returncode == 0


@pytest.mark.parametrize('status', [0, 1])
def test_srun_runs_one_torchrun_per_node_and_passes_its_status(tmp_path, status):
    code, _, logs = run_job(tmp_path, f'exit {status}')
    assert code == status
    srun = logs['srun']
    assert srun.startswith('--kill-on-bad-exit=1 bash -c trap "" USR1; exec torchrun')
    assert srun.rstrip().endswith(' torchrun main_pretrain.py --config my config.yaml')
    assert 'requeue' not in logs['scontrol'] and logs['scancel'] == ''


def test_time_limit_signal_is_passed_on_and_the_job_requeued(tmp_path):
    """SIGUSR1 to the batch script (Slurm's --signal=B:USR1): passed to the job steps with scancel, the
    script waits for srun to end (the checkpoint), then requeues the job and exits 0."""
    code, stderr, logs = run_job(tmp_path, 'kill -USR1 $PPID; sleep 2; echo done >> "$(dirname "$0")/srun.log"; '
                                           'exit 1')
    assert code == 0
    assert logs['scancel'] == '--signal=USR1 42\n'
    assert logs['srun'].endswith('done\n')  # waited for the step to finish
    assert logs['scontrol'].splitlines()[-1] == 'requeue 42'
    assert 'requeueing job 42' in stderr


def test_a_run_that_ends_after_the_signal_is_not_requeued(tmp_path):
    code, stderr, logs = run_job(tmp_path, 'kill -USR1 $PPID; sleep 2; exit 0')
    assert code == 0 and logs['scancel'] == '--signal=USR1 42\n'
    assert 'requeue' not in logs['scontrol'] and 'requeueing' not in stderr


def test_outside_slurm_it_says_so_in_one_line(tmp_path):
    """Run by hand (no SLURM_* variables): one line pointing to sbatch, before any srun or scontrol."""
    stub(tmp_path, 'srun', '')
    stub(tmp_path, 'scontrol', '')
    env = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
    result = subprocess.run(['bash', str(SCRIPT), 'main_pretrain.py'], env={**env, 'PATH': f'{tmp_path}:{env["PATH"]}'},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr.splitlines() == ["error: scripts/slurm.sh runs inside a Slurm job: submit it with sbatch "
                                          "(or srun in an allocation); on one machine use scripts/launch.sh"]
    assert not (tmp_path / 'srun.log').exists() and not (tmp_path / 'scontrol.log').exists()
