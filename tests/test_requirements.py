"""util.requirements: which requirements are missing for this Python, said in one line by the scripts."""
import importlib.metadata
import os
import subprocess
import sys

import pytest

from conftest import ROOT

from util.requirements import missing


def test_missing_requirements_are_named_and_installed_ones_are_not(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# a comment\nnumpy>=1.24  # installed\n\nno-such-package-mamp==1.0\nPyYAML>=6.0\n")
    assert missing(requirements) == ["no-such-package-mamp"]


@pytest.mark.slow
def test_the_command_is_silent_when_all_are_installed_and_one_line_when_not(tmp_path):
    ok = subprocess.run([sys.executable, '-m', 'util.requirements'], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)  # it imports torch, timm, scikit-learn ...: a minute on a busy machine
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, '', '')
    bare = tmp_path / 'bare'  # a Python with nothing installed
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(bare)], check=True, timeout=120)
    result = subprocess.run([str(bare / 'bin' / 'python'), '-m', 'util.requirements'], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith('error: torch, torchvision, timm, numpy, scipy,')
    assert f"run `{bare / 'bin' / 'python'} -m pip install -r requirements.txt` first" in result.stderr


@pytest.mark.slow
def test_a_torchvision_that_does_not_match_torch_stops_the_demo_in_one_line_before_any_work(tmp_path):
    """A torchvision built for another torch fails on import as below (its C++ operators do not register); the
    demo must say so in one line, naming both packages and the mend, and leave no run folder."""
    fake = tmp_path / 'site' / 'torchvision'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    env = {**os.environ, 'PYTHONPATH': str(tmp_path / 'site'), 'OUTPUT_ROOT': str(tmp_path / 'runs')}
    result = subprocess.run(['bash', str(ROOT / 'scripts' / 'demo.sh')], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and result.stdout == '' and len(result.stderr.splitlines()) == 1
    torch_version = subprocess.run([sys.executable, '-c', 'import torch; print(torch.__version__)'],
                                   capture_output=True, text=True, check=True).stdout.strip()
    assert result.stderr.startswith(f"error: torchvision {importlib.metadata.version('torchvision')} does not work "
                                    f"with torch {torch_version} (importing torchvision: RuntimeError: operator "
                                    f"torchvision::nms does not exist); in a fresh virtual environment")
    assert 'python -m pip install torch torchvision --index-url' in result.stderr
    assert not (tmp_path / 'runs').exists()
