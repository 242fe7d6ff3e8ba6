"""What a run writes: its output folder (created, locked against a second run), files written whole or not at
all (a temporary file created exclusively, util.lock.temporary, then a rename), result JSON and log.txt lines."""
import json
import os
import re
import shutil
import stat
from pathlib import Path

import torch

from util import dist, lock
from util.config import fail

# The files a run writes into its output folder, by exact name: what --overwrite removes of an earlier run.
RUN_FILES = ('checkpoint-last.pth', 'log.txt', 'config.yaml', 'per_class.csv', 'scores.npz', 'knn.json',
             'fewshot.json')
NUMBERED = re.compile(r'checkpoint-(\d+)\.pth')  # save_model's checkpoint-<epoch>.pth
EVENTS = re.compile(r'events\.out\.tfevents\.\d+\.[^/]+\.\d+\.\d+')  # SummaryWriter's: time, host, pid, count


def make_dir(path, flag):
    """Create folder `path` (given by `flag`), or stop with one line when it cannot be (a file, read-only)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{flag} {path}: cannot create the folder ({e.strerror}); choose a writable folder")
    return Path(path)


def lock_output_dir(output_dir):
    """Create `output_dir` and hold an exclusive lock on its .lock file for the life of this process
    (util.lock): a second run into the same folder stops with one line naming the holder's pid; a later run
    in the same process (e.g. main() called again) takes over its earlier lock. The temporary files of a killed
    earlier run there are removed."""
    folder = make_dir(output_dir, '--output_dir')
    lock.remove_stale(folder, lock.hold(folder / '.lock', '--output_dir', output_dir, 'a running training process'))


def release_output_dirs():
    """Give up the locks this process holds and remove their lock files (at the end of a run, so that a later
    run in the same process or another process may use the folder, and a finished run's folder holds no .lock)."""
    lock.release()


def run_files(output_dir, events=True):
    """The files in `output_dir` named as a run's writers name them (RUN_FILES, checkpoint-<epoch>.pth and, with
    `events`, TensorBoard event files), nothing else."""
    return [p for p in sorted(Path(output_dir).iterdir()) if p.name in RUN_FILES or NUMBERED.fullmatch(p.name)
            or (events and EVENTS.fullmatch(p.name))]


def unremovable(folder, paths):
    """Why one of `paths` (in `folder`) could not be removed (a folder by that name, a folder without write
    permission), or None when every one can be."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot remove files in {folder} (no write permission)"
    for path in paths:
        if not stat.S_ISREG(path.lstat().st_mode) and not path.is_symlink():
            return f"{path} is not a file (a folder?) although a run names its files so"
    return None


def check_output_path(path, flag):
    """Stop with one line when the output file `path` of `flag` cannot be written: a folder, or in a folder that
    does not exist (checked before the work, so that a wrong path costs nothing). None: no output."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        fail(f"{flag} {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        fail(f"{flag} {path}: no folder {path.parent}; create it or give another path")


def check_new_output_file(path, flag):
    """Stop with one line, before the work, when the output file `path` of `flag` cannot be written where its
    folder is, or will be (the writer creates it): `path` is a folder, a file stands where a folder must be, or
    the nearest existing folder is not writable. Nothing is created here: a refused run leaves nothing."""
    path = Path(path).absolute()
    if path.is_dir():
        fail(f"{flag} {path}: is a folder; give a file name")
    existing = next(p for p in path.parents if p.exists())
    if not existing.is_dir():
        fail(f"{flag} {path}: {existing} is a file, so no folder can be made there; give another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"{flag} {path}: the folder {existing} is not writable; choose a writable folder")


def atomic_write(path, write, make_folder=False):
    """write(tmp) to a temporary file beside `path` (created exclusively under a name of its own, never through
    a link: util.lock.temporary; with `make_folder` its folder is made first), then rename it to `path`: `path` is
    never half written, and a link planted beside it is never written through. On a failed write (a full disk, a
    read-only or missing folder) the temporary file is removed, `path` is untouched and the run stops with one
    line."""
    path = Path(path)
    tmp = None
    try:
        if make_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = lock.temporary(path)
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        fail(f"cannot write {path}: {' '.join(str(e).split())} (free space, or write to another folder)")
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def atomic_save(obj, path):
    """torch.save to a temporary file beside `path`, then rename: `path` is never half written."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_copy(src, dst):
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def write_json(args, name, stats):
    """Print `stats` as one JSON line and write it to output_dir/`name` (rank 0; never half written): the result
    of an evaluation entry point (main_knn.py, main_fewshot.py)."""
    print(json.dumps(stats))
    if dist.is_main_process():
        path = Path(args.output_dir) / name
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(stats) + '\n'))
        print(f"Wrote {path}")


def log_stats(args, stats):
    """Append one JSON line to output_dir/log.txt (rank 0)."""
    if dist.is_main_process():
        path = Path(args.output_dir) / 'log.txt'
        try:
            with open(path, 'a') as f:
                f.write(json.dumps(stats) + '\n')
        except OSError as e:  # a line cut short here is dropped by the next --resume (runner.trim_log)
            fail(f"cannot write {path}: {e.strerror or e} (free space, or write to another folder)")
