"""One writer per output: an exclusive lock held by the process that writes it, its temporary files, and the
leftovers of killed ones.

A second process that wants the same output stops with one line naming the holder's pid. The lock file holds
the holder's pid and is removed when the holder ends (release(), or at the exit of the process); the kernel
releases the lock of a killed process, whose pid stays in the file. Temporary files are created exclusively
(O_EXCL, never through a link) under a name of our own, `.<name>.tmp<pid>.<8 random characters>.mamp<suffix>`
(<suffix>: the name's own, e.g. `.png`, so that a writer choosing its format by the suffix is not misled), where
<pid> is the process that holds the output's lock. The next holder removes exactly those temporaries whose
pid is the one a killed holder left in the lock file (that pid is the marker: only we write it): regular
files only, never a folder, never a file named otherwise.
"""
import atexit
import contextlib
import fcntl
import os
import re
import stat
import tempfile
from pathlib import Path

from util.config import fail

_held = {}  # lock file -> its open descriptor in this process; closing it (or the process dying) unlocks
owner = os.getpid()  # the pid temporaries are named with: the run's (a worker process sets its parent's)
TEMPORARY = re.compile(r'\.(?P<name>.+)\.tmp(?P<pid>\d+)\.[a-z0-9_]{8}\.mamp(?P<suffix>(\.[A-Za-z0-9]+)?)')


def hold(lock, flag, output, user):
    """Hold an exclusive lock on file `lock` (created if needed) until release() or the end of the process;
    returns the pid a killed earlier holder left in it (None when there is none).

    `flag output` names the output in the error line, `user` the kind of process that holds it (e.g. 'a
    running training process'). A later holder in the same process takes over an earlier lock of its own. A
    lock that cannot be written (a full disk, a read-only folder) stops with one line and leaves no file.
    """
    lock = Path(lock).resolve()
    release(lock)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            fail(f"{flag} {output}: cannot write there ({e.strerror}); free space or choose a writable folder")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors='replace').strip() or 'unknown'
            os.close(fd)
            fail(f"{flag} {output}: in use by {user} (pid {holder}); wait for it, stop it, or choose another {flag}")
        if _same_file(fd, lock):
            break
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one
    earlier = os.read(fd, 32).decode(errors='replace').strip()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    except OSError as e:
        _drop(lock, fd)
        fail(f"{flag} {output}: cannot write its lock file {lock.name} ({e.strerror}); free space or choose "
             f"another {flag}")
    _held[lock] = fd
    return int(earlier) if earlier.isdigit() and int(earlier) != os.getpid() else None


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except OSError:
        return False


def _drop(lock, fd):
    """Remove lock file `lock` (while still holding it through `fd`), then unlock."""
    if _same_file(fd, lock):
        with contextlib.suppress(OSError):
            os.unlink(lock)
    os.close(fd)


def release(lock=None):
    """Give up the lock on file `lock` (every lock of this process when None) and remove the lock file."""
    for path in [Path(lock).resolve()] if lock is not None else list(_held):
        if path in _held:
            _drop(path, _held.pop(path))


atexit.register(release)


@contextlib.contextmanager
def held(lock, flag, output, user):
    """hold() for the duration of a `with` block; yields the pid of a killed earlier holder (or None)."""
    earlier = hold(lock, flag, output, user)
    try:
        yield earlier
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


def temporary(path, folder=False):
    """A new empty file (or with `folder`, folder) beside `path`, created exclusively under a name only this
    run uses (TEMPORARY); returns its Path. Nothing already there, a link included, is opened or followed."""
    path = Path(path)
    options = {'prefix': f'.{path.name}.tmp{owner}.', 'suffix': f'.mamp{path.suffix}', 'dir': path.parent}
    if folder:
        return Path(tempfile.mkdtemp(**options))
    fd, name = tempfile.mkstemp(**options)
    os.close(fd)
    return Path(name)


def temporary_of(name):
    """The match of file name `name` when it is one temporary() gives (its parts: name, pid), else None."""
    match = TEMPORARY.fullmatch(name)
    return match if match and match['suffix'] == Path(match['name']).suffix else None


def stale(folder, earlier, kind=stat.S_ISREG):
    """The temporaries in `folder` named with pid `earlier` (the killed holder of its lock) and whose process is
    gone: entries whose exact name is TEMPORARY's, of `kind` (regular files; never followed through a link)."""
    if earlier is None or alive(earlier) or not Path(folder).is_dir():
        return []
    found = []
    for path in sorted(Path(folder).iterdir()):
        match = temporary_of(path.name)
        if match and int(match['pid']) == earlier and kind(path.lstat().st_mode):
            found.append(path)
    return found


def remove_stale(folder, earlier):
    """Delete the temporary files a killed holder (pid `earlier`, from hold()) left in `folder` (see stale());
    returns the names removed."""
    removed = []
    for path in stale(folder, earlier):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        removed.append(path.name)
    return removed
