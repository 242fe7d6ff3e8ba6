"""Which of the project's requirements are missing for this Python; `python -m util.requirements` says so in
one line (exit 1) before a script starts work that would fail on the first import."""
import importlib.metadata
import re
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / 'requirements.txt'


def missing(path=REQUIREMENTS):
    """The distributions named in a requirements file that are not installed for this Python."""
    names = []
    for line in Path(path).read_text().splitlines():
        name = re.match(r'\s*([A-Za-z0-9][A-Za-z0-9._-]*)', line.split('#')[0])
        if name:
            try:
                importlib.metadata.version(name.group(1))
            except importlib.metadata.PackageNotFoundError:
                names.append(name.group(1))
    return names


def message(names):
    return (f"error: {', '.join(names)} not installed for {sys.executable}: run `{sys.executable} -m pip install "
            f"-r requirements.txt` first, or use the Python it installed into")


if __name__ == '__main__':
    absent = missing()
    if absent:
        sys.exit(message(absent))
