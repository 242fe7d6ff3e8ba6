import math
import pickle
import zipfile

import numpy as np
import pytest
import torch
from conftest import shared_path
from scipy.spatial.transform import Rotation

from feeder.augment import (BatchAugment, centre_crop, crop_length, crop_resize, random_crop, rotate,
                            rotation_matrix, to_bone, to_velocity)
from feeder.feeder_ntu import Feeder, label_subset

# The published bone pairs (1-based joint, 1-based parent), written out independently of data.skeleton.
NTU_PAIRS = ((1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
             (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23),
             (21, 21), (23, 8), (24, 25), (25, 12))


def write_npz(path, x_train, labels, num_classes=60, x_test=None, test_labels=None, compressed=False, **extra):
    x_test = x_train if x_test is None else x_test
    test_labels = labels if test_labels is None else test_labels
    arrays = dict(x_train=np.asarray(x_train, np.float32), y_train=np.eye(num_classes)[labels],
                  x_test=np.asarray(x_test, np.float32), y_test=np.eye(num_classes)[test_labels], **extra)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def ramp_npz(tmp_path, valid, frames=300, slope=0.5, start=1.0):
    """One sample whose every value in frame t is start + slope * t, for t < valid; zero after."""
    x = np.zeros((1, frames, 150), np.float32)
    x[0, :valid] = (start + slope * np.arange(valid, dtype=np.float32))[:, None]
    return write_npz(tmp_path / "ramp.npz", x, [3])


def random_npz(tmp_path, n=12, frames=300, seed=0, name="random.npz", **kw):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, frames, 150), np.float32)
    for i in range(n):
        valid = rng.integers(30, frames + 1)
        x[i, :valid] = rng.standard_normal((valid, 150))
    return write_npz(tmp_path / name, x, rng.integers(0, 60, n), **kw)


def frame_values(data):
    """(3, T, 25, 2) ramp data -> the value of each frame (all its entries are equal)."""
    per_frame = data.transpose(1, 0, 2, 3).reshape(data.shape[1], -1)
    assert np.all(per_frame == per_frame[:, :1])
    return per_frame[:, 0]


@pytest.mark.parametrize("valid, p, bias", [(100, 0.9, 4), (100, 0.8, 9), (103, 0.95, 2), (300, 0.95, 7),
                                           (41, 0.5, 10)])
def test_centre_crop_indices(tmp_path, valid, p, bias):
    # bias = int((1 - p) * valid / 2) in double precision: 1 - 0.9 = 0.09999999999999998 and
    # 1 - 0.8 = 0.19999999999999996, so 100 frames lose 4 (not 5) or 9 (not 10) at each end;
    # 0.05 * 103 / 2 = 2.575 -> 2, 0.05 * 300 / 2 = 7.5 -> 7, 0.5 * 41 / 2 = 10.25 -> 10
    assert centre_crop(valid, p) == (bias, valid - 2 * bias)
    feeder = Feeder(ramp_npz(tmp_path, valid, slope=1.0), "test", p_interval=[p], window_size=-1)
    values = frame_values(feeder[0][0])
    np.testing.assert_array_equal(values, 1.0 + np.arange(bias, valid - bias))


def test_crop_length_bounds(tmp_path):
    assert crop_length(200, 0.5) == 100 and crop_length(200, 0.999) == 199
    assert crop_length(80, 0.5) == 64 and crop_length(40, 0.9) == 40
    lengths = {}
    for valid in (200, 80, 40):
        feeder = Feeder(ramp_npz(tmp_path, valid, slope=1.0), "train", p_interval=[0.5, 1], window_size=-1)
        np.random.seed(0)
        lengths[valid] = []
        for _ in range(200):
            values = frame_values(feeder[0][0])
            # a run of consecutive valid frames
            assert values[0] >= 1 and values[-1] <= valid and np.all(np.diff(values) == 1)
            lengths[valid].append(len(values))
    assert min(lengths[200]) >= 100 and max(lengths[200]) <= 200 and len(set(lengths[200])) > 50
    assert set(lengths[80]) <= set(range(64, 81)) and len(set(lengths[80])) > 5
    assert set(lengths[40]) == {40}
    # batch draws follow the same rule
    valid = torch.tensor([200.0, 80.0, 40.0], dtype=torch.float64).repeat(100)
    offsets, lengths = random_crop(valid, (0.5, 1.0), torch.Generator().manual_seed(0))
    low = torch.tensor([100, 64, 40]).repeat(100)
    assert (lengths >= low).all() and (lengths <= valid).all() and (offsets >= 0).all()
    assert (offsets + lengths <= valid).all()


