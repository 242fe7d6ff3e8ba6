"""A synthetic skeleton-action dataset in the NTU RGB+D 60 and PKU-MMD formats, generated in seconds from a seed.

    python -m data.synthetic --out-dir data/synthetic --seed 0 --format npz
    python -m data.synthetic --out-dir data/synthetic --seed 0 --format skeleton
    python -m data.ntu --dataset ntu60 --raw-dir data/synthetic/raw --out-dir data/synthetic
    python -m data.synthetic --out-dir data/synthetic_pku --seed 0 --format pku
    python -m data.pku --phase 1 --raw-dir data/synthetic_pku --out-dir data/synthetic_pku/arrays

`--format npz` writes `NTU60_XSub.npz` and `NTU60_XView.npz` (x (N, 300, 150) float32, one-hot y with 60
columns, names) through the same actor selection, centring, padding and splits as `data.ntu`;
`--format skeleton` writes Kinect `.skeleton` files `SsssCcccPpppRrrrAaaa.skeleton` into `<out-dir>/raw`,
which `data.ntu` turns into the same arrays (up to the 7 significant digits of the text format).

The actions are NTU-60 actions and keep their numbers (label = number - 1): see ACTIONS, 9 one-person and
4 two-person ones. A 25-joint Kinect skeleton (data.skeleton: NTU joint order and bone tree) is posed by
joint angles and placed by forward kinematics with per-performer bone lengths; every sample varies in
speed, amplitude, phase, duration (40-300 frames), facing direction, position, camera (3 cameras at
-45, 0, +45 degrees; setup = camera height and distance) and sensor noise, and begins at rest, so that
no class can be told from its first frame. Performers 1-40 split as NTU-60 cross-subject: training
samples come from the training performers, test samples from the others.

`--format pku` writes untrimmed takes as a PKU-MMD raw folder in `<out-dir>` (skeleton/, label/ with
`label,start,end,confidence` lines, cross-subject.txt, cross-view.txt), read by data.pku: each take (8 training
and 4 test by default) is one or two people performing PKU_ACTIONS_PER_TAKE actions, 20-60 frames at rest before,
between and after them (a few hundred frames in all), filmed by the three views L, M, R (cameras at -45, 0 and
+45 degrees; cross-view trains on L and R as PKU-MMD does). The actions are the 10 of ACTIONS that end as they
begin, under their PKU-MMD numbers (PKU_ACTIONS); label lines cover an action's frames [start, end), confidence 1.
"""
import argparse
import io
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.kinect import Body, Skeleton, write_skeleton
from data.ntu import BENCHMARKS, TRAIN_SUBJECTS_60, centre, pad, select_actors, split
from data.pipeline import DataError, check_outputs, claim_out_dir, one_hot, run_command, write_npz, write_text
from data.skeleton import NUM_JOINTS, PARENTS, ROOT

NUM_CLASSES = 60
FRAMES = 300
TEST_SUBJECTS = tuple(p for p in range(1, 41) if p not in TRAIN_SUBJECTS_60)
CAMERA_YAW = {1: -45.0, 2: 0.0, 3: 45.0}  # degrees, around the scene centre
NUM_SETUPS = 17

# Bone length (joint to its parent in data.skeleton.PARENTS) as a fraction of the performer's height.
BONE_FRACTION = np.array([0.16, 0.14, 0.05, 0.08, 0.10, 0.16, 0.14, 0.045, 0.10, 0.16, 0.14, 0.045,
                          0.05, 0.245, 0.245, 0.08, 0.05, 0.245, 0.245, 0.08, 0.0, 0.04, 0.03, 0.04, 0.03])
ANKLE_HEIGHT = 0.04  # fraction of the height
X, Y, Z = np.eye(3)  # body frame: x = the performer's left, y = up, z = forward


def _children():
    children = {j: [] for j in range(NUM_JOINTS)}
    for joint, parent in enumerate(PARENTS):
        if joint != ROOT:
            children[parent].append(joint)
    order, queue = [], [ROOT]
    while queue:
        joint = queue.pop(0)
        order.append(joint)
        queue += children[joint]
    return order[1:]


FK_ORDER = _children()  # every joint after its parent, root excluded


def smoothstep(u):
    u = np.clip(u, 0, 1)
    return u * u * (3 - 2 * u)


def bump(u, centre, width):
    """1 at `centre`, 0 outside centre +- width, a raised cosine in between."""
    return 0.5 * (1 + np.cos(np.pi * np.clip((u - centre) / width, -1, 1)))


