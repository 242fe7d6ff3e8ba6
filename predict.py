"""Predict the actions of skeleton recordings with a linear-probe or fine-tune checkpoint.

    python predict.py --checkpoint output/ntu60_xsub/finetune/checkpoint-last.pth S001C001P001R001A001.skeleton
    python predict.py --checkpoint CKPT data/nturgbd_raw/nturgb+d_skeletons --out predictions.csv
    python predict.py --checkpoint CKPT data/pku_raw/v1/skeleton/0002-L.txt     # each instance of label/0002-L.txt
    python predict.py --checkpoint CKPT recording.txt --start 100 --end 250     # one clip of a PKU-MMD-format file
    python predict.py --checkpoint CKPT data/ntu/NTU60_XSub.npz --split test --scores scores.npz

Inputs take the path of training and evaluation: NTU `.skeleton` files go through data.ntu (actor selection,
centring, padding; a folder is parsed by --workers processes), PKU-MMD skeleton files through data.pku (the
labelled instances cut from the video), into a temporary `.npz` of the published layout; then the
checkpoint's own test feeder (its val_feeder_args: centre crop, resampling to the window, bone / vel) and
model, both built from the settings the checkpoint stores. Prints the top-5 actions with probabilities of
every sample (or writes them to --out, .csv or .json), the accuracy where the true action is known (the
`A` field of an NTU name, a PKU-MMD label file), and the speed in files/s.
"""
import argparse
import csv
import functools
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from data import ntu, pku
from data.pipeline import DataError, load_cached, one_hot, run_jobs, save_npz_atomic
from engine_finetune import predict
from model_transformer import classifier_from_checkpoint
from util import misc
from util.actions import action_names, dataset_of
from util.config import fail, resolve_class
from util.scores import save_scores, topk_accuracy

TOP = 5


def find_inputs(paths):
    """(kind, files) of the command line: 'ntu' (.skeleton files, folders of them), 'pku' (.txt skeleton
    files, folders of them) or 'npz' (one preprocessed file)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob('*.skeleton')) or sorted(path.glob('*.txt'))
            if not found:
                fail(f"{path}: no .skeleton or .txt skeleton files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
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


def ntu_samples(files, workers, single_actor, num_classes):
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
    return kept, x, np.array([ntu_label(n, num_classes) for n in kept], dtype=np.int64)


def ntu_label(name, num_classes):
    """Class of an NTU sample name (its A field), -1 for another name or an action beyond the model's."""
    try:
        label = ntu.parse_name(name)['A'] - 1
    except ValueError:
        return -1
    return label if label < num_classes else -1


def pku_samples(files, workers, label_file, start, end):
    """(names, x (N, 300, 150) float32, labels (N,), -1 where unknown) of PKU-MMD skeleton files, as data.pku
    makes them: with --start/--end one clip per file, named <video>_<start>-<end>; else every instance of the
    label file (--labels, or label/<name> beside the skeleton/ folder), named <video>_<k> as in the published
    arrays."""
    clip = None if start is None else (start, end)
    if clip is None and not label_file:
        missing = next((f for f in files if not pku.label_file_of(f).is_file()), None)
        if missing is not None:
            fail(f"{missing}: no label file {pku.label_file_of(missing)}: give --labels FILE, or --start and --end")
    job = functools.partial(pku.process_video, label_path=label_file, clip=clip)
    names, clips, labels = [], [], []
    with tempfile.TemporaryDirectory() as cache:
        run_jobs(job, files, unique_names(files), cache, workers, False, pku.CACHE_VERSION, desc='parse')
        for path in files:
            video = load_cached(cache, path.stem)
            if not len(video['lengths']):
                print(f"{path}: no instance with data, skipped")
            offsets = np.cumsum(video['lengths']) - video['lengths']
            for k, label, offset, length in zip(video['lines'], video['labels'], offsets, video['lengths']):
                names.append(f"{path.stem}_{start}-{end}" if clip else f"{path.stem}_{k}")
                labels.append(label)
                x = np.zeros((pku.MAX_FRAMES, pku.FRAME_VALUES), np.float32)
                x[:length] = video['frames'][offset:offset + length]
                clips.append(x)
    x = np.stack(clips) if clips else np.zeros((0, pku.MAX_FRAMES, pku.FRAME_VALUES), np.float32)
    return names, x, np.array(labels, dtype=np.int64)


def score(settings, model, data_path, split, device, batch_size):
    """(sample names, logits (N, C), labels (N,)) of a split of a preprocessed .npz, through the checkpoint's
    test feeder: the evaluation path."""
    feeder_args = {**settings['val_feeder_args'], 'data_path': str(data_path), 'split': split}
    try:
        feeder = resolve_class('feeder', settings.get('feeder', 'feeder.feeder_ntu.Feeder'), 'checkpoint: args.feeder')
        dataset = feeder(**feeder_args)
    except (OSError, ValueError) as e:
        fail(str(e))
    args = argparse.Namespace(amp='none', dist_eval=False)
    logits, labels = predict(DataLoader(dataset, batch_size=batch_size), model.to(device), device, args)
    return dataset.sample_name, logits.numpy(), labels.numpy()


