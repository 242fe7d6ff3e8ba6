"""PKU-MMD Phase I / II skeleton and label files -> the published training arrays.

Download PKU-MMD (https://www.icst.pku.edu.cn/struct/Projects/PKUMMD.html) and arrange each phase as

    data/pku_raw/v1/
        skeleton/0002-L.txt ...     # one line per frame: 2 bodies x 25 joints x (x, y, z)
        label/0002-L.txt ...        # one line per action instance: label,start,end,confidence
        cross-subject.txt           # split files (also accepted: cross_subject.txt, cross_subject_v2.txt,
        cross-view.txt              #  cross_view.txt, cross_view_v2.txt)
    data/pku_raw/v2/                # the same for Phase II

then run

    python -m data.pku --phase 1 --raw-dir data/pku_raw/v1 --out-dir data/pku_v1
    python -m data.pku --phase 2 --raw-dir data/pku_raw/v2 --out-dir data/pku_v2

which write `PKUv1_XSub.npz`, `PKUv1_XView.npz` (or `PKUv2_*`): `x_train`, `x_test` (N, 300, 150) float32,
one-hot `y_train`, `y_test` (51 classes) float64, and `names_train`, `names_test` (`<video>_<k>`, the k-th
label line of the video, from 0). Every label line is a sample: skeleton frames [start, end) (label
numbers used directly as row indices), cut to 300 frames, zero-padded, values as in the file (no
centring or denoising); instances with no data (all zero) are skipped. A video is in the training part
when the split file lists it on its second line. Workers, cache, --skip-bad and --overwrite work as in
data.ntu.

Beside them, for temporal action detection, `PKUv1_XSub_untrimmed.npz` and `PKUv1_XView_untrimmed.npz`
(write_untrimmed): the same splits as whole videos with per-frame labels, from the same reading of the
files (the clip arrays' rows are slices of these). A label line that ends past its video stops the run,
as the untrimmed arrays cannot hold it; --clips-only writes the clip arrays alone (the line shortened).

Quirks of the real Phase I files (218 of the 1076 videos, 1772 instances, read clean with the defaults):
the split files list all 1076 videos under "Training videos:" and "Validataion videos:" (sic), so videos
missing from skeleton/ simply do not occur (0060-L and 0247-0250 are in neither list); the label
confidence is 0, 1 or 2 (9 lines of 0) and every line is kept, as in the published script; coordinates
are the camera's, in metres (depth about 1.8 to 3.3 m), and stay uncentred; in the two-person videos the
second body is present in nearly every frame, and where none is tracked its 75 values are zeros (68
instances). Every instance ends inside its video and is 21 to 263 frames long, so none is cut at 300;
no two label lines of a video overlap or touch, and about 63% of the frames are background.
"""
import argparse
import math
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.pipeline import (BadInput, DataError, Rows, check_outputs, check_regular, claim_out_dir, excerpt,
                           load_cached, one_hot, print_report, run_command, run_jobs, write_npz)
from data.text_numbers import NotANumber, TextTokens

NUM_CLASSES = 51
FRAME_VALUES = 150  # 2 bodies x 25 joints x 3
MAX_FRAMES = 300
CACHE_VERSION = 4
BENCHMARKS = {"XSub": "subject", "XView": "view"}


def read_pku_skeleton(path):
    """(frames, 150) float64 values of a skeleton file; blank lines are ignored."""
    with open(path, "rb") as f:
        tokens = TextTokens(f.read())
    lines = np.flatnonzero(tokens.count)
    wrong = lines[tokens.count[lines] != FRAME_VALUES]
    if wrong.size:
        raise BadInput(path, wrong[0] + 1, f"expected {FRAME_VALUES} numbers, found {tokens.count[wrong[0]]}")
    try:
        return tokens.floats(tokens.first[lines][:, None] + np.arange(FRAME_VALUES))
    except NotANumber as e:
        raise BadInput(path, tokens.line_of(e.index) + 1, f"{excerpt(e.text)} is not a number") from None


