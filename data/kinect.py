"""The Kinect v2 `.skeleton` text format of NTU RGB+D.

Line 1: number of frames. Per frame: number of bodies; per body a line of 10 values (tracking ID first),
the joint count (25) and 25 lines of 12 numbers:
`x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState`.
"""
import os

import numpy as np

NUM_JOINTS = 25


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