def hold(u, rise, fall):
    """0 -> 1 over the first `rise` of the action, 1, then back to 0 over the last `fall`."""
    return smoothstep(u / rise) * smoothstep((1 - u) / fall)


def rot_x(v, angle):
    """Rotate vectors v (T, 3) about x by angle (T,): y turns towards z (a forward bend)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([v[:, 0], c * v[:, 1] - s * v[:, 2], s * v[:, 1] + c * v[:, 2]], axis=1)


def rot_y(v, angle):
    """Rotate vectors v (..., 3) about the vertical by angle (broadcast against v[..., 0]): z turns towards x."""
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack(np.broadcast_arrays(c * x + s * z, y, c * z - s * x), axis=-1)


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class Pose:
    """Joint angles (radians) over T frames, at rest with a little sway; actions add to them.

    trunk / head: forward bend; arm[side]: abduction (sideways), flexion (forwards), elbow bend and the
    direction the forearm bends towards (None: forwards and up); hip[side] / knee[side]: flexion;
    lift: extra pelvis height (m); step: pelvis moved forwards in the body frame (m); turn: heading
    change; walk: distance walked along the heading (m). Sides are "l" and "r".
    """

    def __init__(self, t, rng, amp):
        n = len(t)
        sway = rng.uniform(0.2, 0.5) * 2 * np.pi * t / 30 + rng.uniform(0, 2 * np.pi)
        self.trunk = np.radians(rng.uniform(-2, 4)) + np.radians(1.5) * np.sin(sway)
        self.head = np.full(n, np.radians(rng.uniform(-5, 10)))
        self.arm = {}
        for side in "lr":
            self.arm[side] = dict(abd=np.full(n, np.radians(rng.uniform(5, 14))),
                                  flex=np.radians(rng.uniform(0, 10)) + np.radians(2 * amp) * np.sin(sway),
                                  elbow=np.full(n, np.radians(rng.uniform(5, 25))), bend=None)
        self.hip = {side: np.full(n, np.radians(rng.uniform(0, 5))) for side in "lr"}
        self.knee = {side: np.full(n, np.radians(rng.uniform(0, 6))) for side in "lr"}
        self.lift, self.step, self.turn, self.walk = (np.zeros(n) for _ in range(4))


def bend_towards(d, b):
    """Unit vectors perpendicular to d (T, 3), in the plane of d and b (T, 3), on b's side."""
    perp = b - np.sum(b * d, axis=1, keepdims=True) * d
    fallback = Y - np.sum(Y * d, axis=1, keepdims=True) * d
    small = np.linalg.norm(perp, axis=1, keepdims=True) < 1e-3
    return unit(np.where(small, fallback, perp))


def default_bend(flex):
    """(T, 3) direction the forearm bends towards when an action sets none: forwards and up, turning with the
    arm's flexion (T,)."""
    return Z * np.cos(flex)[:, None] + Y * np.sin(flex)[:, None]


def joint_directions(pose):
    """Unit direction of every bone (joint - parent), (T, 25, 3), in the body frame."""
    n = len(pose.trunk)
    d = np.zeros((n, NUM_JOINTS, 3))
    up = np.tile(Y, (n, 1))
    trunk = pose.trunk
    d[:, 0] = -rot_x(up, trunk / 2)  # spine_base hangs below spine_mid
    d[:, 1] = -rot_x(up, trunk)
    d[:, 2] = rot_x(up, trunk + pose.head / 2)
    d[:, 3] = rot_x(up, trunk + pose.head)
    for side, sign, shoulder, elbow, wrist, hand, tip, thumb in (("l", 1, 4, 5, 6, 7, 21, 22),
                                                                 ("r", -1, 8, 9, 10, 11, 23, 24)):
        arm = pose.arm[side]
        d[:, shoulder] = rot_x(np.tile(unit(np.array([sign, -0.15, 0.0])), (n, 1)), trunk)
        a, f = arm["abd"], arm["flex"]
        upper = (sign * X * (np.sin(a) * np.cos(f))[:, None] + Z * np.sin(f)[:, None]
                 - Y * (np.cos(a) * np.cos(f))[:, None])
        b = arm["bend"] if arm["bend"] is not None else default_bend(f)
        side_b = bend_towards(upper, b)
        fore = np.cos(arm["elbow"])[:, None] * upper + np.sin(arm["elbow"])[:, None] * side_b
        for joint, v in ((elbow, upper), (wrist, fore), (hand, fore), (thumb, unit(fore + 0.7 * side_b)),
                         (tip, unit(fore - 0.4 * side_b))):
            d[:, joint] = rot_x(v, trunk)
    for side, sign, hip, knee, ankle, foot in (("l", 1, 12, 13, 14, 15), ("r", -1, 16, 17, 18, 19)):
        h, k = pose.hip[side], pose.knee[side]
        d[:, hip] = unit(np.array([sign * 0.9, -0.45, 0.0]))
        d[:, knee] = np.stack([np.zeros(n), -np.cos(h), np.sin(h)], axis=1)
        d[:, ankle] = np.stack([np.zeros(n), -np.cos(h - k), np.sin(h - k)], axis=1)
        d[:, foot] = rot_x(np.tile(unit(np.array([0.0, -0.35, 1.0])), (n, 1)), -(h - k) / 2)
    return d


