"""One writer per output: an exclusive lock held by the process that writes it, and the leftovers of killed ones.

A second process that wants the same output stops with one line naming the holder's pid. The kernel releases
the lock of a killed process, so a crashed or preempted run never leaves its output locked. Temporary files
and folders are named `<name>.tmp<pid>...`; remove_stale deletes those whose process is gone.
"""
import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path

from util.config import fail

_held = {}  # lock file -> its open descriptor in this process; closing it (or the process dying) unlocks


def hold(lock, flag, output, user):
    """Hold an exclusive lock on file `lock` (created if needed) until release() or the end of the process.

    `flag output` names the output in the error line, `user` the kind of process that holds it (e.g. 'a
    running training process'). A later holder in the same process takes over an earlier lock of its own.
    """
    lock = Path(lock).resolve()
    release(lock)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        fail(f"{flag} {output}: cannot write there ({e.strerror}); choose a writable folder")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode().strip() or 'unknown'
        os.close(fd)
        fail(f"{flag} {output}: in use by {user} (pid {holder}); wait for it, stop it, or choose another {flag}")
    os.ftruncate(fd, 0)
    os.write(fd, f'{os.getpid()}\n'.encode())
    _held[lock] = fd


def release(lock=None):
    """Give up the lock on file `lock` (every lock of this process when None)."""
    for path in [Path(lock).resolve()] if lock is not None else list(_held):
        if path in _held:
            os.close(_held.pop(path))


@contextlib.contextmanager
def held(lock, flag, output, user):
    """hold() for the duration of a `with` block."""
    hold(lock, flag, output, user)
    try:
        yield
    finally:
        release(lock)


def alive(pid):
    """True when process `pid` exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder, stem=None):
    """Delete the temporary files and folders in `folder` (`<stem>.tmp<pid>` and `<stem>.tmp<pid>.<suffix>`;
    any stem when None) whose process is gone, left by a killed run; those of live processes stay.
    Returns the names removed."""
    pattern = re.compile((re.escape(stem) if stem else '.*?') + r'\.tmp(\d+)(\..*)?')
    removed = []
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        match = pattern.fullmatch(path.name)
        if match is None or alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed
