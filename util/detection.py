"""Temporal action detection on PKU-MMD: label and proposal files, mAP_a / mAP_v scoring, frame accuracy.

A label or proposal file holds one line `label,start,end,confidence` per action instance: label the dataset's
action number (1..51), frames [start, end) of the recording (the numbers used directly as skeleton row indices,
as data.pku cuts its clips), confidence a number (the detection score in a proposal file).

Scoring follows the protocols of PKU-MMD's evaluation script (evaluate.py, github.com/ECHO960/PKU-MMD):
    mAP_a: the AP of each action over the detections of all test videos, averaged over the actions;
    mAP_v: the AP of each video over all its detections (every action ranked together), averaged over the videos;
a detection is correct when its label matches and its IoU with an instance of the same video is >= theta, with
IoU = overlap / union of [start, end) frame ranges, the script's own formula (min(e) - max(s)) / (max(e) - min(s)).

Average precision is the all-point interpolated AP of Pascal VOC (2010 on), as Simple-Skeleton-Detection
(github.com/JHang2020/Simple-Skeleton-Detection, processor/evaluate_metrics.py, VOCap) computes mAP_a:
detections ranked by decreasing score (ties in input order); a detection is a true positive when the instance
of its label it overlaps most has IoU >= theta and no higher-ranked detection took it (a second detection of
an instance is a false positive); AP = sum over the true positives of max(precision at that rank and below) /
number of instances. This matching gives the same true positives at every cut-off of the ranking as
evaluate.py's `match` and the VOC code of Simple-Skeleton-Detection.

Where we differ from evaluate.py, and why:
- its `ap` evaluates precision only at the full list and just before each true positive (it skips the cut-offs
  that end on a false positive), so a false positive ranked below every true positive halves a one-instance
  AP (0.5, where the precision-recall curve gives 1.0). All-point AP depends on the ranking alone, as in VOC and
  ActivityNet, and is what Simple-Skeleton-Detection reports as mAP_a.
- it averages mAP_a over all 51 actions (0 for an action without instances) and mAP_v over the videos that
  have a proposal file; we average over the actions that have instances and over every video of the ground
  truth, so a video without detections counts its missed actions with AP 0.
- Simple-Skeleton-Detection's iou_ratio counts both end frames (lengths end - start + 1); the label files'
  numbers are row indices [start, end) (data.pku cuts clips so), so we keep evaluate.py's exclusive ends.
"""
from collections import defaultdict

import numpy as np

from data.pipeline import BadInput
from data.pku import NUM_CLASSES, read_label_lines
from util.output import atomic_write

THETAS = (0.1, 0.3, 0.5, 0.7)


def read_intervals(path, num_frames=None, allow_overlap=True):
    """[(label, start, end, confidence)] of a label or proposal file, in file order.

    A BadInput (one line naming the file and line) for a malformed line, a start not before its end, an end past
    the recording's `num_frames` (when given), and, unless `allow_overlap` (ground truth: False; proposals may
    overlap), two lines whose frame ranges overlap.
    """
    lines = read_label_lines(path)
    for number, _, start, end, _ in lines:
        if start >= end:
            raise BadInput(path, number, f"start {start} is not before end {end}; expected label,start,end with "
                                         f"start < end")
        if num_frames is not None and end > num_frames:
            raise BadInput(path, number, f"ends at frame {end}, past the recording's {num_frames} frames")
    if not allow_overlap:
        ordered = sorted(lines, key=lambda line: (line[2], line[3]))
        for before, after in zip(ordered, ordered[1:]):
            if after[2] < before[3]:
                raise BadInput(path, after[0], f"frames {after[2]} to {after[3]} overlap line {before[0]} "
                                               f"(frames {before[2]} to {before[3]})")
    return [(label, start, end, confidence) for _, label, start, end, confidence in lines]


def write_proposals(path, segments):
    """Write the detections [(label, start, end, score)] of one recording to `path`, one line
    `label,start,end,score` each (labels as in the label files, 1..51; scores exactly as given), atomically."""
    lines = []
    for label, start, end, score in segments:
        if not 1 <= int(label) <= NUM_CLASSES or not 0 <= int(start) < int(end):
            raise ValueError(f"{path}: detection ({label}, {start}, {end}) is not an action 1..{NUM_CLASSES} over "
                             f"frames start < end")
        lines.append(f"{int(label)},{int(start)},{int(end)},{float(score)!r}\n")
    atomic_write(path, lambda tmp: tmp.write_text("".join(lines)))


