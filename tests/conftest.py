import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("MAMP_SHARED", ROOT.parent / "shared"))


def pytest_configure(config):
    """Stop at once, in one line, when the requirements are not installed (instead of an import error per file)."""
    from util import requirements
    missing = requirements.missing()
    if missing:
        pytest.exit(requirements.message(missing), returncode=4)


def shared_path(*parts):
    """Path under ../shared/, or skip the calling test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: the official reference files in ../shared/ are not beside this checkout")
    return path


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """A tiny NTU-layout .npz (24 train, 11 test samples) and tiny pretrain / linear / finetune configs on it."""
    from train_fixtures import write_config, write_npz
    root = tmp_path_factory.mktemp('train')
    npz = write_npz(root / 'NTU60_XSub.npz', num_train=24, num_test=11)
    return {'root': root, 'npz': npz,
            'pretrain': write_config(root / 'pretrain.yaml', 'ntu60_xsub/pretrain_mamp.yaml', npz),
            'linear': write_config(root / 'linear.yaml', 'ntu60_xsub/linear.yaml', npz),
            'finetune': write_config(root / 'finetune.yaml', 'ntu60_xsub/finetune.yaml', npz)}