def test_linear_ramp_resampling(tmp_path):
    # 60 valid frames to 120: source position of output frame j is (j + 0.5) * 60/120 - 0.5 = j/2 - 0.25,
    # clamped at 0 and, beyond the last frame, held at frame 59.
    feeder = Feeder(ramp_npz(tmp_path, 60, slope=0.5, start=1.0), "test", p_interval=[1.0], window_size=120)
    values = frame_values(feeder[0][0])
    assert values[0] == 1.0                    # position clamped to 0
    assert values[1] == 1.0 + 0.5 * 0.25       # position 0.25
    assert values[2] == 1.0 + 0.5 * 0.75       # position 0.75
    assert values[118] == 1.0 + 0.5 * 58.75
    assert values[119] == 1.0 + 0.5 * 59       # position 59.25: no next frame, the last one
    position = np.clip(np.arange(120) / 2 - 0.25, 0, 59)
    np.testing.assert_allclose(values, 1.0 + 0.5 * position, rtol=1e-6)
    # 240 valid frames to 120: position 2j + 0.5
    feeder = Feeder(ramp_npz(tmp_path, 240, slope=0.5, start=1.0), "test", p_interval=[1.0], window_size=120)
    np.testing.assert_allclose(frame_values(feeder[0][0]), 1.0 + 0.5 * (2 * np.arange(120) + 0.5), rtol=1e-6)


def test_rotation_of_unit_vectors():
    x = torch.zeros(1, 3, 1, 25, 2)
    x[0, :, 0, :3, 0] = torch.eye(3)  # joints 0, 1, 2 = e_x, e_y, e_z
    theta = math.pi / 6
    c, s = math.cos(theta), math.sin(theta)
    cases = {  # angles (x, y, z) -> images of e_x, e_y, e_z (the columns of R)
        (0.0, 0.0, theta): [(c, -s, 0), (s, c, 0), (0, 0, 1)],      # Rz = [[c, s, 0], [-s, c, 0], [0, 0, 1]]
        (0.0, theta, 0.0): [(c, 0, s), (0, 1, 0), (-s, 0, c)],      # Ry = [[c, 0, -s], [0, 1, 0], [s, 0, c]]
        (theta, 0.0, 0.0): [(1, 0, 0), (0, c, -s), (0, s, c)],      # Rx = [[1, 0, 0], [0, c, s], [0, -s, c]]
        (0.0, 0.0, math.pi / 2): [(0, -1, 0), (1, 0, 0), (0, 0, 1)],
    }
    for angles, images in cases.items():
        out = rotate(x, rotation_matrix(torch.tensor([angles])))
        np.testing.assert_allclose(out[0, :, 0, :3, 0].T.numpy(), np.array(images, np.float32), atol=1e-6)
    # the composition Rz Ry Rx: each factor is the passive rotation, i.e. scipy's with the angle negated
    angles = np.array([0.1, -0.2, 0.25])
    expected = Rotation.from_euler("ZYX", -angles[::-1]).as_matrix()
    np.testing.assert_allclose(rotation_matrix(torch.tensor(angles[None], dtype=torch.float32))[0].numpy(),
                               expected, atol=1e-6)


