import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("MAMP_SHARED", ROOT.parent / "shared"))


def shared_path(*parts):
    """Path under ../shared/, or skip the calling test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: the official reference files in ../shared/ are not beside this checkout")
    return path
