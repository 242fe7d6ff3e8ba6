"""Safe loading of training checkpoints: unpickling never runs code from the file, and every failure to read
one is a one-line ValueError saying what is wrong with the file and what to do."""
import argparse
import pickle
import re
from pathlib import Path

import torch

# Beyond tensors, dicts, lists, tuples, numbers and strings (always allowed by weights_only=True), a
# checkpoint written by main_pretrain.py / main_finetune.py holds the command-line arguments under 'args'.
SAFE_GLOBALS = [argparse.Namespace]
ZIP_MAGIC = b'PK\x03\x04'  # torch.save writes a zip archive


def load_checkpoint(path_or_dict, map_location='cpu'):
    """Return the checkpoint dict stored at `path_or_dict` (a dict is checked and returned unchanged).

    A checkpoint is a dict such as {'model', 'optimizer', 'epoch', 'scaler', 'args'} or a bare state dict:
    its weights (under 'model', or the dict itself) are a non-empty dict of tensors. It is read with
    torch.load(weights_only=True), allowing only the globals in SAFE_GLOBALS. Raises ValueError (one line)
    for a missing, unreadable, damaged (e.g. cut short), unsafe or foreign file.
    """
    if isinstance(path_or_dict, dict):
        return check_content(path_or_dict, 'checkpoint')
    path = Path(path_or_dict)
    return check_content(read(path, map_location), path)


def read(path, map_location):
    """torch.load of `path` with the allowed globals; ValueError naming the problem otherwise."""
    try:
        with open(path, 'rb') as f:
            magic = f.read(len(ZIP_MAGIC))
    except IsADirectoryError:
        raise ValueError(f"{path}: a folder, not a checkpoint file; give a checkpoint-*.pth file in it") from None
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} not found; check the path") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from None
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r'GLOBAL (\S+)', str(e))
        if 'Unsupported global' in str(e) and unsafe:
            raise ValueError(f"{path}: refused to load, it needs the Python object {unsafe.group(1)}, which could "
                             f"run code (only tensors, plain containers and "
                             f"{', '.join(g.__qualname__ for g in SAFE_GLOBALS)} are read)") from None
        error = e
    except Exception as e:  # torch's reader fails on a damaged file with OSError, RuntimeError, EOFError, ...
        error = e
    if magic in (ZIP_MAGIC, b''):
        raise ValueError(f"{path}: damaged checkpoint (cut short or corrupted, e.g. by a full disk or an unfinished "
                         f"copy); copy it again or use an earlier checkpoint") from None
    reason = ': '.join([type(error).__name__] + str(error).strip().splitlines()[:1])[:120]
    raise ValueError(f"{path}: not a PyTorch checkpoint ({reason}); give a checkpoint written by main_pretrain.py, "
                     f"main_linprobe.py or main_finetune.py") from None


def check_content(checkpoint, name):
    """`checkpoint` if it holds weights (a non-empty dict of tensors under 'model', or a bare state dict)."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{name}: expected a dict (a state dict, or one with a 'model' entry), "
                         f"got {type(checkpoint).__name__}")
    weights = checkpoint.get('model', checkpoint)
    if not isinstance(weights, dict) or not weights or not all(torch.is_tensor(v) for v in weights.values()):
        found = ', '.join(map(str, list(checkpoint)[:6])) or 'nothing'
        raise ValueError(f"{name}: no weights in this file (expected a dict of tensors under 'model', or a state "
                         f"dict; found {found}); give a checkpoint written by the training entry points")
    return checkpoint
