"""NTU RGB+D 60 / 120 raw `.skeleton` files -> the published training arrays.

Download the skeleton archives of NTU RGB+D (https://rose1.ntu.edu.sg/dataset/actionRecognition/) and
extract them as

    data/nturgbd_raw/
        nturgb+d_skeletons/      # nturgbd_skeletons_s001_to_s017.zip: 56,880 files (NTU-60, also NTU-120 part 1)
        nturgb+d_skeletons120/   # nturgbd_skeletons_s018_to_s032.zip: 57,600 files (NTU-120 part 2)

then run

    python -m data.ntu --dataset ntu60 --raw-dir data/nturgbd_raw/nturgb+d_skeletons --out-dir data/ntu
    python -m data.ntu --dataset ntu120 --raw-dir data/nturgbd_raw/nturgb+d_skeletons \\
        data/nturgbd_raw/nturgb+d_skeletons120 --out-dir data/ntu120

which write `NTU60_XSub.npz`, `NTU60_XView.npz` (or `NTU120_XSub.npz`, `NTU120_XSet.npz`): `x_train`,
`x_test` (N, 300, 150) float32, one-hot `y_train`, `y_test` float64, and the sample names `names_train`,
`names_test`. Files are processed by `--workers` processes (default: all cores); each file's result is
kept in `--cache-dir` (default `<out-dir>/cache`, safe to delete afterwards), so an interrupted run
resumes where it stopped. A malformed file stops the run with its name and line, or is skipped and
listed with `--skip-bad`. Files with no skeleton at all (302 in NTU-60, 535 in NTU-120) are skipped and
listed; the dataset's list of them is not needed. Existing outputs are replaced only with `--overwrite`.
`python -m data.bench data/nturgbd_raw/nturgb+d_skeletons --workers 1,2` measures the speed (data.bench).

The algorithm is the established preprocessing (see ../shared/specs/ntu_preprocessing.md), quirks kept:
1. read_skeleton (data.kinect): frames without a body are dropped; each body ID's frames are stacked
   and its interval counts up from its first valid frame.
2. select_actors: for files with several body IDs, bodies of <= 11 frames are removed, then bodies
   whose share of frames wider than tall (x extent > 0.8 * y extent) is >= 0.69754, then the rest are
   ranked by motion (summed variance of x, y, z) and placed into two actor slots without overlap;
   frames where both slots are empty are removed.
3. centre: every joint minus the spine-middle joint of actor 1's first frame.
4. pad to max(300, longest) frames; single-actor samples get zeros (NTU-60) or a copy of actor 1
   (NTU-120) in the second slot, as in the published arrays.
"""
import argparse
import os
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.kinect import NUM_JOINTS, read_skeleton
from data.pipeline import (BadInput, DataError, Rows, check_outputs, check_regular, claim_out_dir, load_cached,
                           one_hot, print_report, run_command, run_jobs, write_npz)

MIN_FRAMES = 12  # bodies tracked for fewer frames are noise
SPREAD_RATIO = 0.8  # a frame is noisy when x extent > SPREAD_RATIO * y extent
NOISY_SHARE = 0.69754  # bodies with at least this share of noisy frames are removed
MIN_LENGTH = 300
ACTOR = 3 * NUM_JOINTS  # 75 values per actor per frame
CACHE_VERSION = 1

NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
FIELDS = "SCPRA"
TRAIN_SUBJECTS_60 = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
TRAIN_SUBJECTS_120 = TRAIN_SUBJECTS_60 + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92,
    93, 94, 95, 97, 98, 100, 103)
# benchmark -> (name field that decides the split, training values)
BENCHMARKS = {
    "ntu60": {"XSub": ("P", TRAIN_SUBJECTS_60), "XView": ("C", (2, 3))},
    "ntu120": {"XSub": ("P", TRAIN_SUBJECTS_120), "XSet": ("S", tuple(range(2, 1000, 2)))},
}
NUM_CLASSES = {"ntu60": 60, "ntu120": 120}
SINGLE_ACTOR = {"ntu60": "zeros", "ntu120": "copy"}