def forward_kinematics(pose, bones):
    """Joint positions (T, 25, 3) in the body frame, feet on the floor (y = 0) at the origin, heading +z.

    bones: (25,) lengths of each joint's bone to its parent. The pelvis height and forward position
    follow from the supporting leg (the one reaching lower), plus `lift` and `step`.
    """
    d = joint_directions(pose)
    hip_drop = -d[0, 12, 1] * bones[12]
    left, right = (bones[knee] * d[:, knee] + bones[knee + 1] * d[:, knee + 1] for knee in (13, 17))
    leg = np.where(left[:, 1:2] <= right[:, 1:2], left, right)  # hip to ankle of the supporting leg
    height = bones.sum() / BONE_FRACTION.sum()
    pelvis = np.stack([np.zeros(len(d)), ANKLE_HEIGHT * height + hip_drop - leg[:, 1] + pose.lift,
                       pose.step - leg[:, 2]], axis=1)
    pos = np.zeros_like(d)
    pos[:, ROOT] = pelvis - bones[0] * d[:, 0] - bones[1] * d[:, 1]
    for joint in FK_ORDER:
        pos[:, joint] = pos[:, PARENTS[joint]] + bones[joint] * d[:, joint]
    return pos


# ---- actions: each modifies the pose of the performer (and of the partner) over normalised time u ----

def sit_down(p, u, rng, amp, partner=None):
    s = smoothstep((u - rng.uniform(0.05, 0.25)) / rng.uniform(0.4, 0.6))
    for side in "lr":
        p.hip[side] += np.radians(rng.uniform(80, 95)) * s
        p.knee[side] += np.radians(rng.uniform(80, 95)) * s
        p.arm[side]["flex"] += np.radians(20 * amp) * s
    p.trunk += np.radians(30 * amp) * np.sin(np.pi * s) + np.radians(5) * s


def clap(p, u, rng, amp, partner=None):
    env = hold(u, 0.2, 0.2)
    beat = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 7) * u + rng.uniform(0, 2 * np.pi)))
    for side in "lr":
        arm = p.arm[side]
        arm["flex"] += np.radians(45 * amp) * env
        arm["elbow"] += np.radians(75) * env
        arm["abd"] += np.radians(15 + 18 * amp * beat) * env - arm["abd"] * env
        arm["bend"] = unit(Z + 0.3 * Y + (-0.9 if side == "l" else 0.9) * X) * np.ones((len(u), 1))


def cheer_up(p, u, rng, amp, partner=None):
    env = hold(u, 0.25, 0.25)
    shake = np.radians(10 * amp) * np.sin(2 * np.pi * rng.uniform(2, 5) * u)
    for side in "lr":
        p.arm[side]["abd"] += (np.radians(rng.uniform(140, 165)) + shake) * env
        p.arm[side]["flex"] += np.radians(15) * env


def wave(p, u, rng, amp, partner=None):
    side = "l" if rng.random() < 0.15 else "r"
    env = hold(u, 0.2, 0.2)
    arm = p.arm[side]
    arm["abd"] += np.radians(rng.uniform(80, 110)) * env
    arm["flex"] += np.radians(rng.uniform(10, 30)) * env
    arm["elbow"] += np.radians(50) * env
    swing = np.radians(35 * amp) * np.sin(2 * np.pi * rng.uniform(2, 5) * u + rng.uniform(0, 2 * np.pi)) * env
    lateral = X if side == "l" else -X
    arm["bend"] = np.cos(swing)[:, None] * Y + np.sin(swing)[:, None] * lateral + 0.2 * Z


