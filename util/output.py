"""What a run writes: its output folder (created, locked against a second run), files written whole or not at
all (a temporary file with a process-unique name, then a rename), result JSON and log.txt lines."""
import json
import os
import shutil
from pathlib import Path

import torch

from util import dist, lock
from util.config import fail


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
    in the same process (e.g. main() called again) takes over its earlier lock."""
    lock.hold(make_dir(output_dir, '--output_dir') / '.lock', '--output_dir', output_dir,
              'a running training process')


def release_output_dirs():
    """Give up the locks this process holds (at the end of a run, so that a later run in the same process or
    another process may use the folder)."""
    lock.release()


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


def atomic_write(path, write):
    """write(tmp) to a temporary file beside `path` (unique to this process, same suffix), then rename it to
    `path`: `path` is never half written. On a failed write (a full disk, a read-only folder) the temporary
    file is removed, `path` is untouched and the run stops with one line."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        fail(f"cannot write {path}: {' '.join(str(e).split())} (free space, or write to another folder)")
    finally:
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