def read_label_lines(path):
    """[(line number, action number, start, end, confidence)] of a label or proposal file, one line
    `label,start,end,confidence` per action instance (integers, then a number; blank lines ignored)."""
    instances = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = [field.strip() for field in line.split(",")]
            try:
                if len(fields) != 4:
                    raise ValueError
                label, start, end = map(int, fields[:3])
                confidence = float(fields[3])
                if not math.isfinite(confidence):
                    raise ValueError
            except ValueError:
                raise BadInput(path, number, f"expected label,start,end,confidence (integers, then a number), "
                                             f"found {excerpt(line.strip())}") from None
            if not 1 <= label <= NUM_CLASSES or start < 0 or end < 0:
                raise BadInput(path, number, f"expected a label in 1..{NUM_CLASSES} and non-negative frames, "
                                             f"found {excerpt(line.strip())}")
            instances.append((number, label, start, end, confidence))
    return instances


def read_labels(path):
    """[(line index k, 0-based label, start, end, line number)] of a label file `label,start,end,confidence`."""
    return [(k, label - 1, start, end, number)
            for k, (number, label, start, end, _) in enumerate(read_label_lines(path))]


def find_split_file(raw_dir, kind, phase):
    """The split file of `kind` ('subject' or 'view') in raw_dir, under any of its published spellings."""
    suffixes = ("", "_v2") if phase == 1 else ("_v2", "")
    names = [f"cross{sep}{kind}{suffix}.txt" for suffix in suffixes for sep in "-_"]
    for name in names:
        if (Path(raw_dir) / name).is_file():
            return Path(raw_dir) / name
    raise DataError(f"{raw_dir}: no split file for cross-{kind} (looked for {', '.join(names)})")


def read_split(path):
    """Set of training videos: line 2 of a split file, names separated by ', '."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    videos = {v.strip() for v in lines[1].split(",") if v.strip()} if len(lines) > 1 else set()
    if not videos:
        raise BadInput(path, 2, "expected the training videos on line 2, separated by ', ' (found none)")
    return videos


def label_file_of(path):
    """The label file of a video's skeleton file: label/<video> beside its skeleton/ folder."""
    return path.parent.parent / "label" / path.name


def process_video(path, label_path=None, clip=None):
    """One video and its instances: ({'video', 'intervals', 'lengths', 'starts', 'labels', 'lines',
    'past_end'}, stats).

    video: the whole skeleton file, (frames, 150) float32; intervals: (label lines, 3) int64 rows (action number,
    start, end) of every label line in file order. The kept instances are the video's frames [starts, starts +
    lengths) (at most MAX_FRAMES); instances with no data (all zero) are left out. A label line whose end is not
    after its start, or that starts past the video, is an error; one that ends past the video is kept shortened,
    as the published pipeline does; its line number goes to arrays['past_end']. The label file is label/<video>
    beside the skeleton/ folder unless `label_path` is given; `clip` (start, end) instead takes those frames as
    one instance of unknown action (label -1, line 0), shortened like a label line when it ends past the video.
    """
    path = Path(path)
    skeleton = read_pku_skeleton(path).astype(np.float32)
    if clip is not None:
        if clip[0] >= len(skeleton):
            raise BadInput(path, None, f"--start {clip[0]} is past its {len(skeleton)} frames; give a start "
                                       f"below {len(skeleton)}")
        instances, source = [(0, -1, *clip, 0)], "--start/--end"
    else:
        source = Path(label_path) if label_path else label_file_of(path)
        if not source.is_file():
            raise BadInput(path, None, f"no label file {source}")
        instances = read_labels(source)
    kept, past_end = cut_instances(skeleton, instances, source, path.name)
    arrays = {"video": skeleton,
              "intervals": np.array([(label + 1, start, end) for _, label, start, end, _ in instances],
                                    dtype=np.int64).reshape(-1, 3),
              "lines": np.array([k for k, *_ in kept], dtype=np.int64),
              "labels": np.array([label for _, label, *_ in kept], dtype=np.int64),
              "starts": np.array([start for *_, start, _ in kept], dtype=np.int64),
              "lengths": np.array([length for *_, length in kept], dtype=np.int64),
              "past_end": np.array(past_end, dtype=np.int64)}
    return arrays, {"instances": len(instances), "empty": len(instances) - len(kept), "past_end": len(past_end),
                    "frames": len(skeleton)}