def kick(p, u, rng, amp, partner=None):
    side = "l" if rng.random() < 0.2 else "r"
    at = rng.uniform(0.35, 0.65)
    p.knee[side] += np.radians(70) * bump(u, at - 0.1, 0.15)
    p.hip[side] += np.radians(70 * amp) * bump(u, at, 0.12) - np.radians(15) * bump(u, at - 0.12, 0.1)
    other = "r" if side == "l" else "l"
    p.arm[other]["flex"] += np.radians(30) * bump(u, at, 0.2)
    p.trunk -= np.radians(8) * bump(u, at, 0.2)


def jump(p, u, rng, amp, partner=None):
    for at in rng.uniform(0.3, 0.7, size=rng.integers(1, 3)):
        crouch = bump(u, at - 0.08, 0.1)
        flight = bump(u, at, 0.06)
        for side in "lr":
            p.hip[side] += np.radians(50) * crouch
            p.knee[side] += np.radians(80) * crouch
            p.arm[side]["flex"] += np.radians(-25) * crouch + np.radians(120 * amp) * flight
        p.trunk += np.radians(25) * crouch
        p.lift += rng.uniform(0.2, 0.35) * amp * flight


def point(p, u, rng, amp, partner=None):
    side = "l" if rng.random() < 0.2 else "r"
    env = hold(u, 0.25, 0.2)
    p.arm[side]["flex"] += np.radians(rng.uniform(70, 100)) * env
    p.arm[side]["abd"] += np.radians(rng.uniform(-10, 30)) * env
    p.arm[side]["elbow"] -= p.arm[side]["elbow"] * env * 0.9


def bow(p, u, rng, amp, partner=None):
    env = hold(u, 0.3, 0.3) if rng.random() < 0.5 else bump(u, 0.5, 0.4)
    p.trunk += np.radians(rng.uniform(30, 55) * amp) * env
    p.head += np.radians(20) * env
    for side in "lr":
        p.hip[side] += np.radians(10) * env


def salute(p, u, rng, amp, partner=None):
    side = "r"
    env = hold(u, 0.2, 0.25)
    arm = p.arm[side]
    arm["abd"] += np.radians(rng.uniform(65, 85)) * env
    arm["flex"] += np.radians(rng.uniform(30, 45)) * env
    arm["elbow"] += np.radians(rng.uniform(110, 130)) * env
    arm["bend"] = unit(Y + 0.8 * X + 0.3 * Z) * np.ones((len(u), 1))


def punch(p, u, rng, amp, partner):
    hits = rng.uniform(0.25, 0.75, size=rng.integers(1, 4))
    arm = p.arm["r"]
    guard = hold(u, 0.15, 0.15)
    arm["flex"] += np.radians(40) * guard
    arm["elbow"] += np.radians(90) * guard
    for at in hits:
        strike = bump(u, at, 0.08)
        arm["flex"] += np.radians(50 * amp) * strike
        arm["elbow"] -= np.radians(95) * strike
        p.step += 0.1 * strike
        recoil = bump(u, at + 0.05, 0.12)
        partner.trunk -= np.radians(15) * recoil
        partner.step -= 0.12 * recoil
        partner.head -= np.radians(15) * recoil


def push(p, u, rng, amp, partner):
    at = rng.uniform(0.35, 0.6)
    reach = bump(u, at, 0.2)
    for side in "lr":
        p.arm[side]["flex"] += np.radians(80) * reach
        p.arm[side]["elbow"] += np.radians(60) * bump(u, at - 0.1, 0.1)
        partner.arm[side]["flex"] += np.radians(30) * bump(u, at + 0.1, 0.2)
    p.step += 0.3 * amp * smoothstep((u - at + 0.25) / 0.3)
    partner.step -= 0.5 * amp * smoothstep((u - at) / 0.25)
    partner.trunk -= np.radians(12) * bump(u, at + 0.05, 0.15)


def handshake(p, u, rng, amp, partner):
    env = hold(u, 0.25, 0.25)
    shake = np.radians(10 * amp) * np.sin(2 * np.pi * rng.uniform(2, 4) * u) * env
    for person in (p, partner):
        arm = person.arm["r"]
        arm["flex"] += np.radians(50) * env + shake
        arm["elbow"] += np.radians(35) * env
        arm["abd"] -= arm["abd"] * env
        person.step += 0.12 * env


