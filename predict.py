"""Predict the actions of skeleton recordings with a linear-probe or fine-tune checkpoint.

    python predict.py --checkpoint output/ntu60_xsub/finetune/checkpoint-last.pth S001C001P001R001A001.skeleton
    python predict.py --checkpoint CKPT data/nturgbd_raw/nturgb+d_skeletons --out predictions.csv
    python predict.py --checkpoint CKPT data/pku_raw/v1/skeleton/0002-L.txt     # each instance of label/0002-L.txt
    python predict.py --checkpoint CKPT recording.txt --start 100 --end 250     # one clip of a PKU-MMD-format file
    python predict.py --checkpoint CKPT data/ntu/NTU60_XSub.npz --split test --scores scores.npz
    python predict.py --checkpoint output/pku_v1/detect/checkpoint-last.pth recording.txt --out timeline.csv \
        --proposals proposals/    # a detector of main_detect.py: the actions found in the whole recording

Inputs take the path of training and evaluation: NTU `.skeleton` files go through data.ntu (actor selection,
centring, padding; a folder is parsed by --workers processes), PKU-MMD skeleton files through data.pku (the
labelled instances cut from the video), into a temporary `.npz` of the published layout; then the
checkpoint's own test feeder (its val_feeder_args: centre crop, resampling to the window, bone / vel) and
model, both built from the settings the checkpoint stores, once checked as a config's are. A checkpoint never
names a file that is opened: the data are the command line's, and the stored settings that choose training
samples (data_ratio, exclude_actions, ...) are not applied (a note says so when they would change the result).
Prints the top-5 actions with probabilities of every sample (or writes them to --out, .csv or .json, with the
frames of PKU-MMD instances), the top-1, top-5 and mean class accuracy where the true action is known (the `A`
field of an NTU name, a PKU-MMD label file), separately for the inputs seen in training (told by the data:
data.splits), and the speed. Inputs of another dataset than the checkpoint's, or of actions it does not know,
get a warning and no true action.
"""
import argparse
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from data import ntu
from data.pipeline import DataError, one_hot, save_npz_atomic
from data.recordings import find_inputs, ntu_samples, pku_samples
from data.splits import TEST, TRAIN, UNKNOWN, seen_in_training
from model_transformer import classifier_from_checkpoint
from util import devices, output, timeline
from util.actions import action_names, dataset_of, guess_dataset
from util.config import fail, resolve_class
from util.evaluation import predict
from util.flags import TRAINING_SUBSET, HelpFormatter, Parser, Range, training_subset_note
from util.scores import accuracies, save_scores, write_class_table

TOP = 5
DATASET_NAMES = {'ntu': 'NTU RGB+D', 'pku': 'PKU-MMD'}


def score(settings, model, data_path, split, device, batch_size):
    """(sample names, logits (N, C), labels (N,), classes of the file's one-hot labels, sample digests) of a split
    of a preprocessed .npz, through the checkpoint's test feeder (its checked val_feeder_args, but those that
    choose training samples): the evaluation path."""
    feeder_args = {k: v for k, v in settings['val_feeder_args'].items() if k not in TRAINING_SUBSET}
    feeder_args.update(data_path=str(data_path), split=split)
    try:
        feeder = resolve_class('feeder', settings['feeder'], 'checkpoint: args.feeder')
        dataset = feeder(**feeder_args)
    except (OSError, ValueError) as e:
        fail(str(e))
    args = argparse.Namespace(amp='none', dist_eval=False)
    logits, labels = predict(DataLoader(dataset, batch_size=batch_size), model.to(device), device, args)
    return dataset.sample_name, logits.numpy(), labels.numpy(), dataset.num_classes, dataset.digests()


def rows(names, logits, labels, frames, actions):
    """One dict per sample: name, the true action ('' when unknown), the frames of a PKU-MMD instance (start,
    end: its first frame and the frame after its last; None otherwise) and the top-5 actions with
    probabilities."""
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1)
    top = probs.topk(min(TOP, probs.shape[1]), dim=1)
    frames = frames.tolist() if frames is not None else [(None, None)] * len(names)
    return [{'name': name, 'action': actions[label] if label >= 0 else '', 'start': start, 'end': end,
             'top': [(actions[c], round(p, 6)) for p, c in zip(ps.tolist(), cs.tolist())]}
            for name, label, (start, end), ps, cs in zip(names, labels.tolist(), frames, top.values, top.indices)]


