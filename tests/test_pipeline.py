"""data.pipeline: worker processes, the per-file cache, a worker that dies, a run killed, an out-dir's leftovers."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from data.pipeline import DataError, claim_out_dir, run_jobs
from util import lock


def square(path):
    """A job: the file's numbers squared."""
    x = np.loadtxt(path, ndmin=1)
    return {"x": x ** 2}, {"n": len(x)}


def square_or_die(path):
    """The same job, except that the worker handling `dies.txt` is killed (as by the out-of-memory killer)."""
    if path.name == "dies.txt":
        os.kill(os.getpid(), signal.SIGKILL)
    return square(path)


def test_dead_worker_is_one_error_and_the_rerun_goes_on_from_the_cache(tmp_path):
    paths = []
    for name in ["a", "b", "dies"]:
        paths.append(tmp_path / f"{name}.txt")
        np.savetxt(paths[-1], np.arange(3))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="a worker process died .* run the command again"):
        run_jobs(square_or_die, paths, ["a", "b", "dies"], cache, 2, False, 1, "test")
    assert not list(cache.glob("*.tmp*"))

    ok, bad = run_jobs(square, paths, ["a", "b", "dies"], cache, 2, False, 1, "test")
    assert ok == {"a": {"n": 3}, "b": {"n": 3}, "dies": {"n": 3}} and bad == {}
    np.testing.assert_array_equal(np.load(cache / "dies.npz")["x"], [0, 1, 4])


def pid_then_sleep(path):
    """A job that writes its worker's pid beside its file and sleeps: a run stuck in its workers."""
    path.with_suffix(".pid").write_text(str(os.getpid()))
    time.sleep(120)
    return square(path)


def gone(pid):
    """True when process `pid` has exited (no such process, or a zombie that nobody reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


RUN_AND_HANG = """
import sys
from pathlib import Path
from data.pipeline import run_jobs
from test_pipeline import pid_then_sleep
folder = Path(sys.argv[1])
run_jobs(pid_then_sleep, [folder / "a.txt", folder / "b.txt"], ["a", "b"], folder / "cache", 2, False, 1, "test")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_run(tmp_path):
    """SIGKILL to a run whose two workers are busy: the workers are gone within a few seconds."""
    for name in "ab":
        np.savetxt(tmp_path / f"{name}.txt", np.arange(3))
    run = subprocess.Popen([sys.executable, "-c", RUN_AND_HANG, str(tmp_path)], cwd=ROOT, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"})
    pid_files = [tmp_path / "a.pid", tmp_path / "b.pid"]
    workers = []
    try:
        deadline = time.monotonic() + 60
        while not all(p.exists() and p.read_text() for p in pid_files) and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p.read_text()) for p in pid_files]
        assert run.pid not in workers and len(set(workers)) == 2
        run.kill()
        run.wait(timeout=30)
        deadline = time.monotonic() + 5
        while not all(gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(w) for w in workers)
    finally:
        for pid in workers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        run.kill()


def dead_pid():
    """The pid of a process that has exited."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(process.stdout)


def test_claiming_an_out_dir_removes_what_killed_runs_left(tmp_path):
    """The temporary files a killed run left (named by util.lock.temporary with the pid its lock file holds) go,
    in --out-dir and in the cache; nothing else does: files and folders named like temporaries by someone else,
    those of another process, a link named like ours."""
    out, cache, dead = tmp_path / "out", tmp_path / "out" / "cache", dead_pid()
    cache.mkdir(parents=True)
    (out / ".lock").write_text(f"{dead}\n")  # as a killed run leaves it
    stale = [out / f".NTU60_XSub.npz.tmp{dead}.abcd1234.mamp.npz",
             cache / f".S001C001P001R001A001.npz.tmp{dead}.x_y9z0k1.mamp.npz"]
    kept = [out / "thesis.tmp999999.tex", out / f"NTU60_XView.npz.tmp{dead}", out / "notes.tmp.txt",
            out / f".NTU60_XView.npz.tmp{dead_pid()}.abcd1234.mamp.npz", out / f".a.npz.tmp{dead}.abcd1234.mamp.bak",
            cache / "S001C001P001R001A001.npz"]
    for path in stale + kept:
        path.write_bytes(b"PK")
    folder = out / f"notes.tmp{dead}"
    (folder / "draft.txt").parent.mkdir()
    (folder / "draft.txt").write_text("mine")
    ours_by_name = out / f".b.npz.tmp{dead}.abcd1234.mamp.npz"
    ours_by_name.mkdir()
    link = out / f".c.npz.tmp{dead}.abcd1234.mamp.npz"
    link.symlink_to(out / "thesis.tmp999999.tex")
    claim_out_dir(out, cache)
    assert [p.exists() for p in stale + kept] == [False] * len(stale) + [True] * len(kept)
    assert (folder / "draft.txt").read_text() == "mine" and ours_by_name.is_dir() and link.is_symlink()
    assert (out / ".lock").read_text() == f"{os.getpid()}\n"
    lock.release()
    assert not (out / ".lock").exists()