def walk_apart(p, u, rng, amp, partner):
    start = rng.uniform(0.1, 0.3)
    turned = smoothstep((u - start) / 0.2)
    walking = np.clip((u - start - 0.15) / 0.6, 0, 1)
    cadence = rng.uniform(4, 7)
    for person, direction in ((p, 1), (partner, -1)):
        person.turn += direction * np.pi * turned
        phase = 2 * np.pi * cadence * walking
        gait = np.sin(phase) * (walking > 0)
        person.walk += rng.uniform(1.0, 2.0) * walking
        for side, sign in (("l", 1), ("r", -1)):
            person.hip[side] += np.radians(25 * amp) * sign * gait
            person.knee[side] += np.radians(35) * np.clip(sign * np.cos(phase), 0, None) * (walking > 0)
            person.arm[side]["flex"] -= np.radians(20 * amp) * sign * gait


# NTU-60 action number -> (name, generator, number of people, (min, max) frames at normal speed)
ACTIONS = {
    8: ("sitting down", sit_down, 1, (60, 160)),
    10: ("clapping", clap, 1, (60, 200)),
    22: ("cheer up", cheer_up, 1, (60, 160)),
    23: ("hand waving", wave, 1, (50, 180)),
    24: ("kicking something", kick, 1, (40, 120)),
    27: ("jump up", jump, 1, (40, 120)),
    31: ("pointing to something with finger", point, 1, (50, 140)),
    35: ("nod head/bow", bow, 1, (40, 140)),
    38: ("salute", salute, 1, (50, 140)),
    50: ("punching/slapping other person", punch, 2, (50, 140)),
    52: ("pushing other person", push, 2, (50, 140)),
    58: ("handshaking", handshake, 2, (60, 180)),
    60: ("walking apart from each other", walk_apart, 2, (80, 240)),
}


def performer_bones(seed, performer):
    """Bone lengths (25,) of a performer: a height and per-bone proportions, fixed by (seed, performer)."""
    rng = np.random.default_rng([seed, 1, performer])
    height = rng.uniform(1.5, 1.9)
    return height * BONE_FRACTION * rng.uniform(0.93, 1.07, NUM_JOINTS)


def camera_view(seed, setup, camera, rng):
    """(rotation (3, 3), position (3,)) of a camera: world -> camera coordinates = R (p - position).

    Camera axes as Kinect's: x to the camera's left, y up, z forwards into the scene.
    """
    setup_rng = np.random.default_rng([seed, 2, setup])
    height, distance = setup_rng.uniform(0.7, 1.3), setup_rng.uniform(2.6, 3.6)
    yaw = np.radians(CAMERA_YAW[camera] + rng.uniform(-3, 3))
    tilt = np.radians(setup_rng.uniform(-8, 4))
    forward = np.array([-np.sin(yaw) * np.cos(tilt), np.sin(tilt), np.cos(yaw) * np.cos(tilt)])
    left = unit(np.cross(Y, forward))
    rotation = np.stack([left, np.cross(forward, left), forward])
    return rotation, np.array([distance * np.sin(yaw), height, -distance * np.cos(yaw)])


def action_timing(rng, shortest, longest):
    """(frames, u) of one performance of an action usually `shortest` to `longest` frames long: a random speed,
    40 to 300 frames, and normalised time u (frames,) in [0, 1], held at 0 for a short rest before and at 1
    after."""
    speed = rng.uniform(0.7, 1.4)
    frames = int(np.clip(rng.uniform(shortest, longest) / speed, 40, FRAMES))
    t = np.arange(frames, dtype=np.float64)
    rest_in, rest_out = rng.uniform(0.05, 0.2), rng.uniform(0.0, 0.15)
    return frames, np.clip((t / (frames - 1) - rest_in) / (1 - rest_in - rest_out), 0, 1)


def place(seed, poses, performer, replication, rng):
    """World joint positions [(T, 25, 3)] of the performer posed by poses[0] and, with two poses, of a partner
    from the same split, facing each other across the view of camera 2 (one person faces camera 1 or 3 by
    `replication`), somewhere near the scene centre."""
    bone_sets = [performer_bones(seed, performer)]
    if len(poses) == 2:
        group = TRAIN_SUBJECTS_60 if performer in TRAIN_SUBJECTS_60 else TEST_SUBJECTS
        bone_sets.append(performer_bones(seed, rng.choice([p for p in group if p != performer])))
        gap, axis = rng.uniform(1.0, 1.5), rng.uniform(-0.3, 0.3)
        starts = [rot_y(np.array([side * gap / 2, 0, 0]), axis) for side in (-1, 1)]
        headings = [np.pi / 2 + axis, -np.pi / 2 + axis]
    else:
        starts = [np.zeros(3)]
        headings = [np.pi - np.radians(CAMERA_YAW[1 if replication == 1 else 3] + rng.uniform(-15, 15))]
    centre_shift = np.array([rng.normal(0, 0.25), 0, rng.normal(0, 0.25)])
    worlds = []
    for pose, bones, start, heading in zip(poses, bone_sets, starts, headings):
        yaw = heading + pose.turn
        walked = np.cumsum(np.diff(pose.walk, prepend=0)[:, None] * rot_y(Z, yaw), axis=0)
        worlds.append(rot_y(forward_kinematics(pose, bones), yaw[:, None]) + (start + centre_shift + walked)[:, None])
    return worlds


