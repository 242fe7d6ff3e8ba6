"""data.pipeline.run_jobs: worker processes, the per-file cache, and a worker that dies."""
import os
import signal

import numpy as np
import pytest

from data.pipeline import DataError, run_jobs


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