def cut_instances(skeleton, instances, source, video):
    """([(k, label, start, length)], [line numbers of the instances ending past the video]) of the instances
    [(k, label, start, end, line number)] of a video's (frames, 150) float32 skeleton: rows [start, end) cut
    to the video and to MAX_FRAMES; instances with no data (all zero) are left out. An instance whose end is not
    after its start, or that starts past the video, is a BadInput naming `source` (its label file) and the line.
    """
    kept, past_end = [], []
    for k, label, start, end, number in instances:
        if end <= start or start >= len(skeleton):
            raise BadInput(source, number, f"frames {start} to {end} are not within the {len(skeleton)} frames "
                                           f"of {video}: fix or delete the line")
        if end > len(skeleton):
            past_end.append(number)
        length = min(end, len(skeleton), start + MAX_FRAMES) - start
        if skeleton[start:start + length].sum() != 0:
            kept.append((k, label, start, length))
    return kept, past_end


def split_parts(videos, train_videos):
    """[("train", its videos), ("test", the others)], each in the order of `videos`."""
    return [(part, [v for v in videos if (v in train_videos) == in_part])
            for part, in_part in (("train", True), ("test", False))]


def write_benchmark(path, videos, train_videos, cache_dir):
    """Write one benchmark's .npz from the cached videos, one video in memory at a time.
    Returns (train, test) sizes."""
    arrays, sizes = {}, []
    for part, part_videos in split_parts(videos, train_videos):
        index = {v: load_cached(cache_dir, v, ("lines", "labels")) for v in part_videos}
        names = [f"{v}_{k}" for v in part_videos for k in index[v]["lines"]]
        labels = np.concatenate([index[v]["labels"] for v in part_videos] or [np.zeros(0, np.int64)])

        def samples(part_videos=part_videos, part=part):
            for v in tqdm(part_videos, desc=f"{path.name} {part}", unit="video", dynamic_ncols=True):
                video = load_cached(cache_dir, v, ("video", "starts", "lengths"))
                for start, length in zip(video["starts"], video["lengths"]):
                    out = np.zeros((1, MAX_FRAMES, FRAME_VALUES), np.float32)
                    out[0, :length] = video["video"][start:start + length]
                    yield out

        arrays[f"x_{part}"] = Rows((len(names), MAX_FRAMES, FRAME_VALUES), np.float32, samples())
        arrays[f"y_{part}"] = one_hot(labels, NUM_CLASSES)
        arrays[f"names_{part}"] = np.array(names, dtype=str)
        sizes.append(len(names))
    write_npz(path, arrays)
    return tuple(sizes)


