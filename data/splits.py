"""Which samples a checkpoint was trained on: its training data file's names_train when readable, else the
benchmark's split rule (NTU: the performer, camera or set numbers of data.ntu.BENCHMARKS; PKU-MMD: the split
file beside the videos, data.pku.find_split_file), the benchmark read from the data file name (NTU60_XSub.npz).
"""
import re
import zipfile
from pathlib import Path

import numpy as np

from data import ntu, pku
from data.pipeline import DataError

BENCHMARK = re.compile(r'(ntu60|ntu120|pkuv1|pkuv2)_(xsub|xview|xset)', re.IGNORECASE)
TRAIN, TEST, UNKNOWN = 1, 0, -1


def names_train(data_path):
    """The set of names_train of a preprocessed .npz, None when it has none or cannot be read."""
    try:
        with np.load(data_path, allow_pickle=False) as z:
            return {str(n) for n in z['names_train']}
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile):
        return None


def video_of(name):
    """'0036-L_3' (the 4th instance of video 0036-L) or '0036-L_100-250' (a clip) -> '0036-L'."""
    return name.rsplit('_', 1)[0]


def split_rule(data_path, files):
    """(name -> TRAIN / TEST / UNKNOWN, description) of the benchmark that `data_path` names, or None."""
    match = BENCHMARK.search(Path(data_path or '').name)
    if match is None:
        return None
    dataset, bench = match.group(1).lower(), {'xsub': 'XSub', 'xview': 'XView', 'xset': 'XSet'}[match.group(2).lower()]
    if dataset.startswith('ntu'):
        if bench not in ntu.BENCHMARKS[dataset]:
            return None
        field, values = ntu.BENCHMARKS[dataset][bench]

        def rule(name):
            try:
                return TRAIN if ntu.parse_name(name)[field] in values else TEST
            except ValueError:
                return UNKNOWN
        return rule, f"the {dataset.upper()} {bench} split rule"
    kind = pku.BENCHMARKS.get(bench)
    for raw_dir in {Path(f).resolve().parent.parent for f in files} if kind else ():
        try:
            split_file = pku.find_split_file(raw_dir, kind, int(dataset[-1]))
            videos = pku.read_split(split_file)
        except DataError:
            continue
        return (lambda name: TRAIN if video_of(name) in videos else TEST), f"the split file {split_file}"
    return None


def training_split(settings, names, files):
    """(per sample TRAIN, TEST or UNKNOWN (N,) int8, description of the source) for the sample `names` of
    input `files` and a checkpoint's `settings`; (all UNKNOWN, None) when nothing tells."""
    train_path = settings.get('train_feeder_args', {}).get('data_path')
    known = names_train(train_path) if train_path else None
    if known is not None:
        videos = {video_of(n) for n in known}
        in_train = [n in known or video_of(n) in videos for n in names]
        return np.where(in_train, TRAIN, TEST).astype(np.int8), f"names_train of {train_path}"
    for data_path in (train_path, settings.get('val_feeder_args', {}).get('data_path')):
        found = split_rule(data_path, files)
        if found is not None:
            rule, source = found
            return np.array([rule(n) for n in names], dtype=np.int8), source
    return np.full(len(names), UNKNOWN, np.int8), None
