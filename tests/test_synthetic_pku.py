"""python -m data.synthetic --format pku: untrimmed takes in the PKU-MMD raw layout, read by data.pku."""
import numpy as np
import pytest
from test_data_pku import check_untrimmed

from data import pku, synthetic
from util.actions import PKU
from util.detection import read_intervals


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """3 training and 2 test takes, each filmed by the three views, then data.pku on them."""
    raw = tmp_path_factory.mktemp("synthetic_pku")
    synthetic.main(["--format", "pku", "--out-dir", str(raw), "--num-train", "3", "--num-test", "2", "--seed", "1"])
    pku.main(["--phase", "1", "--raw-dir", str(raw), "--out-dir", str(raw / "out"), "--workers", "1"])
    return raw


def test_actions_keep_their_names_under_pku_numbers():
    for ntu, number in synthetic.PKU_ACTIONS.items():
        name = synthetic.ACTIONS[ntu][0]
        assert PKU[number - 1] == ("bow" if name == "nod head/bow" else name)


def test_layout_and_splits(raw):
    videos = [f"{take:04d}-{view}" for take in range(2, 7) for view in "LMR"]
    assert sorted(p.stem for p in (raw / "skeleton").glob("*.txt")) == videos
    assert sorted(p.stem for p in (raw / "label").glob("*.txt")) == videos
    assert pku.read_split(raw / "cross-subject.txt") == {v for v in videos if v < "0005"}
    assert pku.read_split(raw / "cross-view.txt") == {v for v in videos if not v.endswith("M")}
    for take in range(2, 7):
        views = [pku.read_pku_skeleton(raw / "skeleton" / f"{take:04d}-{view}.txt") for view in "LMR"]
        assert len({len(v) for v in views}) == 1 and not np.allclose(views[0], views[1])
        labels = {(raw / "label" / f"{take:04d}-{view}.txt").read_text() for view in "LMR"}
        assert len(labels) == 1


def test_actions_with_idle_stretches_between(raw):
    lo, hi = synthetic.PKU_IDLE
    for path in sorted((raw / "skeleton").glob("*.txt")):
        frames = len(pku.read_pku_skeleton(path))
        lines = read_intervals(raw / "label" / path.name, num_frames=frames, allow_overlap=False)
        assert len(lines) == synthetic.PKU_ACTIONS_PER_TAKE
        assert {label for label, *_ in lines} <= set(synthetic.PKU_ACTIONS.values())
        edges = [0] + [frame for _, start, end, _ in lines for frame in (start, end)] + [frames]
        idle = np.diff(edges)[::2]
        assert ((lo <= idle) & (idle <= hi)).all(), (path.name, edges)


def test_untrimmed_arrays_follow_the_label_files_and_idle_is_still(raw):
    """Frame labels and values as the files say (check_untrimmed); a body moves over 10 frames about 3 times
    as far within actions as at rest."""
    arrays = check_untrimmed(raw / "out", raw, 1)
    moved = {True: [], False: []}
    for part in ("train", "test"):
        x, labels, offsets = arrays[f"x_{part}"], arrays[f"frame_labels_{part}"], arrays[f"offsets_{part}"]
        for first, last in zip(offsets[:-1], offsets[1:]):
            joints, active = x[first:last, :75].reshape(-1, 25, 3), labels[first:last] > 0
            distance = np.linalg.norm(joints[10:] - joints[:-10], axis=2).mean(axis=1)
            for state in (True, False):
                moved[state].append(distance[(active[10:] == state) & (active[:-10] == state)])
        assert (labels == 0).mean() > 0.2
    assert np.concatenate(moved[True]).mean() > 2 * np.concatenate(moved[False]).mean()