def write_rows(path, table):
    """--out: .json (a list of the rows) or .csv (name, action, start, end, action_1, probability_1, ...)."""
    if path.suffix == '.json':
        text = json.dumps([{**r, 'top': [{'action': a, 'probability': p} for a, p in r['top']]} for r in table],
                          indent=1)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(['name', 'action', 'start', 'end']
                        + [f"{k}_{i}" for i in range(1, TOP + 1) for k in ('action', 'probability')])
        for r in table:
            writer.writerow([r['name'], r['action'], r['start'], r['end']] + [v for pair in r['top'] for v in pair])
        text = buffer.getvalue()
    output.atomic_write(path, lambda tmp: tmp.write_text(text))


def family(dataset):
    """'ntu' (NTU RGB+D 60 and 120 share their first 60 actions), 'pku' or None."""
    return dataset and ('pku' if dataset == 'pku' else 'ntu')


def report_accuracy(logits, labels, split):
    """Print the accuracy of the samples of known action: those seen in training, the others and (for a
    checkpoint without digests) those of unknown status apart."""
    groups = {TEST: ('', ' (none seen in training)'), TRAIN: ('seen-in-training ', ' (no test of the model)'),
              UNKNOWN: ('', '')}
    for value, (group, note) in groups.items():
        acc = accuracies(logits, np.where(split == value, labels, -1))
        if acc is not None:
            print(f"Accuracy on the {acc['samples']} {group}samples of known action: top-1 {acc['top1']:.2f}%, "
                  f"top-5 {acc['top5']:.2f}%, mean class {acc['mean_class']:.2f}%{note}")