def rows(names, logits, labels, actions):
    """One dict per sample: name, the true action ('' when unknown) and the top-5 actions with probabilities."""
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1)
    top = probs.topk(min(TOP, probs.shape[1]), dim=1)
    return [{'name': name, 'action': actions[label] if label >= 0 else '',
             'top': [(actions[c], round(p, 6)) for p, c in zip(ps.tolist(), cs.tolist())]}
            for name, label, ps, cs in zip(names, labels.tolist(), top.values, top.indices)]


def write_rows(path, table):
    """--out: .json (a list of the rows) or .csv (name, action, action_1, probability_1, ...)."""
    if path.suffix == '.json':
        text = json.dumps([{**r, 'top': [{'action': a, 'probability': p} for a, p in r['top']]} for r in table],
                          indent=1)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(['name', 'action'] + [f"{k}_{i}" for i in range(1, TOP + 1) for k in ('action', 'probability')])
        for r in table:
            writer.writerow([r['name'], r['action']] + [v for pair in r['top'] for v in pair])
        text = buffer.getvalue()
    misc.atomic_write(path, lambda tmp: tmp.write_text(text))


def main(argv=None):
    parser = argparse.ArgumentParser('predict.py', description=__doc__.split('\n')[0])
    parser.add_argument('inputs', nargs='+', help='.skeleton files, PKU-MMD .txt skeleton files, folders of '
                                                  'either, or one preprocessed .npz')
    parser.add_argument('--checkpoint', required=True, help='checkpoint of main_linprobe.py or main_finetune.py')
    parser.add_argument('--out', help='write the predictions to this .csv or .json instead of printing them')
    parser.add_argument('--scores', help='also write names, logits and labels to this .npz (for ensemble.py)')
    parser.add_argument('--split', choices=('train', 'test'), default='test', help='split of an .npz input')
    parser.add_argument('--labels', help='PKU-MMD label file of the (one) skeleton file given')
    parser.add_argument('--start', type=int, help='first frame of the clip of a PKU-MMD-format file')
    parser.add_argument('--end', type=int, help='frame after the clip of a PKU-MMD-format file')
    parser.add_argument('--workers', type=int, default=os.cpu_count(), help='processes parsing NTU files')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--device', default='auto', help="'cuda', 'cpu' or 'auto' (cuda when available)")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).suffix not in ('.csv', '.json'):
        fail(f"--out {args.out}: expected a .csv or .json file name")
    if (args.start is None) != (args.end is None) or (args.start is not None and not 0 <= args.start < args.end):
        fail("--start and --end go together, with 0 <= start < end (frame numbers of the clip)")
    if args.batch_size < 1 or args.workers < 1:
        fail("--batch_size and --workers must be at least 1")
    device = misc.resolve_device(args.device)
    try:
        model, settings = classifier_from_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    num_classes = settings['model_args'].get('num_classes', 60)
    dataset = dataset_of(settings['val_feeder_args'].get('data_path'), num_classes)
    kind, files = find_inputs(args.inputs)
    if (args.start is not None or args.labels) and kind != 'pku':
        fail("--labels, --start and --end apply to PKU-MMD .txt skeleton files")
    if args.labels and len(files) > 1:
        fail(f"--labels {args.labels}: one label file for {len(files)} skeleton files; give one skeleton file")

    began = time.perf_counter()
    if kind == 'npz':
        names, logits, labels = score(settings, model, files[0], args.split, device, args.batch_size)
    else:
        try:
            if kind == 'ntu':
                names, x, labels = ntu_samples(files, args.workers, ntu.SINGLE_ACTOR.get(dataset, 'zeros'),
                                               num_classes)
            else:
                names, x, labels = pku_samples(files, args.workers, args.labels, args.start, args.end)
        except DataError as e:
            fail(str(e))
        if not names:
            fail("no sample to predict")
        with tempfile.TemporaryDirectory() as tmp:
            data_path = Path(tmp) / 'samples.npz'
            save_npz_atomic(data_path, {'x_test': x, 'y_test': one_hot(np.maximum(labels, 0), num_classes),
                                        'names_test': np.array(names, dtype=str)})
            names, logits, _ = score(settings, model, data_path, 'test', device, args.batch_size)
    seconds = time.perf_counter() - began

    table = rows(names, logits, labels, action_names(dataset))
    if args.out:
        write_rows(Path(args.out), table)
    else:
        for r in table:
            truth = f" (true: {r['action']})" if r['action'] else ''
            print(f"{r['name']}{truth}: " + ', '.join(f"{a} {p:.1%}" for a, p in r['top']))
    if args.scores:
        save_scores(args.scores, names, logits, labels)
    known = labels >= 0
    if known.any():
        top1, top5 = (topk_accuracy(logits[known], labels[known], k) for k in (1, 5))
        print(f"Accuracy on the {known.sum()} samples of known action: top-1 {top1:.2f}%, top-5 {top5:.2f}%")
    print(f"{len(names)} samples from {len(files)} files in {seconds:.2f} s: {len(files) / seconds:.1f} files/s"
          + (f"; predictions written to {args.out}" if args.out else ''))
    return names, logits, labels


if __name__ == '__main__':
    main()
