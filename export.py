"""Export a linear-probe or fine-tune checkpoint for use outside training.

    python export.py output/ntu60_xsub/finetune/checkpoint-last.pth --out exported/ntu60_xsub

writes into --out:
    model.safetensors  the classifier's weights (no optimiser state)
    config.json        {'model': class, 'model_args': its arguments, 'input': the test-time preprocessing,
                       'dataset', 'actions': the action name of every class}
    model.pt2          a torch.export program of the classifier, (N, 3, T, 25, 2) float32 -> logits (N, classes)
                       for any batch size N, that runs without this repository:
                       torch.export.load('model.pt2').module()(x)
    README.txt         the input contract of model.pt2: the preprocessing that happens before it
model_transformer.load_exported(DIR) rebuilds the classifier from model.safetensors and config.json.

The export is built in a new folder beside --out, then renamed to --out: --out holds the whole new export or
the earlier one, never a mix, also when the export fails (a full disk) or is killed. An export holds a lock
beside --out (.<name>.lock); a second export into the same --out stops with one line naming its pid. The
folders of a killed export (named by util.lock.temporary, holding only export files) go at the next export.
"""
import argparse
import io
import json
import os
import stat
from pathlib import Path

import torch
from safetensors.torch import save

from model_transformer import classifier_from_checkpoint
from util import lock
from util.actions import action_names, guess_dataset
from util.config import fail
from util.flags import training_subset_note
from util.output import make_dir

INPUT_KEYS = ('p_interval', 'window_size', 'bone', 'vel')
MAX_BATCH = 65536
FILES = ('model.safetensors', 'config.json', 'model.pt2', 'README.txt')

CONTRACT = """\
MAMP classifier exported from {checkpoint}: {classes} classes{of_dataset}.

model.pt2 (torch.export; needs only torch):
    logits = torch.export.load('model.pt2').module()(x)
x: (N, 3, {frames}, 25, 2) float32, N from 1 to {max_batch}: sample, coordinate (x, y, z), frame, joint (the 25
Kinect v2 joints in NTU RGB+D order), body (2, as in the sample).
logits: (N, {classes}) float32; class c is config.json "actions"[c] (softmax gives probabilities).
model.safetensors + config.json: the same model for model_transformer.load_exported(folder).

The program holds the model only. The test-time preprocessing happens before it, as in evaluation
(feeder/feeder_ntu.py with config.json "input"):
1. A sample is a (frames, 150) float32 array as data.ntu / data.pku write it: per frame, body 1's 25 joints
   x (x, y, z), then body 2's; the frames after the last valid one are zero. Valid frames: those whose 150
   values do not sum to 0. (data.ntu also selects the actors and centres the sample on raw files.)
2. Centre crop, p_interval = {p_interval}: drop int((1 - p) * valid / 2) frames at each end of the valid ones.
3. Resample the crop linearly to window_size = {window_size} frames.
4. Lay it out as (3, {frames}, 25, 2): x[c, t, v, m] = sample[t, 75 * m + 3 * v + c].
5. bone = {bone}: when true, every joint minus its parent joint (the root's bone is 0).
6. vel = {vel}: when true, the next frame minus this frame (the last frame is 0); after bone.
"""


def export_program(model, num_bodies=2):
    """torch.export program of `model` with a dynamic batch dimension."""
    example = torch.zeros(2, model.dim_in, model.num_frames, model.num_joints, num_bodies)
    batch = torch.export.Dim('batch', min=1, max=MAX_BATCH)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def export_files(checkpoint, model, settings):
    """{file name: bytes} of the export of `model` with its checkpoint `settings`."""
    num_classes = settings['model_args'].get('num_classes', 60)
    dataset = guess_dataset(settings.get('val_feeder_args', {}).get('data_path'), num_classes)
    inputs = {k: v for k, v in settings.get('val_feeder_args', {}).items() if k in INPUT_KEYS}
    config = {'model': settings['model'], 'model_args': settings['model_args'], 'input': inputs,
              'dataset': dataset, 'actions': list(action_names(dataset)) if dataset else None}
    with torch.no_grad():
        program = export_program(model)
    buffer = io.BytesIO()  # torch writes a file path from C++, where a failed write aborts the process
    torch.export.save(program, buffer)
    contract = CONTRACT.format(checkpoint=checkpoint, classes=num_classes, max_batch=MAX_BATCH,
                               of_dataset=f" of {dataset}" if dataset else '', frames=model.num_frames,
                               **{k: inputs.get(k) for k in INPUT_KEYS})
    return {'model.safetensors': save({k: v.contiguous() for k, v in model.state_dict().items()}),
            'config.json': json.dumps(config, indent=2, default=str).encode(),
            'model.pt2': buffer.getvalue(), 'README.txt': contract.encode()}