def test_rotation_preserves_bone_lengths(tmp_path):
    rng = np.random.default_rng(1)
    pose = rng.standard_normal(150).astype(np.float32)
    x = np.zeros((1, 300, 150), np.float32)
    x[0, :90] = pose  # a still pose: resampling keeps it, only the rotation moves it
    path = write_npz(tmp_path / "still.npz", x, [0])
    plain = Feeder(path, "train", p_interval=[0.5, 1], window_size=120, bone=True)[0][0]
    torch.manual_seed(0)
    rotated = Feeder(path, "train", p_interval=[0.5, 1], window_size=120, bone=True, random_rot=True)[0][0]
    assert np.abs(rotated - plain).max() > 0.05
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=0), np.linalg.norm(plain, axis=0), rtol=1e-5, atol=1e-6)


def test_bone_and_vel_values(tmp_path):
    rng = np.random.default_rng(2)
    joints = rng.integers(-9, 10, size=(3, 4, 25, 2)).astype(np.float32)  # (C, T, V, M), small integers
    joints[:, :, 0, 0] = 50  # no frame sums to 0
    x = joints.transpose(1, 3, 2, 0).reshape(1, 4, 150)
    path = write_npz(tmp_path / "small.npz", x, [7])
    bone = np.zeros_like(joints)
    for joint, parent in NTU_PAIRS:
        bone[:, :, joint - 1] = joints[:, :, joint - 1] - joints[:, :, parent - 1]
    assert np.all(bone[:, :, 20] == 0) and bone[0, 1, 0, 1] == joints[0, 1, 0, 1] - joints[0, 1, 1, 1]

    def item(**kw):
        return Feeder(path, "test", p_interval=[1.0], window_size=-1, **kw)[0][0]

    np.testing.assert_array_equal(item(), joints)
    np.testing.assert_array_equal(item(bone=True), bone)
    vel = np.zeros_like(joints)
    vel[:, :3] = joints[:, 1:] - joints[:, :3]
    np.testing.assert_array_equal(item(vel=True), vel)
    both = np.zeros_like(joints)
    both[:, :3] = bone[:, 1:] - bone[:, :3]
    np.testing.assert_array_equal(item(bone=True, vel=True), both)
    assert np.all(item(vel=True)[:, 3] == 0)


def test_subsets(tmp_path):
    labels = np.repeat(np.arange(10), 40)  # 400 samples, 40 per class
    x = np.ones((400, 8, 150), np.float32)
    path = write_npz(tmp_path / "many.npz", x, labels)
    full = Feeder(path, "train")
    assert len(full) == 400 and full.num_classes == 60
    assert len(Feeder(path, "train", debug=True)) == 100
    subsets = []
    for rank in (0, 1):  # each rank seeds its global generators differently, as a launcher would
        np.random.seed(rank)
        torch.manual_seed(rank)
        subsets.append(Feeder(path, "train", data_ratio=0.1, subset_seed=5))
    assert len(subsets[0]) == 40 and subsets[0].sample_name == subsets[1].sample_name
    assert len(set(subsets[0].sample_name)) == 40
    other = Feeder(path, "train", data_ratio=0.1, subset_seed=6)
    assert other.sample_name != subsets[0].sample_name
    assert len(Feeder(path, "train", data_ratio=0.01)) == 4
    assert len(label_subset(np.zeros(350, int), 0.01, seed=0)) == 3  # int(3.5), as published (round: 4)
    assert len(label_subset(np.zeros(40091, int), 0.01, seed=0)) == 400  # NTU-60 cross-subject at 1%
    balanced = Feeder(path, "train", data_ratio=0.1, subset_seed=5, balanced_subset=True)
    assert np.array_equal(np.bincount(balanced.label, minlength=10), np.full(10, 4))
    np.testing.assert_array_equal(balanced.label, labels[[int(n.split("_")[1]) for n in balanced.sample_name]])
    # balanced with unequal classes: the same count from every class
    uneven = np.concatenate([np.zeros(100, int), np.ones(10, int)])
    picked = label_subset(uneven, 0.1, seed=0, balanced=True)
    assert np.array_equal(np.bincount(uneven[picked]), [6, 6])


