"""util.requirements: which requirements are missing for this Python, said in one line by the scripts."""
import subprocess
import sys

from conftest import ROOT

from util.requirements import missing


def test_missing_requirements_are_named_and_installed_ones_are_not(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# a comment\nnumpy>=1.24  # installed\n\nno-such-package-mamp==1.0\nPyYAML>=6.0\n")
    assert missing(requirements) == ["no-such-package-mamp"]



def test_the_command_is_silent_when_all_are_installed_and_one_line_when_not(tmp_path):
    ok = subprocess.run([sys.executable, '-m', 'util.requirements'], cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, '', '')
    bare = tmp_path / 'bare'  # a Python with nothing installed
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(bare)], check=True, timeout=120)
    result = subprocess.run([str(bare / 'bin' / 'python'), '-m', 'util.requirements'], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith('error: torch, torchvision, timm, numpy, scipy,')
    assert f"run `{bare / 'bin' / 'python'} -m pip install -r requirements.txt` first" in result.stderr
