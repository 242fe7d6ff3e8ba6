"""Raw recordings -> the arrays of data.ntu / data.pku, for predict.py: NTU `.skeleton` files, PKU-MMD skeleton
files (every labelled instance, or one clip), or folders of either."""
import functools
import tempfile
from pathlib import Path

import numpy as np

from data import ntu, pku
from data.pipeline import DataError, check_regular, load_cached, run_jobs
from util.config import fail


def find_inputs(paths):
    """(kind, files) of the command line: 'ntu' (.skeleton files, folders of them), 'pku' (.txt skeleton
    files, folders of them) or 'npz' (one preprocessed file)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob('*.skeleton')) or sorted(path.glob('*.txt'))
            if not found:
                fail(f"{path}: no .skeleton or .txt skeleton files in this folder")
            try:
                files += check_regular(found)
            except DataError as e:
                fail(str(e))
        elif path.is_file():
            files.append(path)
        elif path.exists():
            fail(f"{path}: not a regular file or folder (a pipe or a device?); give the recording files")
        else:
            fail(f"{path}: no such file or folder")
    kinds = {'.skeleton': 'ntu', '.txt': 'pku', '.npz': 'npz'}
    unknown = next((f for f in files if f.suffix not in kinds), None)
    if unknown is not None:
        fail(f"{unknown}: not an NTU .skeleton, PKU-MMD .txt or preprocessed .npz file")
    found = {kinds[f.suffix] for f in files}
    if len(found) > 1 or ('npz' in found and len(files) > 1):
        fail("give either NTU .skeleton files, PKU-MMD .txt files or one .npz, not a mix")
    return found.pop(), files


def unique_names(files):
    """The files' names without suffix; two files of the same name are an error (one name, one sample)."""
    names, seen = [f.stem for f in files], set()
    twice = next((n for n in names if n in seen or seen.add(n)), None)
    if twice is not None:
        fail(f"{twice} is given twice (two files of the same name)")
    return names


def ntu_samples(files, workers, single_actor):
    """(names, x (N, frames, 150) float32, labels (N,), -1 where unknown) of NTU files, as data.ntu makes them.

    Files with no skeleton or no actor left are reported and left out.
    """
    names = unique_names(files)
    with tempfile.TemporaryDirectory() as cache:
        results, _ = run_jobs(ntu.process_file, files, names, cache, workers, False, ntu.CACHE_VERSION,
                              desc='parse')
        kept = [n for n, s in results.items() if not (s['no_skeleton'] or s['no_actor'])]
        for name in sorted(set(names) - set(kept)):
            print(f"{name}: no skeleton left after actor selection, skipped")
        joints = [ntu.centre(load_cached(cache, n)['joints']) for n in kept]
    length = max([ntu.MIN_LENGTH] + [len(j) for j in joints])
    x = np.stack([ntu.pad(j, length, single_actor) for j in joints]) if joints else np.zeros((0, length, 150))
    return kept, x, np.array([ntu_label(n) for n in kept], dtype=np.int64), None


def ntu_label(name):
    """Class of an NTU sample name (its A field), -1 for another name."""
    try:
        return ntu.parse_name(name)['A'] - 1
    except ValueError:
        return -1


def pku_samples(files, workers, label_file, start, end):
    """(names, x (N, 300, 150) float32, labels (N,), -1 where unknown, frames (N, 2): each instance's first
    frame and the frame after its last) of PKU-MMD skeleton files, as data.pku makes them: with --start/--end
    one clip per file, named <video>_<start>-<end> (shortened, with a note, when it ends past the video);
    else every instance of the label file (--labels, or label/<name> beside the skeleton/ folder), named
    <video>_<k> as in the published arrays."""
    clip = None if start is None else (start, end)
    if clip is None and not label_file:
        missing = next((f for f in files if not pku.label_file_of(f).is_file()), None)
        if missing is not None:
            fail(f"{missing}: no label file {pku.label_file_of(missing)}: give --labels FILE, or --start and --end")
    job = functools.partial(pku.process_video, label_path=label_file, clip=clip)
    names, clips, labels, frames = [], [], [], []
    with tempfile.TemporaryDirectory() as cache:
        run_jobs(job, files, unique_names(files), cache, workers, False, pku.CACHE_VERSION, desc='parse')
        for path in files:
            video = load_cached(cache, path.stem)
            if not len(video['lengths']):
                print(f"{path}: no instance with data, skipped")
            for k, label, first, length in zip(video['lines'], video['labels'], video['starts'], video['lengths']):
                if clip and first + length < end:
                    print(f"note: {path}: the clip is frames {first} to {first + length}: "
                          + ("the video ends there" if len(video['past_end']) else f"{pku.MAX_FRAMES} frames at most"))
                names.append(f"{path.stem}_{first}-{first + length}" if clip else f"{path.stem}_{k}")
                labels.append(label)
                frames.append((first, first + length))
                x = np.zeros((pku.MAX_FRAMES, pku.FRAME_VALUES), np.float32)
                x[:length] = video['video'][first:first + length]
                clips.append(x)
    x = np.stack(clips) if clips else np.zeros((0, pku.MAX_FRAMES, pku.FRAME_VALUES), np.float32)
    return names, x, np.array(labels, dtype=np.int64), np.array(frames, dtype=np.int64).reshape(-1, 2)