def test_batch_augment_equals_per_sample(tmp_path):
    """A batch_augment item carries the draws of the per-sample path with the same seeds (checked against the
    published draw order), and BatchAugment applying them gives the per-sample items bit for bit."""
    path = random_npz(tmp_path)
    for bone, vel in ((False, False), (True, True)):
        kw = dict(p_interval=[0.5, 1], window_size=120, random_rot=True, bone=bone, vel=vel)
        per_sample, full = Feeder(path, "train", **kw), Feeder(path, "train", batch_augment=True, **kw)
        expected, items = [], []
        for i in range(len(per_sample)):
            for feeder, out in ((per_sample, expected), (full, items)):
                np.random.seed(100 + i)
                torch.manual_seed(100 + i)
                out.append(feeder[i])
        x, labels, indices, valid, offsets, lengths, angles = torch.utils.data.default_collate(items)
        assert x.shape == (12, 3, 300, 25, 2) and angles.shape == (12, 3)
        assert indices.tolist() == list(range(12)) and labels.tolist() == [it[1] for it in expected]
        for i in range(len(full)):  # the published draws
            np.random.seed(100 + i)
            torch.manual_seed(100 + i)
            length = int(crop_length(int(valid[i]), np.random.rand(1)[0] * 0.5 + 0.5))
            assert (offsets[i], lengths[i]) == (np.random.randint(0, int(valid[i]) - length + 1), length)
            assert torch.equal(angles[i], torch.zeros(3).uniform_(-0.3, 0.3))
        batch = BatchAugment.from_feeder(full)(x, valid, offsets, lengths, angles)
        assert torch.equal(batch, torch.from_numpy(np.stack([it[0] for it in expected])))
        # the functions BatchAugment uses, step by step
        manual = rotate(crop_resize(x, offsets, lengths, 120), rotation_matrix(angles))
        manual = to_velocity(to_bone(manual)) if bone else manual
        assert torch.equal(batch, manual)
    # test split: the centre crop is deterministic, so BatchAugment's own crop matches too
    per_sample = Feeder(path, "test", p_interval=[0.95], window_size=120, bone=True, vel=True)
    full = Feeder(path, "test", p_interval=[0.95], window_size=120, bone=True, vel=True, batch_augment=True)
    expected = torch.from_numpy(np.stack([per_sample[i][0] for i in range(len(per_sample))]))
    x, _, _, valid, offsets, lengths, angles = next(iter(torch.utils.data.DataLoader(full, batch_size=12)))
    assert not angles.any()
    augment = BatchAugment.from_feeder(full)
    assert torch.equal(augment(x, valid, offsets, lengths, angles), expected)
    assert torch.equal(augment(x, valid), expected)


@pytest.mark.parametrize("kw", [dict(p_interval=[0.5, 1], window_size=120, random_rot=True),
                                dict(p_interval=[0.5, 1], window_size=64, random_rot=True, bone=True, vel=True),
                                dict(p_interval=[0.9], window_size=120),
                                dict(p_interval=[0.5, 1], window_size=-1, random_rot=True),
                                dict(p_interval=[0.5, 1], window_size=120, random_rot=True, batch_augment=True)])