def write_untrimmed(path, videos, train_videos, cache_dir, frames):
    """Write one benchmark's untrimmed .npz (whole videos, per-frame labels) from the cached videos, one video in
    memory at a time; `frames` {video: its frame count}. Returns ((videos, frames, intervals) of train, of test).

    Per part s: x_s (F, 150) float32 the videos one after another; offsets_s (V + 1,) int64, video v is rows
    offsets[v]:offsets[v + 1]; frame_labels_s (F,) int64, 0 background, k the action number of the label line
    over its rows [start, end) (where lines overlap, the later line's); names_s (V,) str; intervals_s (M, 4)
    int64 rows (video index, action number, start, end) of every label line. Every line must end inside its video.
    """
    arrays, sizes = {}, []
    for part, part_videos in split_parts(videos, train_videos):
        offsets = np.concatenate([[0], np.cumsum([frames[v] for v in part_videos], dtype=np.int64)])
        frame_labels = np.zeros(offsets[-1], np.int64)
        intervals = [np.zeros((0, 4), np.int64)]
        for i, v in enumerate(part_videos):
            rows = load_cached(cache_dir, v, ("intervals",))["intervals"]
            for label, start, end in rows:
                frame_labels[offsets[i] + start:offsets[i] + end] = label
            intervals.append(np.column_stack([np.full(len(rows), i, np.int64), rows]))

        def whole_videos(part_videos=part_videos, part=part):
            for v in tqdm(part_videos, desc=f"{path.name} {part}", unit="video", dynamic_ncols=True):
                yield load_cached(cache_dir, v, ("video",))["video"]

        arrays[f"x_{part}"] = Rows((offsets[-1], FRAME_VALUES), np.float32, whole_videos())
        arrays[f"offsets_{part}"] = offsets
        arrays[f"frame_labels_{part}"] = frame_labels
        arrays[f"names_{part}"] = np.array(part_videos, dtype=str)
        arrays[f"intervals_{part}"] = np.concatenate(intervals)
        sizes.append((len(part_videos), int(offsets[-1]), len(arrays[f"intervals_{part}"])))
    write_npz(path, arrays)
    return tuple(sizes)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.pku", description=__doc__.split("\n")[0])
    parser.add_argument("--phase", type=int, choices=(1, 2), required=True)
    parser.add_argument("--raw-dir", required=True, help="folder holding skeleton/, label/ and the split files")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--cache-dir", help="per-video results (default: <out-dir>/cache)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--skip-bad", action="store_true", help="skip malformed videos (listed) instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--clips-only", action="store_true",
                        help="write the clip arrays alone, not the untrimmed ones (accepts label lines that end past "
                             "their video, shortened as the published pipeline does)")
    args = parser.parse_args(argv)

    raw_dir, out_dir = Path(args.raw_dir), Path(args.out_dir)
    outputs = {bench: out_dir / f"PKUv{args.phase}_{bench}.npz" for bench in BENCHMARKS}
    untrimmed = {} if args.clips_only else {bench: out_dir / f"PKUv{args.phase}_{bench}_untrimmed.npz"
                                            for bench in BENCHMARKS}
    split_files = {bench: find_split_file(raw_dir, kind, args.phase) for bench, kind in BENCHMARKS.items()}
    splits = {bench: read_split(path) for bench, path in split_files.items()}
    skeleton_dir = raw_dir / "skeleton"
    paths = check_regular(sorted(skeleton_dir.glob("*.txt"))) if skeleton_dir.is_dir() else []
    if not paths:
        raise DataError(f"{skeleton_dir}: no skeleton .txt files")
    cache_dir = Path(args.cache_dir or out_dir / "cache")
    claim_out_dir(out_dir, cache_dir)
    check_outputs([*outputs.values(), *untrimmed.values()], args.overwrite)
    results, bad = run_jobs(process_video, paths, [p.stem for p in paths], cache_dir, args.workers,
                            args.skip_bad, CACHE_VERSION, desc=f"PKU-MMD phase {args.phase} videos")
    videos = list(results)
    if not videos:
        raise DataError("no video left to write")
    for bench, train_videos in splits.items():
        if not train_videos & set(videos):
            raise DataError(f"{split_files[bench]}: names none of the {len(videos)} videos in {skeleton_dir} as "
                            f"training videos; give the split file of these videos")
    past_end = [f"{raw_dir / 'label' / v}.txt:{line}" for v in videos
                for line in load_cached(cache_dir, v, ("past_end",))["past_end"]]
    if past_end and untrimmed:
        more = f" (and {len(past_end) - 1} more lines)" if len(past_end) > 1 else ""
        raise DataError(f"{past_end[0]}: the label line ends past its video{more}; the untrimmed arrays need every "
                        f"line inside its video: fix or delete the line, or pass --clips-only to write the clip "
                        f"arrays alone (the line shortened, as the published pipeline does)")
    sizes = {bench: write_benchmark(outputs[bench], videos, splits[bench], cache_dir) for bench in BENCHMARKS}
    frames = {v: results[v]["frames"] for v in videos}
    untrimmed_sizes = {bench: write_untrimmed(path, videos, splits[bench], cache_dir, frames)
                       for bench, path in untrimmed.items()}

    counts = [("videos read", len(paths)),
              ("videos skipped: malformed", len(bad)),
              ("frames", sum(frames.values())),
              ("instances", sum(s["instances"] for s in results.values())),
              ("instances skipped: no data", sum(s["empty"] for s in results.values())),
              ("instances shortened: end past the video", len(past_end))]
    counts += [(outputs[b].name, f"train {tr}, test {te}") for b, (tr, te) in sizes.items()]
    counts += [(untrimmed[b].name, ", ".join(f"{part} {v} videos, {f} frames, {m} intervals"
                                              for part, (v, f, m) in zip(("train", "test"), parts)))
               for b, parts in untrimmed_sizes.items()]
    print_report(f"PKU-MMD phase {args.phase}: {out_dir}", counts,
                 {"malformed": list(bad.values()), "shortened (end past the video)": past_end})


if __name__ == "__main__":
    run_command(main)