def iou(a, b):
    """Intersection over union of the frame ranges [a[0], a[1]) and [b[0], b[1])."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    return max(overlap, 0) / (a[1] - a[0] + b[1] - b[0] - max(overlap, 0))


def average_precision(hits, num_instances):
    """All-point interpolated AP of detections ranked by decreasing score: hits (N,) bool, True where the
    detection is a true positive; num_instances > 0 the instances to find."""
    hits = np.asarray(hits, dtype=bool)
    if not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(envelope[hits].sum() / num_instances)


def ranked_hits(instances, detections, theta):
    """hits (N,) bool of `detections` [(video, label, start, end, score)] ranked by decreasing score (stable).

    A detection is a hit when the instance of `instances` [(video, label, start, end)] of its video and label
    that it overlaps most (the first on a tie) has IoU >= theta and no higher-ranked detection took it.
    """
    by_action = defaultdict(list)
    for video, label, start, end in instances:
        by_action[video, label].append((start, end))
    taken = set()
    order = sorted(range(len(detections)), key=lambda i: -detections[i][4])
    hits = np.zeros(len(detections), dtype=bool)
    for rank, i in enumerate(order):
        video, label, start, end, _ = detections[i]
        candidates = by_action[video, label]
        overlaps = [iou((start, end), instance) for instance in candidates]
        best = int(np.argmax(overlaps)) if overlaps else None
        if best is not None and overlaps[best] >= theta and (video, label, best) not in taken:
            taken.add((video, label, best))
            hits[rank] = True
    return hits


def score(ground_truth, proposals, thetas=THETAS):
    """{"mAP_a": {"0.1": .., ..}, "mAP_v": {..}} in percent, one entry per theta (keys f"{theta:g}").

    ground_truth: {video: [(label, start, end)]}; proposals: {video: [(label, start, end, score)]} (a video may
    be missing: no detections). mAP_a averages over the actions with instances in `ground_truth`, mAP_v over
    its videos with instances. See the module docstring for the definitions.
    """
    unknown = sorted(set(proposals) - set(ground_truth))
    if unknown:
        raise ValueError(f"proposals for {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}, which "
                         f"{'has' if len(unknown) == 1 else 'have'} no ground truth")
    instances = [(video, int(label), int(start), int(end))
                 for video, rows in ground_truth.items() for label, start, end, *_ in rows]
    detections = [(video, int(label), int(start), int(end), float(s))
                  for video, rows in proposals.items() for label, start, end, s in rows]
    actions = sorted({label for _, label, _, _ in instances})
    videos = [video for video in ground_truth if len(ground_truth[video])]
    result = {"mAP_a": {}, "mAP_v": {}}
    for theta in thetas:
        per_action = [subset_ap(instances, detections, theta, lambda row, a=a: row[1] == a) for a in actions]
        per_video = [subset_ap(instances, detections, theta, lambda row, v=v: row[0] == v) for v in videos]
        result["mAP_a"][f"{theta:g}"] = 100 * float(np.mean(per_action)) if per_action else 0.0
        result["mAP_v"][f"{theta:g}"] = 100 * float(np.mean(per_video)) if per_video else 0.0
    return result


def subset_ap(instances, detections, theta, keep):
    """AP of the instances and detections for which keep(row) holds (rows start with video, label)."""
    instances = [row for row in instances if keep(row)]
    return average_precision(ranked_hits(instances, [row for row in detections if keep(row)], theta),
                             len(instances))


def frame_accuracy(true_labels, predicted_labels):
    """Percent of frames whose predicted label (0 background, k action k) equals the true one; (F,) each."""
    true_labels, predicted_labels = np.asarray(true_labels), np.asarray(predicted_labels)
    if true_labels.shape != predicted_labels.shape or true_labels.ndim != 1:
        raise ValueError(f"expected two (frames,) label arrays of one length, got shapes {true_labels.shape} and "
                         f"{predicted_labels.shape}")
    return 100 * float(np.mean(true_labels == predicted_labels)) if len(true_labels) else 0.0