def film(seed, worlds, setup, camera, rng):
    """[(body_id, joints (T, 25, 3) camera coordinates with sensor noise)] of the bodies `worlds` seen by a
    camera of `setup`."""
    rotation, position = camera_view(seed, setup, camera, rng)
    body_ids = 72057594037927936 + rng.choice(10**6, size=len(worlds), replace=False)
    bodies = []
    for world, body_id in zip(worlds, body_ids):
        joints = (world - position) @ rotation.T
        joints += rng.normal(0, 0.006, joints.shape)
        jitter = rng.random(len(joints)) < 0.05
        joints[jitter] += rng.normal(0, 0.02, joints[jitter].shape)
        bodies.append((str(body_id), joints))
    return bodies


def generate_sample(seed, index, action, performer, setup, camera, replication):
    """One sample: list of (body_id, joints (T, 25, 3) camera coordinates), one or two bodies."""
    rng = np.random.default_rng([seed, 3, index])
    _, act, people, duration = ACTIONS[action]
    frames, u = action_timing(rng, *duration)
    amp = rng.uniform(0.75, 1.25)
    poses = [Pose(np.arange(frames, dtype=np.float64), rng, amp) for _ in range(people)]
    act(poses[0], u, rng, amp, poses[1] if people == 2 else None)
    return film(seed, place(seed, poses, performer, replication, rng), setup, camera, rng)