def test_loader_batches_equal_items(tmp_path, kw):
    """__getitems__ (what a DataLoader calls for a batch: the crops of all samples resampled, laid out and
    rotated at once) gives the items of __getitem__ from the same random stream, bit for bit."""
    feeder = Feeder(random_npz(tmp_path), "train", **kw)
    indices = [3, 0, 7, 7, 11, 5]
    batches = []
    for get in (lambda: [feeder[i] for i in indices], lambda: feeder.__getitems__(indices)):
        np.random.seed(1)
        torch.manual_seed(1)
        batches.append(get())
    expected, items = batches
    assert len(items) == len(indices)
    for a, b in zip(items, expected):
        assert len(a) == len(b)
        assert all(torch.equal(x, y) if torch.is_tensor(x) else x == y for x, y in zip(a[1:], b[1:]))
        assert a[0].shape == b[0].shape and a[0].dtype == np.float32
        np.testing.assert_array_equal(a[0], b[0])
    # sample 7 twice: its own random crop each time (batch_augment: its angles), the same centre crop
    first, second = (np.asarray(items[k][-1] if feeder.batch_augment else items[k][0]) for k in (2, 3))
    assert np.array_equal(first, second) == (len(feeder.p_interval) == 1)
    if feeder.window_size > 0:  # crops of one length: the loader stacks them
        assert torch.utils.data.default_collate(items)[0].shape == (len(indices), *items[0][0].shape)


def test_batch_augment_random(tmp_path):
    path = random_npz(tmp_path)
    full = Feeder(path, "train", p_interval=[0.5, 1], window_size=64, random_rot=True, batch_augment=True)
    x, _, _, valid, *_ = next(iter(torch.utils.data.DataLoader(full, batch_size=12)))
    aug = BatchAugment.from_feeder(full)
    a = aug(x, valid, generator=torch.Generator().manual_seed(1))
    b = aug(x, valid, generator=torch.Generator().manual_seed(1))
    c = aug(x, valid, generator=torch.Generator().manual_seed(2))
    assert a.shape == (12, 3, 64, 25, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="window_size"):
        BatchAugment([0.5, 1], -1)


def test_official_feeder_vectors():
    vectors = torch.load(shared_path("vectors", "feeder_ntu60_xview.pt"), weights_only=True)
    path = shared_path("realdata", "expected", "ntu60", vectors["npz"])
    for split in ("test", "train"):
        for suffix, kw in (("", {}), ("_bone", dict(bone=True)), ("_vel", dict(vel=True))):
            feeder = Feeder(path, split, p_interval=[0.95], window_size=120, **kw)
            out = np.stack([feeder[i][0] for i in range(len(feeder))])
            np.testing.assert_array_equal(out, vectors[f"{split}_centre{suffix}"].numpy())
            np.testing.assert_array_equal(feeder.label, vectors[f"{split}_labels"].numpy())
        feeder = Feeder(path, split, p_interval=[0.5, 1], window_size=120, random_rot=True)
        indices, seeds = vectors[f"{split}_random_index"].tolist(), vectors[f"{split}_random_seed"].tolist()
        for k, (index, seed) in enumerate(zip(indices, seeds)):
            np.random.seed(seed)
            torch.manual_seed(seed)
            # the rotation is a float32 matrix product: its last bit depends on the CPU's kernel (AVX2 or
            # AVX-512), so it is compared to 1e-6; the crop and the resampling above are bit for bit
            np.testing.assert_allclose(feeder[index][0], vectors[f"{split}_random"][k].numpy(), rtol=1e-6,
                                       atol=1e-6)


def test_memory_mapping(tmp_path):
    path = random_npz(tmp_path)
    mapped = Feeder(path, "train", p_interval=[0.95], window_size=50)
    assert isinstance(mapped.data.base, np.memmap)
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("x_train.npy").compress_type == zipfile.ZIP_STORED
    loaded = Feeder(path, "train", p_interval=[0.95], window_size=50, use_mmap=False)
    compressed = Feeder(random_npz(tmp_path, name="c.npz", compressed=True), "train", p_interval=[0.95],
                        window_size=50)
    assert not isinstance(compressed.data.base, np.memmap)
    for i in range(len(mapped)):
        np.testing.assert_array_equal(mapped[i][0], loaded[i][0])
        np.testing.assert_array_equal(mapped[i][0], compressed[i][0])
    with open(path, "rb") as f:
        before = f.read()
    mapped[0]
    with open(path, "rb") as f:
        assert f.read() == before


