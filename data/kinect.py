"""The Kinect v2 `.skeleton` text format of NTU RGB+D: reader and writer.

Line 1: number of frames. Per frame: number of bodies; per body a line of 10 values (tracking ID first),
the joint count (25) and 25 lines of 12 numbers:
`x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState`.
LF and CRLF line endings are both read.
"""
from collections import namedtuple

import numpy as np

from data.pipeline import BadInput, excerpt, write_text
from data.text_numbers import NotANumber, TextTokens

NUM_JOINTS = 25
JOINT_VALUES = 12
BODY_VALUES = 10
BODY_LINES = 2 + NUM_JOINTS  # info line, joint count, joint lines
_KEPT_COLUMNS = np.array([0, 1, 2, 5, 6])  # x, y, z, colorX, colorY
_NUMBER_BYTES = b"0123456789+-.Ee" + bytes(range(33))  # and whitespace / control bytes
_EXPECTED_COUNTS = np.array([BODY_VALUES, 1] + [JOINT_VALUES] * NUM_JOINTS)  # tokens per line of a body block

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
    num_lines = tokens.num_lines
    line_end = tokens.line_end.tolist()

    def count(line):
        """The non-negative integer alone on `line`, else -1."""
        try:
            return int(data[line_end[line - 1] + 1 if line else 0:line_end[line]]) if line < num_lines else -1
        except ValueError:
            return -1

    def count_error(line, what):
        _check_bodies(tokens, body_lines, path)  # an earlier malformed body is the real cause
        if line >= num_lines:
            return BadInput(path, max(num_lines, 1), f"file ends early: expected {what} on line {line + 1}")
        found = data[line_end[line - 1] + 1 if line else 0:line_end[line]].strip().decode("utf-8", "replace")
        return BadInput(path, line + 1, f"expected {what} (a non-negative integer), found {excerpt(found)}")

    line, valid = 1, 0
    dropped, body_lines, body_frames = [], [], []
    num_frames = count(0)
    if num_frames < 0:
        raise count_error(0, "the number of frames")
    for frame in range(num_frames):
        num_bodies = count(line)
        if num_bodies < 0:
            raise count_error(line, f"the number of bodies of frame {frame + 1}")
        if num_bodies:
            body_lines += range(line + 1, line + 1 + BODY_LINES * num_bodies, BODY_LINES)
            body_frames += [valid] * num_bodies
            valid += 1
        else:
            dropped.append(frame)
        line += 1 + BODY_LINES * num_bodies
    _check_bodies(tokens, body_lines, path)
    _check_numbers(tokens, line, path)

    body_lines = np.array(body_lines, dtype=np.intp)
    joint_lines = body_lines[:, None] + 2 + np.arange(NUM_JOINTS)
    value_tokens = tokens.first[joint_lines][:, :, None] + _KEPT_COLUMNS  # (occurrences, 25, 5)
    try:
        values = tokens.floats(value_tokens)
    except NotANumber as e:
        raise BadInput(path, tokens.line_of(e.index) + 1, f"{excerpt(e.text)} is not a number") from None
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported below
        values = values.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.all():  # nan, inf, or beyond float32: one such joint would spread through centring
        token = value_tokens[tuple(np.argwhere(~finite)[0])]
        raise BadInput(path, tokens.line_of(token) + 1, f"{excerpt(tokens.text(token))} is not a finite coordinate")
    id_token = tokens.first[body_lines]
    occurrences = {}
    for i, (start, end) in enumerate(zip(tokens.start[id_token].tolist(), tokens.end[id_token].tolist())):
        occurrences.setdefault(data[start:end].decode("utf-8", "replace"), []).append(i)
    bodies = {}
    for body_id, rows in occurrences.items():
        interval = body_frames[rows[0]] + np.arange(len(rows), dtype=np.int64)
        bodies[body_id] = Body(joints=values[rows, :, :3], colors=values[rows, :, 3:], interval=interval)
    return Skeleton(path=path, bodies=bodies, num_frames=valid, dropped_frames=dropped)


def _check_bodies(tokens, body_lines, path):
    """Raise BadInput at the first line of the body blocks starting at `body_lines` that is not: the info
    line (10 values), the joint count (25), 25 joint lines of 12 numbers."""
    if not body_lines:
        return
    lines = np.array(body_lines, dtype=np.intp)[:, None] + np.arange(BODY_LINES)
    present = lines < tokens.num_lines
    found = np.where(present, tokens.count[np.minimum(lines, tokens.num_lines - 1)], -1)
    wrong = found != _EXPECTED_COUNTS
    counted = np.flatnonzero(~wrong[:, 1])  # bodies whose joint count line holds one token: is it 25?
    token = tokens.first[lines[counted, 1]]
    start = tokens.start[token]
    is_25 = (tokens.end[token] - start == 2) & (tokens.bytes[start] == ord("2")) & (tokens.bytes[start + 1] == ord("5"))
    is_25[~is_25] = [_int_or_none(tokens.text(t)) == NUM_JOINTS for t in token[~is_25]]  # "025", "+25"
    wrong[counted[~is_25], 1] = True
    if not wrong.any():
        return
    body, column = np.unravel_index(np.flatnonzero(wrong)[0], wrong.shape)
    line = int(lines[body, column])
    if line >= tokens.num_lines:
        raise BadInput(path, tokens.num_lines, f"file ends early: expected {BODY_LINES} lines per body, "
                                               f"the body on line {lines[body, 0] + 1} is cut")
    what = ("the body info line", "the joint count", "a joint line")[min(column, 2)]
    expected = f"{NUM_JOINTS}" if column == 1 else f"{_EXPECTED_COUNTS[column]} numbers"
    if column == 1 and found[body, 1] == 1:
        found = excerpt(tokens.text(tokens.first[line]))
    else:
        found = f"{found[body, column]} values"
    raise BadInput(path, line + 1, f"{what}: expected {expected}, found {found}")


def _int_or_none(text):
    try:
        return int(text)
    except ValueError:
        return None


def _check_numbers(tokens, num_lines, path):
    """Every token of the first `num_lines` lines must be a number (only the kept columns are converted)."""
    region = tokens.data[: tokens.line_end[num_lines - 1]]
    if not region.translate(None, _NUMBER_BYTES):  # nothing but digits, signs, dots, exponents, whitespace
        return
    b = tokens.bytes[: len(region)]
    odd = np.flatnonzero((b > 32) & ((b > 57) | (b < 43) | (b == 44) | (b == 47)) & (b != 69) & (b != 101))
    for token in np.unique(np.searchsorted(tokens.start, odd, side="right") - 1).tolist():
        try:
            float(tokens.data[tokens.start[token]:tokens.end[token]])
        except ValueError:
            raise BadInput(path, tokens.line_of(token) + 1, f"{excerpt(tokens.text(token))} is not a number") from None


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
    write_text(path, newline.join(lines) + newline)
