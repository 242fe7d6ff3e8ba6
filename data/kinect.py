"""The Kinect v2 `.skeleton` text format of NTU RGB+D: reader and writer.

Line 1: number of frames. Per frame: number of bodies; per body a line of 10 values (tracking ID first),
the joint count (25) and 25 lines of 12 numbers:
`x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState`.
LF and CRLF line endings are both read.
"""
import os
from collections import namedtuple

import numpy as np

from data.pipeline import BadInput
from data.text_numbers import NotANumber, TextTokens

NUM_JOINTS = 25
JOINT_VALUES = 12
BODY_VALUES = 10
_KEPT_COLUMNS = np.array([0, 1, 2, 5, 6])  # x, y, z, colorX, colorY

# joints: (n, 25, 3) float32 x, y, z; colors: (n, 25, 2) float32 colour-image x, y;
# interval: (n,) int64 valid-frame indices: first appearance, then +1 per further appearance.
Body = namedtuple("Body", "joints colors interval")
# bodies: {tracking ID (str): Body} in order of first appearance; num_frames: frames with a body;
# dropped_frames: 0-based indices of the frames without any body.
Skeleton = namedtuple("Skeleton", "path bodies num_frames dropped_frames")


def read_skeleton(path):
    """Parse a `.skeleton` file into a Skeleton; malformed input raises BadInput naming the line."""
    with open(path, "rb") as f:
        return parse_skeleton(f.read(), path)


def parse_skeleton(data, path="<bytes>"):
    """Parse the bytes of a `.skeleton` file (see read_skeleton)."""
    tokens = TextTokens(data)
    count = tokens.count.tolist()
    num_lines = len(count)
    # Value of every one-token line (frame, body and joint counts), NaN where that token is not a number.
    single = np.flatnonzero(tokens.count == 1)
    single_value = np.full(num_lines, np.nan)
    single_value[single] = _floats_or_nan(tokens, tokens.first[single])
    single_value = single_value.tolist()

    def header(line, what):
        if line >= num_lines:
            raise BadInput(path, num_lines or 1, f"file ends early: expected {what} on line {line + 1}")
        if count[line] != 1:
            raise BadInput(path, line + 1, f"expected {what} (one integer), found {count[line]} values")
        value = single_value[line]
        if not (value >= 0 and value == int(value)):
            text = tokens.text(tokens.first[line])
            raise BadInput(path, line + 1, f"expected {what} (a non-negative integer), found {text!r}")
        return int(value)

    num_frames = header(0, "the number of frames")
    line, valid = 1, -1
    dropped, body_ids, body_frames, joint_lines = [], [], [], []
    for frame in range(num_frames):
        num_bodies = header(line, f"the number of bodies of frame {frame + 1}")
        line += 1
        if num_bodies == 0:
            dropped.append(frame)
            continue
        valid += 1
        for b in range(num_bodies):
            what = f"body {b + 1} of frame {frame + 1}"
            if line >= num_lines:
                raise BadInput(path, num_lines, f"file ends early: expected the info line of {what}")
            if count[line] != BODY_VALUES:
                raise BadInput(path, line + 1, f"expected {BODY_VALUES} values for {what}, found {count[line]}")
            body_ids.append(tokens.text(tokens.first[line]))
            joints = header(line + 1, f"the joint count of {what}")
            if joints != NUM_JOINTS:
                raise BadInput(path, line + 2, f"expected {NUM_JOINTS} joints for {what}, found {joints}")
            if line + 2 + NUM_JOINTS > num_lines:
                raise BadInput(path, num_lines, f"file ends early: expected {NUM_JOINTS} joint lines for {what}")
            joint_lines.append(line + 2)
            body_frames.append(valid)
            line += 2 + NUM_JOINTS

    joint_lines = (np.array(joint_lines, dtype=np.intp)[:, None] + np.arange(NUM_JOINTS)).reshape(-1, NUM_JOINTS)
    wrong = np.flatnonzero(tokens.count[joint_lines.ravel()] != JOINT_VALUES)
    if wrong.size:
        bad_line = joint_lines.ravel()[wrong[0]]
        raise BadInput(path, bad_line + 1, f"expected {JOINT_VALUES} numbers on a joint line, found {count[bad_line]}")
    _check_numbers(tokens, line, path)
    try:
        values = tokens.floats(tokens.first[joint_lines][:, :, None] + _KEPT_COLUMNS)  # (occurrences, 25, 5)
    except NotANumber as e:
        raise BadInput(path, tokens.line_of(e.index) + 1, f"{e.text!r} is not a number") from None

    values = values.astype(np.float32)
    occurrences = {}
    for i, body_id in enumerate(body_ids):
        occurrences.setdefault(body_id, []).append(i)
    bodies = {}
    for body_id, rows in occurrences.items():
        interval = body_frames[rows[0]] + np.arange(len(rows), dtype=np.int64)
        bodies[body_id] = Body(joints=values[rows, :, :3], colors=values[rows, :, 3:], interval=interval)
    return Skeleton(path=path, bodies=bodies, num_frames=valid + 1, dropped_frames=dropped)


def _floats_or_nan(tokens, index):
    try:
        return tokens.floats(index)
    except NotANumber:
        return np.array([_float_or_nan(tokens.data[tokens.start[i]:tokens.end[i]]) for i in index])


def _float_or_nan(text):
    try:
        return float(text)
    except ValueError:
        return np.nan


def _check_numbers(tokens, num_lines, path):
    """Every token of the first `num_lines` lines must be a number (only the kept columns are converted)."""
    b = tokens.bytes[: tokens.line_end[num_lines - 1]]
    odd = np.flatnonzero((b > 32) & ((b > 57) | (b < 43) | (b == 44) | (b == 47)) & (b != 69) & (b != 101))
    for token in np.unique(np.searchsorted(tokens.start, odd, side="right") - 1).tolist():
        try:
            float(tokens.data[tokens.start[token]:tokens.end[token]])
        except ValueError:
            raise BadInput(path, tokens.line_of(token) + 1, f"{tokens.text(token)!r} is not a number") from None


def write_skeleton(path, frames, newline="\n"):
    """Write a `.skeleton` file.

    frames: list over frames; each frame a list of `(body_id, joints)` with joints a (25, 3) array of
    x, y, z in metres (an empty list is a frame with no body). The other per-joint numbers are written
    as plausible constants. Written to a temporary name, then renamed.
    """
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, joints in bodies:
            lines.append(f"{body_id} 0 1 1 1 1 0 0.1 0.2 2")
            lines.append(str(NUM_JOINTS))
            for x, y, z in np.asarray(joints, dtype=np.float64).reshape(NUM_JOINTS, 3):
                lines.append(f"{x:.7g} {y:.7g} {z:.7g} 250.5 200.5 960.5 540.5 0.5 0.5 0.5 0.5 2")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(newline.join(lines) + newline)
    os.replace(tmp, path)