def test_valid_length(tmp_path):
    x = np.zeros((2, 50, 150), np.float32)
    x[0, :37] = 1.0
    x[0, 20] = 0.0  # a dropped frame inside the sequence: counted out, the prefix rule shortens the crop
    x[1, :50, 3] = -2.0
    feeder = Feeder(write_npz(tmp_path / "v.npz", x, [0, 1]), "test", p_interval=[1.0], window_size=-1)
    assert feeder.valid_length(0) == 36 and feeder.valid_length(1) == 50
    assert feeder[0][0].shape == (3, 36, 25, 2) and feeder[1][0].shape == (3, 50, 25, 2)
    feeder.data = np.zeros_like(x)  # computed once, then remembered
    assert feeder.valid_length(0) == 36


def test_pickled_feeder_maps_the_file_again(tmp_path):
    path = random_npz(tmp_path)
    feeder = Feeder(path, "train", p_interval=[0.5, 1], window_size=120, random_rot=True)
    blob = pickle.dumps(feeder)
    assert len(blob) < 20_000 < feeder.data.nbytes  # what a worker started by 'spawn' receives
    clone = pickle.loads(blob)
    assert isinstance(clone.data.base, np.memmap)
    for i in range(len(feeder)):
        np.random.seed(i)
        torch.manual_seed(i)
        expected = feeder[i][0]
        np.random.seed(i)
        torch.manual_seed(i)
        np.testing.assert_array_equal(clone[i][0], expected)


def test_names_and_items(tmp_path):
    names = np.array([f"S001C001P001R001A{a:03d}" for a in range(1, 13)])
    path = random_npz(tmp_path, names_train=names, names_test=names)
    feeder = Feeder(path, "test", p_interval=[0.95], window_size=120)
    data, label, index = feeder[4]
    assert data.shape == (3, 120, 25, 2) and data.dtype == np.float32
    assert label == feeder.label[4] and index == 4 and feeder.sample_name[4] == names[4]
    assert Feeder(random_npz(tmp_path, name="n.npz"), "train").sample_name[:2] == ["train_0", "train_1"]


def test_errors(tmp_path):
    missing = tmp_path / "nothere.npz"
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        Feeder(missing)
    no_train = tmp_path / "no_train.npz"
    np.savez(no_train, x_test=np.zeros((2, 10, 150), np.float32), y_test=np.eye(60)[[0, 1]])
    with pytest.raises(ValueError, match=r"no_train.npz: no array x_train \(arrays in the file: x_test, y_test\)"):
        Feeder(no_train, "train")
    narrow = write_npz(tmp_path / "narrow.npz", np.ones((2, 10, 75)), [0, 1])
    with pytest.raises(ValueError, match=r"narrow.npz: x_train has shape \(2, 10, 75\); expected \(samples, fr"):
        Feeder(narrow)
    double = tmp_path / "double.npz"
    np.savez(double, x_train=np.ones((2, 10, 150)), y_train=np.eye(60)[[0, 1]])
    with pytest.raises(ValueError, match="double.npz: x_train has dtype float64; expected float32"):
        Feeder(double)
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match="text.npz: not an .npz archive"):
        Feeder(text)
    path = random_npz(tmp_path)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'val'"):
        Feeder(path, "val")
    with pytest.raises(ValueError, match="the model has 10 classes but .*random.npz has 60"):
        Feeder(path).check_num_classes(10)
    with pytest.raises(ValueError, match="p_interval"):
        Feeder(path, p_interval=[0.2, 0.5, 1])
    bad_labels = tmp_path / "labels.npz"
    np.savez(bad_labels, x_train=np.ones((2, 10, 150), np.float32), y_train=np.zeros((2, 60)))
    with pytest.raises(ValueError, match="labels.npz: y_train row 0 has 0 positive entries"):
        Feeder(bad_labels)
    empty = np.zeros((1, 10, 150), np.float32)
    with pytest.raises(ValueError, match="has no non-zero frame"):
        Feeder(write_npz(tmp_path / "empty.npz", empty, [0]))[0]
