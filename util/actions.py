"""Action names of NTU RGB+D 60, NTU RGB+D 120 and PKU-MMD, by class index (label = action number - 1).

    action_names('ntu60')[0] == 'drink water'
    sample_title('S001C001P001R001A001') == 'S001C001P001R001A001: drink water'
    dataset_of(args) -> 'ntu60', 'ntu120' or 'pku' from a config's data path or class count
    action_labels([61, 62], 120) -> array([60, 61]): the labels of action numbers, checked

NTU RGB+D 120 extends NTU RGB+D 60: its first 60 names are NTU-60's. PKU-MMD (Phase I and II) has 51 actions.
"""
from pathlib import Path

import numpy as np

from util.config import fail

NTU60 = (
    'drink water', 'eat meal/snack', 'brushing teeth', 'brushing hair', 'drop', 'pickup', 'throw', 'sitting down',
    'standing up', 'clapping', 'reading', 'writing', 'tear up paper', 'wear jacket', 'take off jacket',
    'wear a shoe', 'take off a shoe', 'wear on glasses', 'take off glasses', 'put on a hat/cap',
    'take off a hat/cap', 'cheer up', 'hand waving', 'kicking something', 'reach into pocket',
    'hopping (one foot jumping)', 'jump up', 'make a phone call', 'playing with phone/tablet',
    'typing on a keyboard', 'pointing to something with finger', 'taking a selfie', 'check time (from watch)',
    'rub two hands together', 'nod head/bow', 'shake head', 'wipe face', 'salute', 'put the palms together',
    'cross hands in front (say stop)', 'sneeze/cough', 'staggering', 'falling', 'touch head (headache)',
    'touch chest (stomachache)', 'touch back (backache)', 'touch neck (neckache)', 'nausea or vomiting',
    'use a fan/feeling warm', 'punching/slapping other person', 'kicking other person', 'pushing other person',
    'pat on back of other person', 'point finger at the other person', 'hugging other person',
    'giving something to other person', "touch other person's pocket", 'handshaking',
    'walking towards each other', 'walking apart from each other',
)

NTU120 = NTU60 + (
    'put on headphone', 'take off headphone', 'shoot at the basket', 'bounce ball', 'tennis bat swing',
    'juggling table tennis balls', 'hush (quiet)', 'flick hair', 'thumb up', 'thumb down', 'make ok sign',
    'make victory sign', 'staple book', 'counting money', 'cutting nails', 'cutting paper (using scissors)',
    'snapping fingers', 'open bottle', 'sniff (smell)', 'squat down', 'toss a coin', 'fold paper',
    'ball up paper', 'play magic cube', 'apply cream on face', 'apply cream on hand back', 'put on bag',
    'take off bag', 'put something into a bag', 'take something out of a bag', 'open a box',
    'move heavy objects', 'shake fist', 'throw up cap/hat', 'hands up (both hands)', 'cross arms',
    'arm circles', 'arm swings', 'running on the spot', 'butt kicks (kick backward)', 'cross toe touch',
    'side kick', 'yawn', 'stretch oneself', 'blow nose', 'hit other person with something',
    'wield knife towards other person', 'knock over other person (hit with body)', "grab other person's stuff",
    'shoot at other person with a gun', 'step on foot', 'high-five', 'cheers and drink',
    'carry something with other person',
    'take a photo of other person', 'follow other person', "whisper in other person's ear",
    'exchange things with other person', 'support somebody with hand', 'finger-guessing game (rock-paper-scissors)',
)

PKU = (
    'bow', 'brushing hair', 'brushing teeth', 'check time (from watch)', 'cheer up', 'clapping',
    'cross hands in front (say stop)', 'drink water', 'drop', 'eat meal/snack', 'falling',
    'giving something to other person', 'hand waving', 'handshaking', 'hopping (one foot jumping)',
    'hugging other person', 'jump up', 'kicking other person', 'kicking something',
    'make a phone call/answer phone', 'pat on back of other person', 'pickup', 'playing with phone/tablet',
    'point finger at the other person', 'pointing to something with finger', 'punching/slapping other person',
    'pushing other person', 'put on a hat/cap', 'put something inside pocket', 'reading', 'rub two hands together',
    'salute', 'sitting down', 'standing up', 'take off a hat/cap', 'take off glasses', 'take off jacket',
    'take out something from pocket', 'taking a selfie', 'tear up paper', 'throw', 'touch back (backache)',
    'touch chest (stomachache/heart pain)', 'touch head (headache)', 'touch neck (neckache)',
    'typing on a keyboard', 'use a fan (with hand or paper)/feeling warm', 'wear jacket', 'wear on glasses',
    'wipe face', 'writing',
)

DATASETS = {'ntu60': NTU60, 'ntu120': NTU120, 'pku': PKU}
BY_CLASS_COUNT = {len(names): dataset for dataset, names in DATASETS.items()}


def action_names(dataset):
    """The tuple of action names of `dataset` ('ntu60', 'ntu120' or 'pku'), indexed by class."""
    if dataset not in DATASETS:
        fail(f"unknown dataset {dataset!r} for the action names (expected one of {', '.join(DATASETS)})")
    return DATASETS[dataset]


def guess_dataset(data_path=None, num_classes=None):
    """The dataset of a data file (by its name: NTU60_*, NTU120_*, PKUv1_*, PKUv2_*), else of a class count;
    None when neither tells."""
    name = Path(data_path).name.lower() if data_path else ''
    for prefix, dataset in (('ntu120', 'ntu120'), ('ntu60', 'ntu60'), ('pku', 'pku')):
        if name.startswith(prefix):
            return dataset
    return BY_CLASS_COUNT.get(num_classes)


def dataset_of(data_path=None, num_classes=None):
    """guess_dataset, failing with one line when neither the name nor the count tells: e.g. 13 classes, or a
    file named otherwise with a count that is no dataset's.
    """
    dataset = guess_dataset(data_path, num_classes)
    if dataset is not None:
        return dataset
    fail(f"cannot tell the dataset of {data_path or 'the data'} with {num_classes} classes for the action names "
         f"(NTU-60 has 60, NTU-120 120, PKU-MMD 51)")


def sample_title(name, dataset=None):
    """'<name>: <action>' for an NTU RGB+D sample name, by its A field (NTU-120 names unless `dataset` says
    otherwise); the name alone when it is not an NTU name or its action is not one of the dataset's."""
    from data.ntu import parse_name
    try:
        action = parse_name(name)['A']
    except ValueError:
        return name
    names = action_names(dataset or 'ntu120')
    return f"{name}: {names[action - 1]}" if action <= len(names) else name


def action_labels(actions, num_classes):
    """The sorted class indices (action number - 1) of action numbers `actions`; a ValueError naming the first
    that is no action of a dataset with `num_classes` classes (numbered 1 to num_classes)."""
    for action in actions:
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or not 1 <= action <= num_classes:
            raise ValueError(f"unknown action {action!r}: the actions are numbered 1 to {num_classes}")
    return np.array(sorted(set(int(a) for a in actions)), dtype=np.int64) - 1