def main(argv=None):
    parser = Parser('predict.py', description=__doc__.split('\n')[0], formatter_class=HelpFormatter)
    parser.add_argument('inputs', nargs='+', help='.skeleton files, PKU-MMD .txt skeleton files, folders of '
                                                  'either, or one preprocessed .npz')
    parser.add_argument('--checkpoint', required=True, help='checkpoint of main_linprobe.py or main_finetune.py')
    parser.add_argument('--out', help='write the predictions to this .csv or .json instead of printing them')
    parser.add_argument('--scores', help='also write names, logits and labels to this .npz (for ensemble.py)')
    parser.add_argument('--per_class', help='also write the top-1 accuracy of every class to this .csv (the '
                                            'samples of known action not seen in training)')
    parser.add_argument('--split', choices=('train', 'test'), default='test', help='split of an .npz input')
    parser.add_argument('--labels', help='PKU-MMD label file of the (one) skeleton file given')
    parser.add_argument('--start', type=Range(int, 0), help='first frame of the clip of a PKU-MMD-format file')
    parser.add_argument('--end', type=Range(int, 1), help='frame after the clip of a PKU-MMD-format file')
    parser.add_argument('--proposals', help='a detector: write each recording\'s proposal file <name>.txt here')
    parser.add_argument('--workers', type=Range(int, 1), default=os.cpu_count(), help='processes parsing NTU files')
    parser.add_argument('--batch_size', type=Range(int, 1), default=64)
    parser.add_argument('--device', default='auto', help="'cuda', 'cpu' or 'auto' (cuda when available)")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).suffix not in ('.csv', '.json'):
        fail(f"--out {args.out}: expected a .csv or .json file name")
    for flag in ('--out', '--scores', '--per_class'):
        output.check_output_path(getattr(args, flag[2:]), flag)
    if (args.start is None) != (args.end is None) or (args.start is not None and not 0 <= args.start < args.end):
        fail("--start and --end go together, with 0 <= start < end (frame numbers of the clip)")
    device = devices.resolve_device(args.device)
    try:
        model, settings = classifier_from_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    kind, files = find_inputs(args.inputs)
    if timeline.is_detector(settings):
        return timeline.predict_timelines(model, settings, kind, files, args, device)
    num_classes = settings['model_args'].get('num_classes', 60)
    dataset = dataset_of(settings['val_feeder_args'].get('data_path'), num_classes)  # by the name: never opened
    note = training_subset_note(settings['val_feeder_args'], args.checkpoint, 'not applied, every input is scored')
    if note:
        print(note)
    if settings['train_digests'] is None:
        print(f"note: {args.checkpoint} stores no digests of its training samples (written before they were kept): "
              f"no input is marked as seen in training")
    if (args.start is not None or args.labels) and kind != 'pku':
        fail("--labels, --start and --end apply to PKU-MMD .txt skeleton files")
    if args.labels and len(files) > 1:
        fail(f"--labels {args.labels}: one label file for {len(files)} skeleton files; give one skeleton file")

    began = time.perf_counter()
    frames = None
    if kind == 'npz':
        names, logits, labels, file_classes, digests = score(settings, model, files[0], args.split, device,
                                                             args.batch_size)
        inputs = guess_dataset(files[0], file_classes) or (dataset if file_classes == num_classes else None)
    else:
        try:
            if kind == 'ntu':
                names, x, labels, frames = ntu_samples(files, args.workers, ntu.SINGLE_ACTOR.get(dataset, 'zeros'))
            else:
                names, x, labels, frames = pku_samples(files, args.workers, args.labels, args.start, args.end)
        except DataError as e:
            fail(str(e))
        if not names:
            fail("no sample to predict")
        with tempfile.TemporaryDirectory() as tmp:
            data_path = Path(tmp) / 'samples.npz'
            save_npz_atomic(data_path, {'x_test': x, 'y_test': one_hot(np.zeros(len(x), int), num_classes),
                                        'names_test': np.array(names, dtype=str)})
            names, logits, _, _, digests = score(settings, model, data_path, 'test', device, args.batch_size)
        inputs = kind
    seconds = time.perf_counter() - began

    if family(inputs) != family(dataset):
        inputs, model_of = DATASET_NAMES.get(family(inputs), 'another dataset'), DATASET_NAMES[family(dataset)]
        print(f"warning: the inputs are {inputs} recordings, {args.checkpoint} is a {model_of} model: its "
              f"predictions are {model_of} actions, and no true action is shown or scored", file=sys.stderr)
        labels = np.full(len(names), -1)
    unknown = int((labels >= num_classes).sum())
    if unknown:
        last = action_names(dataset)[min(num_classes, len(action_names(dataset))) - 1]
        print(f"warning: {unknown} of the {len(names)} inputs are of actions {args.checkpoint} does not know (its "
              f"{num_classes} actions end at {last!r}): no true action is shown or scored for them", file=sys.stderr)
    labels = np.where(labels < num_classes, labels, -1)
    split = seen_in_training(settings.get('train_digests'), digests)

    table = rows(names, logits, labels, frames, action_names(dataset))
    if args.out:
        write_rows(Path(args.out), table)
    else:
        for r in table:
            truth = f" (true: {r['action']})" if r['action'] else ''
            print(f"{r['name']}{truth}: " + ', '.join(f"{a} {p:.1%}" for a, p in r['top']))
    report_accuracy(logits, labels, split)
    if kind == 'npz':
        print(f"{len(names)} samples of {files[0]} in {seconds:.2f} s: {len(names) / seconds:.1f} samples/s")
    else:
        print(f"{len(names)} samples from {len(files)} files in {seconds:.2f} s: {len(files) / seconds:.1f} "
              f"files/s, {len(names) / seconds:.1f} samples/s")
    if args.out:
        print(f"Predictions (top-{TOP} actions of every sample) written to {args.out}")
    if args.scores:
        save_scores(args.scores, names, logits, labels)
        print(f"Scores (names, logits, labels; -1: unknown) of {len(names)} samples written to {args.scores} "
              f"(for ensemble.py)")
    if args.per_class:
        write_class_table(args.per_class, logits, np.where(split == TRAIN, -1, labels), action_names(dataset))
        print(f"Top-1 accuracy of every class (samples of known action not seen in training) written to "
              f"{args.per_class}")
    return names, logits, labels


if __name__ == '__main__':
    main()
