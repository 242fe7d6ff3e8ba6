import os
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import ROOT
from data import synthetic
from data.ntu import TRAIN_SUBJECTS_60
from data.skeleton import PARENTS
from feeder.feeder_ntu import Feeder

NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
CHANCE = 1 / len(synthetic.ACTIONS)  # 13 classes: 0.077


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """195 training and 130 test samples (15 and 10 per class), seed 0, in the published layout."""
    out = tmp_path_factory.mktemp("synthetic")
    synthetic.write_arrays(synthetic.generate(0, 195, 130), out)
    return out


def window_features(path, split, window=8):
    feeder = Feeder(path, split, p_interval=[0.95], window_size=window)
    return np.stack([feeder[i][0] for i in range(len(feeder))]), feeder.label


@pytest.mark.slow
def test_learnable_but_not_from_the_first_frame(dataset):
    """A ridge classifier on the centre-cropped sequences resampled to 8 frames reaches 0.82 test accuracy
    (chance 0.077); the position of any single joint in the first frame gives at most 0.22 (ridge or
    5-nearest-neighbours), little more than telling one-person from two-person actions gives (2/13 = 0.15)."""
    path = dataset / "NTU60_XSub.npz"
    x_train, y_train = window_features(path, "train")
    x_test, y_test = window_features(path, "test")
    assert len(np.unique(y_train)) == len(np.unique(y_test)) == 13
    clf = make_pipeline(StandardScaler(), RidgeClassifier(alpha=10.0))
    clf.fit(x_train.reshape(len(x_train), -1), y_train)
    accuracy = clf.score(x_test.reshape(len(x_test), -1), y_test)
    assert accuracy > 0.6, accuracy

    first = []
    for body in range(2):
        for joint in range(25):
            f_train, f_test = x_train[:, :, 0, joint, body], x_test[:, :, 0, joint, body]
            for model in (RidgeClassifier(alpha=1.0), KNeighborsClassifier(5)):
                single = make_pipeline(StandardScaler(), model).fit(f_train, y_train)
                first.append(single.score(f_test, y_test))
    assert max(first) < 0.3, max(first)
    assert max(first) < accuracy / 2


def test_published_layout(dataset):
    for bench in ("XSub", "XView"):
        with np.load(dataset / f"NTU60_{bench}.npz") as npz:
            arrays = {key: npz[key] for key in npz.files}
        assert sorted(arrays) == ["names_test", "names_train", "x_test", "x_train", "y_test", "y_train"]
        assert arrays["x_train"].dtype == np.float32 and arrays["x_train"].shape[1:] == (300, 150)
        assert arrays["y_train"].shape[1] == 60 and np.all(arrays["y_train"].sum(1) == 1)
        names = {part: [NAME.fullmatch(n) for n in arrays[f"names_{part}"]] for part in ("train", "test")}
        assert all(m is not None for part in names.values() for m in part)
        assert len(arrays["names_train"]) + len(arrays["names_test"]) == 325
        for part in ("train", "test"):
            fields = np.array([[int(g) for g in m.groups()] for m in names[part]])  # S C P R A
            np.testing.assert_array_equal(arrays[f"y_{part}"].argmax(1), fields[:, 4] - 1)
            assert set(fields[:, 4]) == set(synthetic.ACTIONS)
            key, train_values = (2, TRAIN_SUBJECTS_60) if bench == "XSub" else (1, (2, 3))
            assert np.all(np.isin(fields[:, key], train_values) == (part == "train"))
            assert set(fields[:, 1]) == {1, 2, 3} or bench == "XView"
    with np.load(dataset / "NTU60_XSub.npz") as npz:
        feeder = Feeder(dataset / "NTU60_XSub.npz", "test")  # the zip64 members are mapped in place
        assert isinstance(feeder.data.base, np.memmap) and np.array_equal(feeder.data, npz["x_test"])
        assert feeder.sample_name == list(npz["names_test"])
        x = np.concatenate([npz["x_train"], npz["x_test"]])
        labels = np.concatenate([npz["y_train"], npz["y_test"]]).argmax(1) + 1
        performers = [int(n[9:12]) for n in np.concatenate([npz["names_train"], npz["names_test"]])]
    valid = np.count_nonzero(np.any(x != 0, axis=2), axis=1)
    assert valid.min() >= 40 and valid.max() <= 300 and valid.std() > 20
    assert all(np.all(x[i, valid[i]:] == 0) for i in range(len(x)))
    assert np.all(x[:, 0, 3:6] == 0)  # centred on actor 1's spine-middle joint in the first frame
    two = np.array([synthetic.ACTIONS[a][2] == 2 for a in labels])
    second_body = np.any(x[:, :, 75:] != 0, axis=(1, 2))
    np.testing.assert_array_equal(second_body, two)
    assert two.sum() >= 4 * 20

    # every body keeps its bone lengths (up to the sensor noise); a performer keeps them across samples
    joints = x[:, :, :75].reshape(len(x), 300, 25, 3)
    bones = np.linalg.norm(joints - joints[:, :, list(PARENTS)], axis=-1)  # (N, 300, 25)
    median = np.array([np.median(bones[i, :valid[i]], axis=0) for i in range(len(x))])
    spread = np.array([bones[i, :valid[i]].std(axis=0).max() for i in range(len(x))])
    assert spread.max() < 0.05
    performers = np.array(performers)
    solo = ~two
    within = [median[solo & (performers == p)].std(axis=0).mean() for p in set(performers[solo])
              if np.sum(solo & (performers == p)) > 2]
    across = median[solo].std(axis=0).mean()
    assert np.mean(within) < across / 3, (np.mean(within), across)


