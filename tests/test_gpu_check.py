"""scripts/gpu_check.sh: one line without CUDA; with --cpu every step runs here, end to end, at tiny sizes."""
import os
import subprocess

import pytest
import torch

from conftest import ROOT, SHARED, shared_path


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is visible: the script would run its checks')
def test_without_cuda_one_line_and_a_failure():
    result = subprocess.run(['bash', str(ROOT / 'scripts' / 'gpu_check.sh')], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stdout == ''
    assert result.stderr.strip().splitlines() == [
        "gpu_check.sh: CUDA is not available on this machine; run it where a GPU is, or with --cpu to test the script"]


@pytest.mark.slow
def test_every_step_runs_on_cpu(tmp_path):
    shared_path('vectors')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'OUTPUT': str(tmp_path), 'MAMP_SHARED': str(SHARED)}
    result = subprocess.run(['bash', str(ROOT / 'scripts' / 'gpu_check.sh'), '--cpu'], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split('\t') for line in (tmp_path / 'summary.tsv').read_text().splitlines()]
    assert [row[:2] for row in rows] == [[name, 'ok'] for name in (
        'environment', 'benchmark', 'vectors', 'demo_data', 'demo', 'demo_2_processes')]
    assert rows[0][3].startswith(f'torch {torch.__version__},')
    assert 'x published' in rows[1][3]
    fp32 = float(rows[2][3].split('fp32 ')[1].split(',')[0])
    assert fp32 < 1e-4 < float(rows[2][3].split('fp16 ')[1])  # fp32 is the official model, fp16 is not exact
    for row in rows[4:]:
        assert 'linear probe top-1' in row[3] and 'on 20 samples' in row[3]
    vectors = (tmp_path / 'vectors.log').read_text().splitlines()
    assert len(vectors) == 1 + 5 * 3  # the header, 5 vectors x 3 precisions
    assert (tmp_path / 'demo_2_processes' / 'linear' / 'checkpoint-last.pth').is_file()
    assert result.stdout.splitlines()[-7].startswith('gpu_check on cpu')
