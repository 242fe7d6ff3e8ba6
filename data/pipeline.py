"""Machinery shared by the dataset conversions (data.ntu, data.pku).

- run_jobs: one job per raw file, spread over worker processes, each result kept in a per-file cache so
  an interrupted run resumes where it stopped; bad files stop the run or are skipped and listed.
- write_npz: an uncompressed .npz (np.savez format) written member by member from row iterators, so
  the (N, 300, 150) arrays never have to sit in memory; written to a temporary name, then renamed.
- DataError / BadInput and run_command: user errors end the command with one line and status 1.
- claim_out_dir: one command per output folder (a lock), leftovers of killed runs removed.
"""
import ctypes
import os
import signal
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from util import lock
from util.malloc import keep_freed_memory

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a process gets when its parent dies
EXCERPT = 40  # characters of a bad line or token quoted in an error


class DataError(Exception):
    """A problem with the input files or the options, reported on one line."""


class BadInput(DataError):
    """Malformed input: names the file and, when known, the 1-based line."""

    def __init__(self, path, line, message):
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


def excerpt(text, width=EXCERPT):
    """repr of `text` cut to about `width` characters ('...' marks the cut): what an error line quotes of a
    malformed line, which may be a whole binary file without a newline."""
    return repr(text) if len(text) <= width else repr(text[:width]) + '...'


def run_command(main):
    """Run `main()`; a DataError, or a file that cannot be read or written (a read-only or full --out-dir),
    becomes `error: <message>` on stderr and exit status 1."""
    try:
        main()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ''
        print(f"error: {where}{e.strerror or e} (check the path, its permissions and the free space)", file=sys.stderr)
        sys.exit(1)


def claim_out_dir(out_dir, cache_dir):
    """Create `out_dir`, lock it for this process (a second data command into it stops with one line naming
    this one's pid) and remove the temporary files that killed runs left in it and in `cache_dir`."""
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out_dir}: cannot create the folder ({e.strerror}); give a writable --out-dir") from None
    lock.hold(Path(out_dir) / ".lock", "--out-dir", out_dir, "another data.ntu / data.pku / data.synthetic run")
    for folder in (out_dir, cache_dir):
        lock.remove_stale(folder)


def write_failed(path, error):
    """The DataError of a failed write of `path` (a full disk, a read-only folder), naming it."""
    return DataError(f"cannot write {path}: {error.strerror or error} (free space, or write to another folder)")


def check_regular(paths):
    """Raise BadInput at the first of `paths` that is not a regular file: a folder, or a pipe or device, which
    would be read forever. Returns the paths."""
    irregular = next((p for p in paths if not Path(p).is_file()), None)
    if irregular is not None:
        raise BadInput(irregular, None, "not a regular file (a folder, a pipe or a device); move it out of the folder")
    return paths


