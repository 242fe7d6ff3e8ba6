"""Time the NTU preprocessing (parsing + actor selection) per raw file and project the full datasets.

    python -m data.bench ../shared/realdata/ntu/raw --workers 1,2

Prints the per-file time of each stage on one core, then for each worker count the files/s over the
given files (repeated --repeat times; the process pool is started before the clock), the CPU time per
file, and the projected time for all of NTU-60 (56,880 files) and NTU-120 (114,480 files). Nothing is
cached or written.
"""
import argparse
import multiprocessing
import os
import time
from pathlib import Path

from data.kinect import read_skeleton
from data.ntu import process_file, select_actors
from data.pipeline import DataError, run_command, worker_setup

DATASET_FILES = {"NTU-60": 56_880, "NTU-120": 114_480}


def _cpu_seconds(path):
    """Process one file; the CPU seconds it took in this process."""
    t0 = time.process_time()
    process_file(path)
    return time.process_time() - t0


def stage_times(paths):
    """Mean seconds per file of parsing and of actor selection, in this process."""
    parse = select = 0.0
    for path in paths:
        t0 = time.perf_counter()
        skeleton = read_skeleton(path)
        t1 = time.perf_counter()
        if skeleton.num_frames:
            select_actors(skeleton)
        parse, select = parse + t1 - t0, select + time.perf_counter() - t1
    return parse / len(paths), select / len(paths)


def files_per_second(paths, workers):
    """(files/s of wall-clock time, CPU seconds per file) of parsing + actor selection over `paths`
    with `workers` processes."""
    if workers == 1:
        t0 = time.perf_counter()
        cpu = [_cpu_seconds(path) for path in paths]
        return len(paths) / (time.perf_counter() - t0), sum(cpu) / len(paths)
    with multiprocessing.Pool(workers, initializer=worker_setup) as pool:
        pool.map(_cpu_seconds, paths[:workers])  # start-up and imports off the clock
        t0 = time.perf_counter()
        cpu = pool.map(_cpu_seconds, paths, chunksize=max(1, len(paths) // (8 * workers)))
        return len(paths) / (time.perf_counter() - t0), sum(cpu) / len(paths)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.bench", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help=".skeleton files or folders of them")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the files per measurement")
    args = parser.parse_args(argv)

    paths = []
    for p in map(Path, args.paths):
        paths += sorted(p.glob("*.skeleton")) if p.is_dir() else [p]
    if not paths:
        raise DataError(f"no .skeleton files in {', '.join(args.paths)}")
    workers = [int(w) for w in args.workers.split(",")]
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores before the run (other processes slow the wall-clock "
          f"rates; CPU ms/file is what this work costs)")
    with worker_setup():
        parse, select = stage_times(paths)
        print(f"{len(paths)} files, one process: parsing {parse * 1e3:.2f} ms/file, "
              f"actor selection {select * 1e3:.2f} ms/file")
        base = None
        for w in workers:
            rate, cpu = files_per_second(paths * args.repeat, w)
            base = base or rate
            projected = ", ".join(f"{name} {n / rate / 60:.1f} min" for name, n in DATASET_FILES.items())
            print(f"workers {w}: {rate:.0f} files/s ({1e3 / rate:.2f} ms/file, x{rate / base:.2f}, CPU "
                  f"{cpu * 1e3:.2f} ms/file); projected {projected}")


if __name__ == "__main__":
    run_command(main)
