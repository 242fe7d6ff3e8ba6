"""Whether this Python can run the project; `python -m util.requirements` says what is wrong in one line (exit 1)
before a script starts work that would fail on the first import: a requirement that is not installed, or one that
is installed but does not import (most often a torchvision built for another torch, e.g. a CUDA torchvision
beside a CPU torch, which fails with `operator torchvision::nms does not exist`)."""
import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / 'requirements.txt'
MODULES = {'scikit-learn': 'sklearn', 'pyyaml': 'yaml', 'pillow': 'PIL'}  # where the import name differs
FRESH_ENV = ('in a fresh virtual environment (`python -m venv .venv && . .venv/bin/activate`) install torch and '
             'torchvision together from one index (`python -m pip install torch torchvision --index-url '
             'https://download.pytorch.org/whl/cpu`, or the CUDA index), then `python -m pip install -r '
             'requirements.txt`')


def requirement_names(path=REQUIREMENTS):
    """The distribution names of a requirements file, in its order."""
    names = []
    for line in Path(path).read_text().splitlines():
        name = re.match(r'\s*([A-Za-z0-9][A-Za-z0-9._-]*)', line.split('#')[0])
        if name:
            names.append(name.group(1))
    return names


def missing(path=REQUIREMENTS):
    """The distributions named in a requirements file that are not installed for this Python."""
    names = []
    for name in requirement_names(path):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            names.append(name)
    return names


def message(names):
    return (f"error: {', '.join(names)} not installed for {sys.executable}: run `{sys.executable} -m pip install "
            f"-r requirements.txt` first, or use the Python it installed into")


def broken(path=REQUIREMENTS):
    """One line on the first installed requirement that does not import, or None when all of them import.

    They are imported in the file's order (torch before torchvision before timm), so the first failure names the
    package at fault; one built against torch is said to disagree with the installed torch."""
    for name in requirement_names(path):
        module = MODULES.get(name.lower(), name.lower().replace('-', '_'))
        try:
            importlib.import_module(module)
        except Exception as error:  # an import can fail with anything (RuntimeError, OSError, ImportError)
            cause = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            if name.lower() != 'torch' and 'torch' in _dependencies(name):
                return (f"error: {name} {_version(name)} does not work with torch {_version('torch')} (importing "
                        f"{module}: {cause}); {FRESH_ENV}")
            return f"error: {name} {_version(name)} does not import ({cause}); {FRESH_ENV}"
    return None


def _version(name):
    if name == 'torch' and hasattr(sys.modules.get('torch'), '__version__'):
        return sys.modules['torch'].__version__  # with its build, e.g. 2.4.1+cpu
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return '(not installed)'


def _dependencies(name):
    try:
        requires = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    return {re.match(r'[A-Za-z0-9._-]+', r).group(0).lower() for r in requires}


if __name__ == '__main__':
    absent = missing()
    if absent:
        sys.exit(message(absent))
    fault = broken()
    if fault:
        sys.exit(fault)