def check_outputs(paths, overwrite):
    """Refuse to replace existing outputs unless `overwrite`."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise DataError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                        "pass --overwrite to replace")


def one_hot(labels, num_classes):
    """(N,) 0-based labels -> (N, num_classes) float64, the published label format."""
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1
    return out


class Rows:
    """An array given as an iterator of blocks along axis 0: shape, dtype and blocks of shape[1:]-rows."""

    def __init__(self, shape, dtype, blocks):
        self.shape, self.dtype, self.blocks = tuple(map(int, shape)), np.dtype(dtype), blocks


def write_npz(path, arrays):
    """Write {key: ndarray or Rows} as an uncompressed .npz readable by np.load.

    Written to `<path>.tmp<pid>` then renamed, so `path` is either absent or complete, also when two
    processes write it at once.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, value in arrays.items():
                with zf.open(key + ".npy", "w", force_zip64=True) as f:
                    if isinstance(value, Rows):
                        _write_rows(f, key, value)
                    else:
                        np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
        os.replace(tmp, path)
    except OSError as e:
        raise write_failed(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def _write_rows(f, key, rows):
    header = {"descr": np.lib.format.dtype_to_descr(rows.dtype), "fortran_order": False, "shape": rows.shape}
    np.lib.format.write_array_header_1_0(f, header)
    written = 0
    for block in rows.blocks:
        block = np.ascontiguousarray(block, dtype=rows.dtype)
        if block.shape[1:] != rows.shape[1:]:
            raise ValueError(f"{key}: block of shape {block.shape} in an array of shape {rows.shape}")
        f.write(block.tobytes())
        written += len(block)
    if written != rows.shape[0]:
        raise ValueError(f"{key}: {written} rows written, {rows.shape[0]} declared")


def write_text(path, text):
    """Write `text` to `path` as it is (no newline translation) under a temporary name, then rename."""
    tmp = Path(f"{path}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_npz_atomic(path, arrays):
    """np.savez to a temporary name in the same folder, then rename."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        raise write_failed(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def worker_setup():
    """Set up this process for many small per-file jobs; returns a context that keeps NumPy's BLAS on
    one thread (files are spread over processes, BLAS threads on top would compete for the same cores).

    Also keeps freed memory in the heap (util.malloc): otherwise glibc hands large blocks back to the
    system when freed and page-faults them in again on the next file, about a quarter of the parsing time.
    """
    keep_freed_memory()
    return threadpool_limits(1, user_api="blas")


def die_with_parent(parent):
    """Initializer of the worker processes: the kernel kills this process when its parent dies (Linux prctl
    PR_SET_PDEATHSIG), so a run killed with SIGKILL leaves no worker behind; exit at once when the process
    `parent` (the pid of the run) is already gone. Then worker_setup."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if not lock.alive(parent):
        os._exit(1)
    worker_setup()


def _stamp(path, version):
    st = os.stat(path)
    return np.array([st.st_size, st.st_mtime_ns, version], dtype=np.int64)


def _cached_stats(cache_file, stamp):
    """Stats of a valid cache entry for this source stamp, else None."""
    try:
        with np.load(cache_file) as z:
            if np.array_equal(z["_stamp"], stamp):
                return {k[5:]: int(z[k]) for k in z.files if k.startswith("stat_")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass
    return None


def _run_one(task):
    """Worker: (index, job, path, cache_file, version) -> (index, stats or None, error message or None)."""
    index, job, path, cache_file, version = task
    stamp = _stamp(path, version)
    stats = _cached_stats(cache_file, stamp)
    if stats is not None:
        return index, stats, None
    try:
        arrays, stats = job(path)
    except DataError as e:
        return index, None, str(e)
    except OSError as e:  # unreadable file
        return index, None, f"{path}: {e.strerror or e}"
    save_npz_atomic(cache_file, {**arrays, **{f"stat_{k}": v for k, v in stats.items()}, "_stamp": stamp})
    return index, stats, None


def _run_chunk(tasks):
    return [_run_one(task) for task in tasks]


def run_jobs(job, paths, names, cache_dir, workers, skip_bad, version, desc):
    """Run `job(path) -> (arrays, stats)` on every file, cached as `<cache_dir>/<name>.npz`.

    stats: {str: int}; arrays: {str: ndarray}, read back later with load_cached. A cache entry is reused
    only for the same source size, mtime and `version`. A job raising DataError stops the run (the error
    is raised here) unless `skip_bad`, in which case the file is left out and its message returned.
    Returns ({name: stats} in input order without the bad files, {name: error message}).

    On an error the queued files are cancelled and the running ones finish: workers are never killed,
    as multiprocessing.Pool.terminate() can kill one while it holds the result queue's lock and then hang.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(i, job, Path(p), cache_dir / f"{n}.npz", version) for i, (p, n) in enumerate(zip(paths, names))]
    results, bad = [None] * len(tasks), {}
    with tqdm(total=len(tasks), desc=desc, unit="file", dynamic_ncols=True) as bar, worker_setup():
        if workers <= 1 or len(tasks) <= 1:
            outcomes = map(_run_one, tasks)
            pool = None
        else:
            size = max(1, min(16, len(tasks) // (8 * workers)))
            pool = ProcessPoolExecutor(workers, initializer=die_with_parent, initargs=(os.getpid(),))
            chunks = [pool.submit(_run_chunk, tasks[i:i + size]) for i in range(0, len(tasks), size)]
            outcomes = (outcome for chunk in as_completed(chunks) for outcome in chunk.result())
        try:
            for index, stats, error in outcomes:
                bar.update()
                if error is None:
                    results[index] = stats
                elif skip_bad:
                    bad[names[index]] = error
                    bar.write(f"skipped: {error}")
                else:
                    raise DataError(error)
        except BrokenProcessPool:
            raise DataError("a worker process died (killed, or out of memory); run the command again to go on "
                            "from the files already done, or use fewer --workers") from None
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    ok = {n: s for n, s in zip(names, results) if s is not None}
    return ok, bad


def load_cached(cache_dir, name, keys=None):
    """The arrays a job returned for `name` (all, or only `keys`; each is read from disk only if asked)."""
    with np.load(Path(cache_dir) / f"{name}.npz") as z:
        return {k: z[k] for k in (keys or z.files) if not k.startswith(("stat_", "_stamp"))}


def print_report(title, counts, named=None):
    """Print `title`, then `label: value` lines, then each named list (e.g. skipped files) one per line."""
    print(f"\n{title}")
    width = max(len(label) for label, _ in counts)
    for label, value in counts:
        print(f"  {label:<{width}}  {value}")
    for label, items in (named or {}).items():
        if items:
            print(f"  {label}:")
            for item in items:
                print(f"    {item}")
