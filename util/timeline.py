"""The timeline of a raw recording under a detection checkpoint of main_detect.py (predict.py's detection
mode): each detected action with its first frame and the frame after its last, the times at 30 fps, its score
and name; printed, and written as a proposal file (util.detection.write_proposals) and as CSV or JSON."""
import csv
import io
import json
from pathlib import Path

import torch

from data.pipeline import DataError
from data.pku import NUM_CLASSES, read_pku_skeleton
from engine_detect import detect_recording
from util import output
from util.actions import action_names
from util.config import fail
from util.detection import write_proposals

FPS = 30  # PKU-MMD's Kinect v2 frame rate
DETECTOR = 'model_detect.FrameDetector'


def is_detector(settings):
    """True for the settings of a main_detect.py checkpoint."""
    return settings.get('model') == DETECTOR


def check_detector(settings, where):
    """Stop with one line unless the detector's classes are background and the PKU-MMD actions."""
    classes = settings['model_args'].get('num_classes')
    if classes != NUM_CLASSES + 1:
        fail(f"{where}: a detector of {classes} classes; the timeline names background and the {NUM_CLASSES} "
             f"PKU-MMD actions ({NUM_CLASSES + 1} classes)")


def recording_segments(model, settings, path, device):
    """(frames of the recording, segments [(action, start, end, score)]) of a PKU-MMD-format skeleton file,
    with the test windows of the checkpoint's val_feeder_args and its --smooth and --threshold."""
    windows = settings['val_feeder_args']
    try:
        frames = torch.from_numpy(read_pku_skeleton(path).astype('float32'))
    except DataError as e:
        fail(str(e))
    if len(frames) < windows['window']:
        fail(f"{path}: {len(frames)} frames, fewer than one window of {windows['window']}: too short to detect "
             f"actions in (predict.py --start 0 --end {len(frames)} classifies it as one clip)")
    _, segments = detect_recording(model.to(device), frames, windows['window'], windows['hop'],
                                   windows['window_size'], windows.get('p_interval', 1.0), settings['smooth'],
                                   settings['threshold'], device)
    return len(frames), segments


def timeline_rows(segments):
    """One dict per segment: action number and name, start and end frames, times in seconds, score."""
    names = action_names('pku')
    return [{'action_number': label, 'action': names[label - 1], 'start': start, 'end': end,
             'start_s': round(start / FPS, 3), 'end_s': round(end / FPS, 3), 'score': round(score, 6)}
            for label, start, end, score in segments]


def write_rows(path, rows):
    """Rows of every recording (each with its 'recording') as .csv or .json, whole or not at all."""
    if Path(path).suffix == '.json':
        text = json.dumps(rows, indent=1)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, ['recording', 'action_number', 'action', 'start', 'end', 'start_s', 'end_s',
                                         'score'])
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    output.atomic_write(path, lambda tmp: tmp.write_text(text))


def print_timeline(name, length, rows):
    print(f"{name}: {length} frames ({length / FPS:.1f} s), {len(rows)} action(s) detected")
    for r in rows:
        print(f"  {r['start_s']:8.2f} s - {r['end_s']:8.2f} s  frames {r['start']:>6} - {r['end']:<6}  "
              f"score {r['score']:.3f}  {r['action']} ({r['action_number']})")


def predict_timelines(model, settings, kind, files, args, device):
    """predict.py with a detection checkpoint: the timeline of each PKU-MMD-format recording; --out: the rows as
    .csv or .json; --proposals DIR: <recording>.txt proposal files. Returns {recording: rows}."""
    check_detector(settings, args.checkpoint)
    if kind != 'pku' or args.start is not None or args.labels:
        fail(f"{args.checkpoint} is a detector (main_detect.py): give PKU-MMD-format skeleton files (.txt) "
             f"without --start, --end or --labels; it finds the actions in each whole recording")
    if args.proposals:
        output.make_dir(args.proposals, '--proposals')
    timelines, every = {}, []
    for path in files:
        length, segments = recording_segments(model, settings, path, device)
        rows = timelines[path.stem] = timeline_rows(segments)
        print_timeline(path.stem, length, rows)
        every += [{'recording': path.stem, **r} for r in rows]
        if args.proposals:
            write_proposals(Path(args.proposals) / f"{path.stem}.txt", segments)
    if args.out:
        write_rows(args.out, every)
        print(f"Timeline written to {args.out}")
    if args.proposals:
        print(f"Proposal files (label,start,end,score) written to {args.proposals}")
    return timelines