def parse_name(name):
    """'S001C002P003R004A005' -> {'S': 1, 'C': 2, 'P': 3, 'R': 4, 'A': 5}; ValueError otherwise."""
    match = NAME.fullmatch(name)
    if not match:
        raise ValueError(f"{name!r} is not an NTU sample name like S001C001P001R001A001")
    return dict(zip(FIELDS, map(int, match.groups())))


def motion(joints):
    """Summed variance of x, y and z over all frames and joints: (n, 25, 3) float32 -> float32."""
    return np.sum(np.var(joints.reshape(-1, 3), axis=0))


def spread_valid(joints):
    """(n, 25, 3) -> (n,) bool: frame not wider than tall, x extent <= 0.8 * y extent.

    Compared in float64 like the published code (float32 extents against a float64 threshold).
    """
    extent = joints.max(axis=1) - joints.min(axis=1)
    return extent[:, 0].astype(np.float64) <= SPREAD_RATIO * extent[:, 1].astype(np.float64)


def select_actors(skeleton):
    """Denoise a parsed file and choose at most two actors.

    Returns (joints, counts): joints (frames, 75) for one actor or (frames, 150) for two, float32,
    untranslated, or None when every body was removed; counts: bodies removed by the `length` and
    `spread` rules, bodies dropped for `overlap` with both actors, and `frames_removed` (frames where no
    kept actor is present, removed for files with several body IDs).
    """
    bodies, num_frames = skeleton.bodies, skeleton.num_frames
    counts = {"length": 0, "spread": 0, "overlap": 0, "frames_removed": 0}
    if len(bodies) == 1:
        return _place([next(iter(bodies.values()))], num_frames, skeleton.path), counts

    body_motion = {body_id: motion(body.joints) for body_id, body in bodies.items()}
    kept = [body_id for body_id, body in bodies.items() if len(body.interval) >= MIN_FRAMES]
    counts["length"] = len(bodies) - len(kept)
    if len(kept) > 1:
        for body_id in list(kept):
            if len(kept) == 1:
                break
            valid = spread_valid(bodies[body_id].joints)
            noisy = len(valid) - np.count_nonzero(valid)
            if noisy == 0:
                continue
            if noisy / len(valid) >= NOISY_SHARE:
                kept.remove(body_id)
                counts["spread"] += 1
            else:
                body_motion[body_id] = min(body_motion[body_id], motion(bodies[body_id].joints[valid]))
    if not kept:
        return None, counts

    ranked = sorted(kept, key=lambda body_id: body_motion[body_id], reverse=True)
    if len(ranked) == 1:
        joints = _place([bodies[ranked[0]]], num_frames, skeleton.path)
    else:
        joints, counts["overlap"] = _place_two(ranked, bodies, num_frames, skeleton.path)
    present = joints.sum(axis=1) != 0
    counts["frames_removed"] = len(joints) - np.count_nonzero(present)
    return joints[present], counts


def _place(bodies, num_frames, path, joints=None, column=0):
    """Write each body's frames at rows interval[0]..interval[-1] of `joints` (zeros (frames, 75) if None)."""
    if joints is None:
        joints = np.zeros((num_frames, ACTOR), np.float32)
    for body in bodies:
        start, length = int(body.interval[0]), len(body.interval)
        if start + length > num_frames:
            raise BadInput(path, None, f"a body has {length} frames from frame {start + 1}, past the "
                                       f"file's {num_frames} frames (a body ID repeated within a frame?)")
        joints[start:start + length, column:column + ACTOR] = body.joints.reshape(length, ACTOR)
    return joints