def sample_plan(seed, num_train, num_test):
    """[(name, action, performer, setup, camera, replication)] with distinct names, classes balanced."""
    rng = np.random.default_rng([seed, 0])
    actions = np.array(sorted(ACTIONS))
    plan, names = [], set()
    for count, performers in ((num_train, TRAIN_SUBJECTS_60), (num_test, TEST_SUBJECTS)):
        per_action, distinct = -(-count // len(actions)), len(performers) * NUM_SETUPS * len(CAMERA_YAW) * 2
        if per_action > distinct // 2:
            raise DataError(f"{count} samples need {per_action} per action, more than half the {distinct} "
                            f"distinct sample names of an action")
        labels = rng.permutation(np.resize(actions, count))
        for action in labels:
            while True:
                performer = int(rng.choice(performers))
                setup, camera, replication = (int(rng.integers(1, n + 1)) for n in (NUM_SETUPS, 3, 2))
                name = f"S{setup:03d}C{camera:03d}P{performer:03d}R{replication:03d}A{action:03d}"
                if name not in names:
                    break
            names.add(name)
            plan.append((name, int(action), performer, setup, camera, replication))
    return plan


def generate(seed, num_train, num_test):
    """{name: bodies} for the whole dataset (see generate_sample)."""
    plan = sample_plan(seed, num_train, num_test)
    return {name: generate_sample(seed, i, *rest)
            for i, (name, *rest) in enumerate(tqdm(plan, desc="synthetic samples", unit="sample"))}


def write_raw(samples, raw_dir, seed):
    """One .skeleton file per sample, a quarter of them with CRLF line endings like some NTU files."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 4])
    for name, bodies in tqdm(samples.items(), desc="skeleton files", unit="file"):
        frames = [[(body_id, joints[t]) for body_id, joints in bodies] for t in range(len(bodies[0][1]))]
        write_skeleton(raw_dir / f"{name}.skeleton", frames, "\r\n" if rng.random() < 0.25 else "\n")


def write_arrays(samples, out_dir):
    """NTU60_XSub.npz and NTU60_XView.npz as `data.ntu` makes them from the raw files."""
    names = sorted(samples)
    arrays = {}
    for name in names:
        frames = len(samples[name][0][1])
        colors = np.zeros((frames, NUM_JOINTS, 2), np.float32)
        bodies = {body_id: Body(joints.astype(np.float32), colors, np.arange(frames))
                  for body_id, joints in samples[name]}
        joints, _ = select_actors(Skeleton(path=name, bodies=bodies, num_frames=frames, dropped_frames=[]))
        arrays[name] = pad(centre(joints), FRAMES, "zeros")
    labels = np.array([int(name[-3:]) - 1 for name in names])
    out_dir.mkdir(parents=True, exist_ok=True)
    for bench, (field, train_values) in BENCHMARKS["ntu60"].items():
        out = {}
        for part, rows in zip(("train", "test"), split(names, field, train_values)):
            out[f"x_{part}"] = np.array([arrays[names[i]] for i in rows], np.float32).reshape(-1, FRAMES, 150)
            out[f"y_{part}"] = one_hot(labels[rows], NUM_CLASSES)
            out[f"names_{part}"] = np.array([names[i] for i in rows], dtype=str)
        write_npz(out_dir / f"NTU60_{bench}.npz", out)


# PKU-MMD recordings: the synthetic actions that end as they begin (at rest, a partner back in place), numbered as
# PKU-MMD numbers them (util.actions.PKU, number = index + 1). Sitting down and pushing leave the pose changed
# (seated; the partner pushed away) and walking apart has no PKU-MMD action: recordings do without them.
PKU_ACTIONS = {35: 1, 22: 5, 10: 6, 23: 13, 58: 14, 27: 17, 24: 19, 31: 25, 50: 26, 38: 32}
PKU_VIEWS = {"L": 1, "M": 2, "R": 3}  # PKU-MMD's left, middle and right Kinects: cameras at -45, 0, +45 degrees
PKU_ACTIONS_PER_TAKE = 3
PKU_IDLE = (20, 60)  # frames at rest before, between and after the actions of a take
PKU_TWO_PERSON = 0.3  # the share of takes with two people
PKU_BEND_RAMP = 8  # frames of rest over which the forearm turns to and from the bend direction an action sets


def pose_view(pose, start, end):
    """A Pose over frames [start, end) of `pose` whose angles are views of its arrays: an action applied to it
    moves `pose` there. A forearm bend direction it sets stays on the view (arm["bend"])."""
    view = Pose.__new__(Pose)
    view.trunk, view.head = pose.trunk[start:end], pose.head[start:end]
    view.arm = {side: dict({k: pose.arm[side][k][start:end] for k in ("abd", "flex", "elbow")}, bend=None)
                for side in "lr"}
    view.hip = {side: pose.hip[side][start:end] for side in "lr"}
    view.knee = {side: pose.knee[side][start:end] for side in "lr"}
    view.lift, view.step, view.turn, view.walk = (a[start:end] for a in (pose.lift, pose.step, pose.turn, pose.walk))
    return view


def generate_take(seed, index, performer, replication):
    """One untrimmed take: (worlds [(T, 25, 3)] world joint positions of one or two people, [(NTU action
    number, start, end)]): PKU_ACTIONS_PER_TAKE actions, frames [start, end) each, with rest around them.

    The actions move views of one Pose over the whole take (pose_view); a forearm bend direction an action
    sets turns from and back to the default one over PKU_BEND_RAMP frames of the rest around it, so the arm
    does not jump where the action starts.
    """
    rng = np.random.default_rng([seed, 5, index])
    people = 2 if rng.random() < PKU_TWO_PERSON else 1
    choices = sorted(a for a in PKU_ACTIONS if ACTIONS[a][2] <= people)
    actions = [int(a) for a in rng.choice(choices, size=PKU_ACTIONS_PER_TAKE)]
    timings = [action_timing(rng, *ACTIONS[a][3]) for a in actions]
    idle = rng.integers(PKU_IDLE[0], PKU_IDLE[1] + 1, size=len(actions) + 1)
    ends = np.cumsum([n for pair in zip(idle, [f for f, _ in timings]) for n in pair])
    spans = list(zip(ends[::2], ends[1::2]))
    poses = [Pose(np.arange(ends[-1] + idle[-1], dtype=np.float64), rng, rng.uniform(0.75, 1.25))
             for _ in range(people)]
    bends = []
    for action, (start, end), (_, u) in zip(actions, spans, timings):
        views = [pose_view(pose, start, end) for pose in poses]
        ACTIONS[action][1](views[0], u, rng, rng.uniform(0.75, 1.25), views[1] if people == 2 else None)
        bends += [(pose, side, start, end, view.arm[side]["bend"])
                  for pose, view in zip(poses, views) for side in "lr" if view.arm[side]["bend"] is not None]
    for pose, side, start, end, bend in bends:
        arm = pose.arm[side]
        if arm["bend"] is None:
            arm["bend"] = default_bend(arm["flex"])
        arm["bend"][start:end] = bend
        ramp = smoothstep(np.arange(1, PKU_BEND_RAMP + 1) / (PKU_BEND_RAMP + 1))[:, None]
        before, after = slice(start - PKU_BEND_RAMP, start), slice(end, end + PKU_BEND_RAMP)
        arm["bend"][before] += ramp * (bend[0] - arm["bend"][before])
        arm["bend"][after] += ramp[::-1] * (bend[-1] - arm["bend"][after])
    worlds = place(seed, poses, performer, replication, rng)
    return worlds, [(a, int(start), int(end)) for a, (start, end) in zip(actions, spans)]


def write_pku(out_dir, seed, num_train, num_test):
    """A PKU-MMD-style raw folder: skeleton/<take>-<view>.txt, label/<take>-<view>.txt and the split files
    cross-subject.txt, cross-view.txt, for num_train takes of training performers and num_test of test ones,
    each filmed by the three views. Returns the number of videos."""
    rng = np.random.default_rng([seed, 0])
    train = {"subject": [], "view": []}
    videos = []
    for index in tqdm(range(num_train + num_test), desc="synthetic PKU-MMD takes", unit="take"):
        performers = TRAIN_SUBJECTS_60 if index < num_train else TEST_SUBJECTS
        performer, setup = int(rng.choice(performers)), int(rng.integers(1, NUM_SETUPS + 1))
        worlds, instances = generate_take(seed, index, performer, int(rng.integers(1, 3)))
        labels = "".join(f"{PKU_ACTIONS[a]},{start},{end},1\n" for a, start, end in instances)
        for view, camera in PKU_VIEWS.items():
            name = f"{index + 2:04d}-{view}"
            bodies = film(seed, worlds, setup, camera, np.random.default_rng([seed, 6, index, camera]))
            frames = np.zeros((len(worlds[0]), 2, NUM_JOINTS * 3))
            for b, (_, joints) in enumerate(bodies):
                frames[:, b] = joints.reshape(len(joints), -1)
            text = io.StringIO()
            np.savetxt(text, frames.reshape(len(frames), -1), fmt="%.6f")
            write_text(out_dir / "skeleton" / f"{name}.txt", text.getvalue())
            write_text(out_dir / "label" / f"{name}.txt", labels)
            videos.append(name)
            train["subject"] += [name] if index < num_train else []
            train["view"] += [name] if view != "M" else []
    for kind, training in train.items():
        test = [v for v in videos if v not in training]
        write_text(out_dir / f"cross-{kind}.txt", f"Training videos: \n{', '.join(training)}, \n"
                                                  f"Validataion videos: \n{', '.join(test)}, \n")
    return len(videos)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("npz", "skeleton", "pku"), default="npz")
    parser.add_argument("--num-train", type=int, help="training samples (training performers; default 400), or "
                                                       "with --format pku training takes (default 8)")
    parser.add_argument("--num-test", type=int, help="test samples (test performers; default 200), or with "
                                                      "--format pku test takes (default 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    defaults = (8, 4) if args.format == "pku" else (400, 200)
    num_train, num_test = (default if n is None else n for n, default in zip((args.num_train, args.num_test), defaults))
    if num_train < 1 or num_test < 0:
        raise DataError(f"--num-train must be >= 1 and --num-test >= 0, got {num_train} and {num_test}")
    out_dir = Path(args.out_dir)
    claim_out_dir(out_dir, out_dir / "raw")
    if args.format == "npz":
        check_outputs([out_dir / f"NTU60_{bench}.npz" for bench in BENCHMARKS["ntu60"]], args.overwrite)
        write_arrays(generate(args.seed, num_train, num_test), out_dir)
    elif args.format == "skeleton":
        raw_dir = out_dir / "raw"
        check_outputs(sorted(raw_dir.glob("*.skeleton"))[:1], args.overwrite)
        for old in raw_dir.glob("*.skeleton"):
            old.unlink()
        write_raw(generate(args.seed, num_train, num_test), raw_dir, args.seed)
    else:
        check_outputs([out_dir / "cross-subject.txt"], args.overwrite)
        for folder in ("skeleton", "label"):
            (out_dir / folder).mkdir(exist_ok=True)
            for old in (out_dir / folder).glob("*.txt"):
                old.unlink()
        videos = write_pku(out_dir, args.seed, num_train, num_test)
        print(f"{videos} videos ({num_train + num_test} takes x {len(PKU_VIEWS)} views) of {len(PKU_ACTIONS)} "
              f"PKU-MMD actions written to {out_dir}")
        return
    print(f"{num_train + num_test} samples of {len(ACTIONS)} actions written to {out_dir}")


if __name__ == "__main__":
    run_command(main)