def test_deterministic_from_seed():
    a = synthetic.generate(3, 13, 13)
    b = synthetic.generate(3, 13, 13)
    c = synthetic.generate(4, 13, 13)
    assert list(a) == list(b) and list(a) != list(c)
    for name in a:
        for (id_a, joints_a), (id_b, joints_b) in zip(a[name], b[name]):
            assert id_a == id_b and np.array_equal(joints_a, joints_b)
    assert {int(n[-3:]) for n in a} == set(synthetic.ACTIONS)


def run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


@pytest.mark.slow
def test_skeleton_files_through_the_preprocessing(tmp_path):
    """--format skeleton, then the real preprocessing command, gives the arrays of --format npz."""
    common = ["--seed", "5", "--num-train", "26", "--num-test", "13"]
    result = run("data.synthetic", "--out-dir", str(tmp_path / "raw_run"), "--format", "skeleton", *common)
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "raw_run" / "raw").glob("*.skeleton"))
    assert len(files) == 39 and all(NAME.fullmatch(f.stem) for f in files)
    endings = {b"\r\n" in f.read_bytes()[:200] for f in files}
    assert endings == {True, False}
    first = files[0].read_text().splitlines()
    assert int(first[0]) >= 40 and int(first[1]) in (1, 2) and first[3] == "25" and len(first[4].split()) == 12

    result = run("data.ntu", "--dataset", "ntu60", "--raw-dir", str(tmp_path / "raw_run" / "raw"),
                 "--out-dir", str(tmp_path / "raw_run"), "--workers", "1")
    assert result.returncode == 0, result.stderr
    result = run("data.synthetic", "--out-dir", str(tmp_path / "npz_run"), "--format", "npz", *common)
    assert result.returncode == 0, result.stderr
    for bench in ("XSub", "XView"):
        with np.load(tmp_path / "raw_run" / f"NTU60_{bench}.npz") as a, \
                np.load(tmp_path / "npz_run" / f"NTU60_{bench}.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                if key.startswith("x_"):
                    np.testing.assert_allclose(a[key], b[key], rtol=0, atol=2e-6)
                else:
                    np.testing.assert_array_equal(a[key], b[key])
    feeder = Feeder(tmp_path / "raw_run" / "NTU60_XSub.npz", "train", p_interval=[0.5, 1], window_size=120)
    assert len(feeder) == 26 and feeder[0][0].shape == (3, 120, 25, 2)

    again = run("data.synthetic", "--out-dir", str(tmp_path / "npz_run"), "--format", "npz", *common)
    assert again.returncode == 1 and "already exist" in again.stderr and "--overwrite" in again.stderr
    too_many = run("data.synthetic", "--out-dir", str(tmp_path / "x"), "--num-train", "100000")
    assert too_many.returncode == 1 and "distinct sample names" in too_many.stderr


def test_unwritable_out_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, "-m", "data.synthetic", "--out-dir", str(blocker / "out"), "--num-train",
                             "2", "--num-test", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (f"error: {blocker / 'out'}: cannot create the folder (Not a "
                                              f"directory); give a writable --out-dir")
