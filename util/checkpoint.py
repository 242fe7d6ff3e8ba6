"""Safe loading of training checkpoints: unpickling never runs code from the file."""
import argparse
import pickle
from pathlib import Path

import torch

# Beyond tensors, dicts, lists, tuples, numbers and strings (always allowed by weights_only=True), a
# checkpoint written by main_pretrain.py / main_finetune.py holds the command-line arguments under 'args'.
SAFE_GLOBALS = [argparse.Namespace]


def load_checkpoint(path_or_dict, map_location='cpu'):
    """Return the checkpoint dict stored at `path_or_dict` (a dict is returned unchanged).

    A checkpoint is a dict such as {'model', 'optimizer', 'epoch', 'scaler', 'args'} or a bare state dict.
    It is read with torch.load(weights_only=True), allowing only the globals in SAFE_GLOBALS.
    """
    if isinstance(path_or_dict, dict):
        return path_or_dict
    path = Path(path_or_dict)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if 'Unsupported global' not in str(e):  # not a pickle of allowed types at all, e.g. random bytes
            raise ValueError(f"{path}: not a PyTorch checkpoint ({e.__context__ or 'unreadable'})") from e
        raise ValueError(f"{path}: refused to load, it needs objects other than tensors and the training "
                         f"arguments (only {[g.__qualname__ for g in SAFE_GLOBALS]} are allowed): {e}") from e
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{path}: not a PyTorch checkpoint ({e})") from e
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a dict (a state dict, or one with a 'model' entry), "
                         f"got {type(checkpoint).__name__}")
    return checkpoint