def check_replaceable(out_dir, flag_value):
    """--out must be a new folder, or one holding nothing but an earlier export (which is replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {flag_value}: is a file; give a folder for the export")
    other = next((p.name for p in sorted(out_dir.iterdir()) if p.name not in FILES), None) if out_dir.is_dir() else None
    if other is not None:
        fail(f"--out {flag_value}: holds {other}, which is not part of an export; give a new folder, or an "
             f"earlier export's to replace it")


def swap_in(new, out_dir):
    """Rename folder `new` to `out_dir`; an earlier `out_dir` is renamed aside first (to a temporary folder of
    this export), then deleted."""
    old = lock.temporary(out_dir, folder=True)  # a killed export leaves it to remove_stale_exports
    try:
        if out_dir.exists():
            os.rename(out_dir, old)
        try:
            os.rename(new, out_dir)
        except OSError:
            if not out_dir.exists() and any(old.iterdir()):
                os.rename(old, out_dir)
            raise
    finally:
        remove_export(old)


def remove_export(folder):
    """Delete `folder` when it holds nothing but the files of an export (a staging or set-aside folder of ours)."""
    if folder.is_dir() and not folder.is_symlink() and all(p.name in FILES and p.is_file() and not p.is_symlink()
                                                           for p in folder.iterdir()):
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def remove_stale_exports(parent, name, earlier):
    """The staging and set-aside folders that a killed export (pid `earlier`, util.lock.hold) left beside `out`:
    exactly those named by util.lock.temporary for `name` and holding only export files."""
    for folder in lock.stale(parent, earlier, kind=stat.S_ISDIR):
        if lock.temporary_of(folder.name)['name'] == name:
            remove_export(folder)


def export(checkpoint, out):
    """Write the files of `checkpoint`'s export into folder `out` (see the module docstring); returns the model."""
    try:
        model, settings = classifier_from_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    note = training_subset_note(settings['val_feeder_args'], checkpoint, 'not part of the export')
    if note:
        print(note)
    out_dir = Path(out).resolve()
    check_replaceable(out_dir, out)
    parent = make_dir(out_dir.parent, '--out')
    with lock.held(parent / f'.{out_dir.name}.lock', '--out', out, 'another export') as earlier:
        check_replaceable(out_dir, out)  # again: another export may have written it meanwhile
        remove_stale_exports(parent, out_dir.name, earlier)
        files = export_files(checkpoint, model, settings)
        new = target = None
        try:
            new = target = lock.temporary(out_dir, folder=True)
            for name, data in files.items():
                target = new / name
                target.write_bytes(data)
            swap_in(new, out_dir)
        except OSError as e:
            fail(f"--out {out}: cannot write {e.filename or target}: {e.strerror or e} (free space, or write to "
                 f"another folder); an earlier export there is kept")
        finally:
            if new is not None:
                remove_export(new)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser('export.py', description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='checkpoint of main_linprobe.py or main_finetune.py')
    parser.add_argument('--out', required=True, help='folder for ' + ', '.join(FILES))
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out)
    print(f"Exported {args.checkpoint} to {args.out}: {', '.join(FILES)} (README.txt: the input of model.pt2)")


if __name__ == '__main__':
    main()
