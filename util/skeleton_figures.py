"""Skeleton sequences in 3D, in the style of util/figures.py: an animation (GIF, MP4) or a strip of frames (PNG,
PDF, SVG). Seen from the camera of NTU RGB+D (its Kinect camera frame: x to the camera's left, y up, z away from
the camera), so a standing person is upright, with one scale on the three axes."""
import numpy as np
from matplotlib import animation

from data.skeleton import NUM_JOINTS, PARENTS
from util.figures import DOUBLE_COLUMN, SINGLE_COLUMN, plt

VIEW = {'elev': 12, 'azim': -70}  # a little above and to the side of the camera


def bodies_of(joints):
    """joints (T, 150 or 75) -> (T', B, 25, 3): the bodies with a joint in some frame (a second body equal to
    the first, as NTU-120 stores a one-person sample, once), NaN in a body's all-zero frames (not drawn),
    all-zero frames at the end left out. ValueError when no frame has a joint."""
    joints = np.array(joints, np.float32).reshape(len(joints), -1, NUM_JOINTS, 3)
    if joints.shape[1] == 2 and np.array_equal(joints[:, 0], joints[:, 1]):
        joints = joints[:, :1]
    present = joints.any(axis=(2, 3))  # (T, B)
    if not present.any():
        raise ValueError("no joint in any frame")
    last, bodies = np.flatnonzero(present.any(1)).max() + 1, present.any(0)
    joints, present = joints[:last, bodies], present[:last, bodies]
    joints[~present] = np.nan
    return joints


def pose_axes(ax, joints):
    """Set the 3D axes `ax` around every frame of joints (T, B, 25, 3), one scale on x, y and z, and return the
    bone lines of each body (drawn by `pose`). Plot axes (x, z, y): y is up; x grows to the left, as the camera
    sees it."""
    low, high = np.nanmin(joints.reshape(-1, 3), 0), np.nanmax(joints.reshape(-1, 3), 0)
    centre, half = (low + high) / 2, max((high - low).max() / 2, 1e-3)
    x, y, z = (centre[:, None] + [-half, half])
    ax.set(xlim=x[::-1], ylim=z, zlim=y)
    ax.set_box_aspect((1, 1, 1), zoom=1.3)
    ax.view_init(**VIEW)
    ax.set_axis_off()
    return [[ax.plot([], [], [], color=f'C{b}', lw=1.2)[0] for _ in PARENTS] for b in range(joints.shape[1])]


def pose(lines, frame):
    """Draw frame (B, 25, 3) into the bone lines of pose_axes; returns the lines."""
    for body_lines, body in zip(lines, frame):
        for joint, (parent, line) in enumerate(zip(PARENTS, body_lines)):
            pair = body[[joint, parent]]
            line.set_data_3d(pair[:, 0], pair[:, 2], pair[:, 1])
    return [line for body_lines in lines for line in body_lines]


def sequence_animation(joints, title, fps=15):
    """A 3D animation of joints (T, 150 or 75) (frames x bodies x 25 joints x xyz), bones from
    data.skeleton.PARENTS, one colour per body."""
    joints = bodies_of(joints)
    fig = plt.figure(figsize=(SINGLE_COLUMN, SINGLE_COLUMN))
    ax = fig.add_subplot(projection='3d')
    lines = pose_axes(ax, joints)
    fig.suptitle(title)

    def draw(t):
        ax.set_title(f'frame {t + 1} / {len(joints)}')
        return pose(lines, joints[t])

    return animation.FuncAnimation(fig, draw, frames=len(joints), interval=1000 / fps)


def sequence_figure(joints, title, count=6):
    """`count` evenly spaced frames of joints (T, 150 or 75) side by side, on one scale."""
    joints = bodies_of(joints)
    frames = np.unique(np.linspace(0, len(joints) - 1, count).round().astype(int))
    fig = plt.figure(figsize=(DOUBLE_COLUMN, DOUBLE_COLUMN / len(frames) + 0.4))
    for i, t in enumerate(frames):
        ax = fig.add_subplot(1, len(frames), i + 1, projection='3d')
        pose(pose_axes(ax, joints), joints[t])
        ax.set_title(f'frame {t + 1} / {len(joints)}')
    fig.suptitle(title)
    return fig