def _place_two(ranked, bodies, num_frames, path):
    """Actor 1 = the most moving body; every other body, in motion order, joins actor 1's slot if its
    interval does not overlap actor 1's (sharing one frame is no overlap), else actor 2's slot on the
    same test, else it is dropped. Returns ((frames, 150) joints, number of dropped bodies)."""
    joints = np.zeros((num_frames, 2 * ACTOR), np.float32)
    slots = [None, [0, 0]]  # [start, end] of each slot; actor 2's starts as the virtual [0, 0]
    dropped = 0
    for body_id in ranked:
        body = bodies[body_id]
        start, end = int(body.interval[0]), int(body.interval[-1])
        if slots[0] is None:
            slot = 0
        else:
            slot = next((s for s in (0, 1) if min(slots[s][1], end) - max(slots[s][0], start) <= 0), None)
        if slot is None:
            dropped += 1
            continue
        _place([body], num_frames, path, joints, slot * ACTOR)
        slots[slot] = [start, end] if slots[slot] is None else [min(start, slots[slot][0]), max(end, slots[slot][1])]
    return joints, dropped


def centre(joints):
    """Translate so actor 1's spine-middle joint (joint 2) in its first non-empty frame is the origin.

    joints: (frames, 75 or 150) float32; returns a new array. For two actors, frames where an actor's
    75 values summed to 0 are set back to 0 for that actor; a single actor's empty frames are shifted
    like the others (the published behaviour).
    """
    out = joints.copy()
    first = np.flatnonzero(np.any(out[:, :ACTOR] != 0, axis=1))[0]
    origin = out[first, 3:6].copy()
    empty = [out[:, s:s + ACTOR].sum(axis=1) == 0 for s in range(0, out.shape[1], ACTOR)]
    out -= np.tile(origin, out.shape[1] // 3)
    if out.shape[1] == 2 * ACTOR:
        for s, rows in enumerate(empty):
            out[rows, s * ACTOR:(s + 1) * ACTOR] = 0
    return out


def pad(joints, length, single_actor):
    """(frames, 75 or 150) -> (length, 150) float32 with zero rows after the last frame.

    single_actor: 'zeros' leaves the second slot of a one-actor sample empty, 'copy' repeats actor 1.
    """
    out = np.zeros((length, 2 * ACTOR), np.float32)
    out[:len(joints), :joints.shape[1]] = joints
    if joints.shape[1] == ACTOR and single_actor == "copy":
        out[:len(joints), ACTOR:] = joints
    return out


def split(names, field, train_values):
    """Row indices (train, test) of a benchmark, in the published order: grouped by the value of `field`
    ascending (samples with a training value first go to train, the others to test), and within one
    value in the order of `names` (sorted file names)."""
    values = np.array([parse_name(n)[field] for n in names], dtype=np.int64)
    order = np.argsort(values, kind="stable")
    is_train = np.isin(values[order], train_values)
    return order[is_train], order[~is_train]


def process_file(path):
    """Parse and denoise one file: ({'joints': (frames, 75|150) float32} or {} if no sample, stats)."""
    skeleton = read_skeleton(path)
    stats = {"frames_dropped": len(skeleton.dropped_frames), "no_skeleton": int(skeleton.num_frames == 0),
             "no_actor": 0, "length": 0, "spread": 0, "overlap": 0, "frames_removed": 0, "frames": 0}
    if stats["no_skeleton"]:
        return {}, stats
    joints, counts = select_actors(skeleton)
    stats.update(counts)
    if joints is None or not joints[:, :ACTOR].any():  # every body removed, or only zero coordinates
        stats["no_actor"] = 1
        return {}, stats
    stats["frames"] = len(joints)
    return {"joints": joints}, stats


def find_files(raw_dirs, num_classes):
    """{sample name: path} of the `.skeleton` files in `raw_dirs`, sorted by name."""
    files = {}
    for raw_dir in raw_dirs:
        if not Path(raw_dir).is_dir():
            raise DataError(f"{raw_dir}: no such folder (expected the extracted .skeleton files)")
        for path in check_regular(sorted(Path(raw_dir).glob("*.skeleton"))):
            name = path.stem
            try:
                action = parse_name(name)["A"]
            except ValueError as e:
                raise BadInput(path, None, str(e)) from None
            if not 1 <= action <= num_classes:
                raise BadInput(path, None, f"action {action} is outside 1..{num_classes} of this dataset")
            if name in files:
                raise DataError(f"{name} is in two folders: {files[name]} and {path}")
            files[name] = path
    if not files:
        raise DataError(f"no .skeleton files in {', '.join(map(str, raw_dirs))}")
    return dict(sorted(files.items()))


def write_benchmark(path, names, labels, field, train_values, num_classes, length, single_actor, cache_dir):
    """Write one benchmark's .npz, streaming the samples from the cache. Returns (train, test) sizes."""
    train, test = split(names, field, train_values)

    def samples(rows, part):
        for i in tqdm(rows, desc=f"{path.name} {part}", unit="sample", dynamic_ncols=True):
            yield pad(centre(load_cached(cache_dir, names[i])["joints"]), length, single_actor)[None]

    arrays = {}
    for part, rows in (("train", train), ("test", test)):
        arrays[f"x_{part}"] = Rows((len(rows), length, 2 * ACTOR), np.float32, samples(rows, part))
        arrays[f"y_{part}"] = one_hot(labels[rows], num_classes)
        arrays[f"names_{part}"] = np.array([names[i] for i in rows], dtype=str)
    write_npz(path, arrays)
    return len(train), len(test)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.ntu", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(BENCHMARKS), required=True)
    parser.add_argument("--raw-dir", nargs="+", action="extend", required=True,
                        help="folder(s) of .skeleton files; NTU-120: the S001-S017 and S018-S032 folders")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--cache-dir", help="per-file results (default: <out-dir>/cache)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--single-actor", choices=("zeros", "copy"),
                        help="second slot of one-actor samples (default: zeros for ntu60, copy for ntu120)")
    parser.add_argument("--skip-bad", action="store_true", help="skip malformed files (listed) instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)

    out_dir = Path(args.out_dir)
    prefix = args.dataset.upper()
    outputs = {bench: out_dir / f"{prefix}_{bench}.npz" for bench in BENCHMARKS[args.dataset]}
    num_classes = NUM_CLASSES[args.dataset]
    files = find_files(args.raw_dir, num_classes)
    cache_dir = Path(args.cache_dir or out_dir / "cache")
    claim_out_dir(out_dir, cache_dir)
    check_outputs(outputs.values(), args.overwrite)
    results, bad = run_jobs(process_file, list(files.values()), list(files), cache_dir, args.workers,
                            args.skip_bad, CACHE_VERSION, desc=f"{args.dataset} files")

    names = [n for n, s in results.items() if not (s["no_skeleton"] or s["no_actor"])]
    if not names:
        raise DataError("no sample left to write")
    length = max(MIN_LENGTH, *(results[n]["frames"] for n in names))
    labels = np.array([parse_name(n)["A"] - 1 for n in names])
    single_actor = args.single_actor or SINGLE_ACTOR[args.dataset]
    sizes = {}
    for bench, (field, train_values) in BENCHMARKS[args.dataset].items():
        sizes[bench] = write_benchmark(outputs[bench], names, labels, field, train_values, num_classes,
                                       length, single_actor, cache_dir)

    total = {k: sum(s[k] for s in results.values()) for k in results[names[0]]}
    counts = [("files read", len(files)),
              ("files skipped: no skeleton", total["no_skeleton"]),
              ("files skipped: no actor left", total["no_actor"]),
              ("files skipped: malformed", len(bad)),
              ("empty frames dropped", total["frames_dropped"]),
              ("frames removed after actor selection", total["frames_removed"]),
              (f"bodies removed: length (< {MIN_FRAMES} frames)", total["length"]),
              (f"bodies removed: spread (noisy share >= {NOISY_SHARE})", total["spread"]),
              ("bodies dropped: overlap both actors", total["overlap"]),
              ("samples", len(names)),
              ("frames per sample (padded)", length)]
    counts += [(f"{outputs[b].name}", f"train {tr}, test {te}") for b, (tr, te) in sizes.items()]
    named = {"no skeleton": [n for n, s in results.items() if s["no_skeleton"]],
             "no actor left": [n for n, s in results.items() if s["no_actor"]],
             "malformed": list(bad.values())}
    print_report(f"{args.dataset}: {out_dir}", counts, named)


if __name__ == "__main__":
    run_command(main)
