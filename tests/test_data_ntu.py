"""NTU RGB+D preprocessing: the published arrays on real files, generated Kinect files, bad input."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, shared_path

from data import ntu
from data.kinect import parse_skeleton, read_skeleton, write_skeleton
from data.pipeline import BadInput, DataError, Rows, write_npz
from data.text_numbers import NotANumber, TextTokens

A_ID, B_ID, C_ID = "72057594037931101", "72057594037931102", "72057594037931103"


# ---------------------------------------------------------------- real files vs the published outputs

def expected_rows(variant):
    """{(npz, part): [(sample, valid_frames)]} from row_order.tsv, in published row order."""
    rows = {}
    with open(shared_path("realdata", "expected", variant, "row_order.tsv")) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            rows.setdefault((r["npz"], r["part"]), []).append((r["sample"], int(r["valid_frames"])))
    return rows


def real_files():
    return sorted(shared_path("realdata", "ntu", "raw").glob("*.skeleton"))


def test_parse_equals_published_stage1():
    raw = np.load(shared_path("realdata", "expected", "ntu60", "raw_skes_data.npz"))
    for path in real_files():
        name, skeleton = path.stem, read_skeleton(path)
        assert skeleton.num_frames == raw[f"{name}/num_frames"] and skeleton.dropped_frames == []
        assert list(skeleton.bodies) == list(raw[f"{name}/body_order"])
        for body_id, body in skeleton.bodies.items():
            key = f"{name}/{body_id}"
            np.testing.assert_array_equal(body.joints.reshape(-1, 3), raw[f"{key}/joints"], err_msg=key)
            np.testing.assert_array_equal(body.colors, raw[f"{key}/colors"], err_msg=key)
            np.testing.assert_array_equal(body.interval, raw[f"{key}/interval"], err_msg=key)
            if len(skeleton.bodies) > 1:
                assert ntu.motion(body.joints) == raw[f"{key}/motion"], key


def test_denoised_joints_equal_published_stage2():
    expected = np.load(shared_path("realdata", "expected", "ntu60", "denoised_joints.npz"))
    frames = np.loadtxt(shared_path("realdata", "expected", "ntu60", "denoised_frames_cnt.txt"), dtype=int)
    spread_log = shared_path("realdata", "expected", "ntu60", "logs", "noise_spread.log").read_text().splitlines()
    spread_removed = {line.split("\t")[0] for line in spread_log[1:] if line.strip()}
    assert len(spread_removed) == 6
    files = real_files()
    assert [p.stem for p in files] == sorted(expected.files)
    for path, num_frames in zip(files, frames):
        joints, counts = ntu.select_actors(read_skeleton(path))
        assert joints.dtype == np.float32 and joints.shape == expected[path.stem].shape, path.stem
        np.testing.assert_array_equal(joints, expected[path.stem], err_msg=path.stem)
        assert len(joints) == num_frames
        assert counts["spread"] == (path.stem in spread_removed), path.stem


@pytest.mark.parametrize("dataset", ["ntu60", "ntu120"])
def test_command_equals_published_arrays(dataset, tmp_path):
    """The whole command (2 workers; NTU-120 from two folders) against the published arrays, whose
    padding is the longest sample (205) instead of 300."""
    raw_dirs = [real_files()[0].parent]
    if dataset == "ntu120":
        raw_dirs = [tmp_path / "s001_s017a", tmp_path / "s001_s017b"]
        for i, path in enumerate(real_files()):
            raw_dirs[i % 2].mkdir(exist_ok=True)
            os.symlink(path, raw_dirs[i % 2] / path.name)
    ntu.main(["--dataset", dataset, "--raw-dir", *map(str, raw_dirs), "--out-dir", str(tmp_path / "out"),
              "--workers", "2"])
    rows = expected_rows(dataset)
    for npz in {npz for npz, _ in rows}:
        ours = np.load(tmp_path / "out" / npz)
        published = np.load(shared_path("realdata", "expected", dataset, npz))
        for part in ("train", "test"):
            names, valid = zip(*rows[(npz, part)])
            assert list(ours[f"names_{part}"]) == list(names)
            x, x_pub = ours[f"x_{part}"], published[f"x_{part}"]
            assert x.shape == (len(names), 300, 150) and x.dtype == np.float32
            assert x_pub.shape[1] == max(length for r in rows.values() for _, length in r)
            np.testing.assert_array_equal(x[:, :x_pub.shape[1]], x_pub)
            assert not x[:, x_pub.shape[1]:].any()
            for sample, length in zip(x, valid):  # rows after the last valid frame are zero
                assert sample[length - 1].any() and not sample[length:].any()
            assert ours[f"y_{part}"].dtype == published[f"y_{part}"].dtype
            np.testing.assert_array_equal(ours[f"y_{part}"], published[f"y_{part}"])


# ---------------------------------------------------------------- generated Kinect files

def standing(frame, x0=0.0, speed=0.0):
    """(25, 3) joints of a body taller than wide (not noisy), moving along x by `speed` per frame.
    Values have few decimals so that the text written is exact."""
    j = np.arange(25)
    return np.stack([np.round(x0 + 0.01 * (j % 5) + speed * frame, 4), np.round(0.05 * j - 0.6, 4),
                     np.full(25, 3.0)], axis=1)


def lying(frame):
    """(25, 3) joints wider than tall: a noisy detection for the spread rule."""
    j = np.arange(25)
    return np.stack([np.round(0.1 * j - 1.2 + 0.001 * frame, 4), np.round(0.01 * (j % 3), 4), np.full(25, 2.5)], axis=1)


def f32(joints):
    return np.asarray(joints, dtype=np.float64).astype(np.float32).reshape(-1, 75)


def test_body_appearing_late_goes_to_its_frames_and_centring_uses_actor1_first_frame(tmp_path):
    # A (slow) in frames 0-19, B (fast, so actor 1) from frame 5.
    frames = [[(A_ID, standing(f, 0.0, 0.001))] + ([(B_ID, standing(f, 1.0, 0.02))] if f >= 5 else [])
              for f in range(20)]
    write_skeleton(tmp_path / "late.skeleton", frames)
    skeleton = read_skeleton(tmp_path / "late.skeleton")
    np.testing.assert_array_equal(skeleton.bodies[B_ID].interval, np.arange(5, 20))
    joints, counts = ntu.select_actors(skeleton)
    expected = np.zeros((20, 150), np.float32)
    expected[5:, :75] = f32([standing(f, 1.0, 0.02) for f in range(5, 20)])
    expected[:, 75:] = f32([standing(f, 0.0, 0.001) for f in range(20)])
    np.testing.assert_array_equal(joints, expected)
    assert counts == {"length": 0, "spread": 0, "overlap": 0, "frames_removed": 0}
    centred = ntu.centre(joints)
    origin = np.tile(expected[5, 3:6], 50)
    np.testing.assert_array_equal(centred[5:], expected[5:] - origin)
    assert not centred[:5, :75].any()  # actor 1 absent: set back to zero
    np.testing.assert_array_equal(centred[:5, 75:], expected[:5, 75:] - origin[75:])


def test_body_vanishing_and_returning_has_a_compressed_timeline(tmp_path):
    # A in all 30 frames; B (faster, actor 1) in frames 0-14 and 20-29: its 25 frames are stored as
    # frames 0..24 (the published behaviour), so its frame 20 lands on row 15.
    frames = [[(A_ID, standing(f, 0.0, 0.001))] + ([(B_ID, standing(f, 1.0, 0.02))] if f < 15 or f >= 20 else [])
              for f in range(30)]
    write_skeleton(tmp_path / "gap.skeleton", frames)
    skeleton = read_skeleton(tmp_path / "gap.skeleton")
    np.testing.assert_array_equal(skeleton.bodies[B_ID].interval, np.arange(25))
    joints, _ = ntu.select_actors(skeleton)
    b_frames = [f for f in range(30) if f < 15 or f >= 20]
    np.testing.assert_array_equal(joints[:25, :75], f32([standing(f, 1.0, 0.02) for f in b_frames]))
    assert not joints[25:, :75].any()
    np.testing.assert_array_equal(joints[:, 75:], f32([standing(f, 0.0, 0.001) for f in range(30)]))


def test_three_bodies_one_noisy_and_one_short(tmp_path):
    # A, B standing (B moves more: actor 1), C lying in every frame (spread rule), D seen 11 frames
    # (length rule).
    frames = [[(A_ID, standing(f, 0.0, 0.001)), (B_ID, standing(f, 1.0, 0.02)), (C_ID, lying(f))]
              + ([("72057594037931104", standing(f, -1.0))] if f < 11 else []) for f in range(20)]
    write_skeleton(tmp_path / "noisy.skeleton", frames)
    joints, counts = ntu.select_actors(read_skeleton(tmp_path / "noisy.skeleton"))
    assert counts == {"length": 1, "spread": 1, "overlap": 0, "frames_removed": 0}
    np.testing.assert_array_equal(joints[:, :75], f32([standing(f, 1.0, 0.02) for f in range(20)]))
    np.testing.assert_array_equal(joints[:, 75:], f32([standing(f, 0.0, 0.001) for f in range(20)]))


def test_noisy_share_below_threshold_lowers_motion_to_the_clean_frames():
    # B is fastest overall, but only because of 6 lying frames (30%): over its standing frames it is
    # slower than A, so A becomes actor 1.
    frames = [[(A_ID, standing(f, 0.0, 0.01)), (B_ID, lying(f) * 3 if f % 10 < 3 else standing(f, 1.0, 0.001))]
              for f in range(20)]
    text = _skeleton_text(frames)
    joints, counts = ntu.select_actors(parse_skeleton(text))
    assert counts["spread"] == 0
    np.testing.assert_array_equal(joints[:, :75], f32([standing(f, 0.0, 0.01) for f in range(20)]))


def test_third_body_overlapping_both_actors_is_dropped_and_touching_is_no_overlap():
    # By motion: A frames 0-29 (actor 1), B 0-14 (actor 2), C 14-29 (shares only frame 14 with B: joins
    # B's slot), D 5-24 overlaps both slots: dropped.
    def bodies(f):
        out = [(A_ID, standing(f, 0.0, 0.03))]
        out += [(B_ID, standing(f, 1.0, 0.002))] if f <= 14 else []
        out += [(C_ID, standing(f, 2.0, 0.001))] if f >= 14 else []
        out += [("72057594037931104", standing(f, 3.0))] if 5 <= f <= 24 else []
        return out
    joints, counts = ntu.select_actors(parse_skeleton(_skeleton_text([bodies(f) for f in range(30)])))
    assert counts["overlap"] == 1
    np.testing.assert_array_equal(joints[14:, 75:], f32([standing(f, 2.0, 0.001) for f in range(14, 30)]))
    np.testing.assert_array_equal(joints[:14, 75:], f32([standing(f, 1.0, 0.002) for f in range(14)]))
    np.testing.assert_array_equal(joints[:, :75], f32([standing(f, 0.0, 0.03) for f in range(30)]))


def test_empty_frames_are_dropped_and_crlf_reads_the_same(tmp_path):
    frames = [[] if f in (0, 3, 4, 9) else [(A_ID, standing(f, 0.0, 0.01))] for f in range(10)]
    write_skeleton(tmp_path / "lf.skeleton", frames)
    write_skeleton(tmp_path / "crlf.skeleton", frames, newline="\r\n")
    assert b"\r\n" in (tmp_path / "crlf.skeleton").read_bytes()
    lf, crlf = read_skeleton(tmp_path / "lf.skeleton"), read_skeleton(tmp_path / "crlf.skeleton")
    for skeleton in (lf, crlf):
        assert skeleton.dropped_frames == [0, 3, 4, 9] and skeleton.num_frames == 6
        np.testing.assert_array_equal(skeleton.bodies[A_ID].interval, np.arange(6))
        joints, _ = ntu.select_actors(skeleton)
        np.testing.assert_array_equal(joints, f32([standing(f, 0.0, 0.01) for f in (1, 2, 5, 6, 7, 8)]))


def _skeleton_text(frames):
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, joints in bodies:
            lines += [f"{body_id} 0 1 1 1 1 0 0.1 0.2 2", "25"]
            lines += [f"{x:.7g} {y:.7g} {z:.7g} 250.5 200.5 960.5 540.5 0.5 0.5 0.5 0.5 2" for x, y, z in joints]
    return ("\n".join(lines) + "\n").encode()


def test_text_numbers_equal_python_float():
    rng = np.random.default_rng(0)
    tokens = [f"{v:.{d}f}" for v, d in zip(rng.normal(0, 10.0 ** rng.integers(-3, 4, 3000)), rng.integers(0, 12, 3000))]
    tokens += [f"{v:.7g}" for v in rng.normal(0, 1e-4, 500)] + [f"{v:.17g}" for v in rng.normal(0, 1, 500)]
    tokens += ["0", "-0.0", "+1.5", ".5", "7.", "1E-05", "nan", "-inf", "12345678901234", "123456789012345678"]
    text = "\r\n".join(" ".join(tokens[i:i + 7]) for i in range(0, len(tokens), 7)).encode()
    parsed = TextTokens(text)
    values = parsed.floats(np.arange(len(tokens)))
    np.testing.assert_array_equal(values, np.array([float(t) for t in tokens]))
    assert np.signbit(values[tokens.index("-0.0")])
    assert list(parsed.count[:2]) == [7, 7] and parsed.text(7) == tokens[7]
    with pytest.raises(NotANumber) as info:
        TextTokens(b"1 2\n3 4x 5\n").floats(np.arange(5))
    assert info.value.index == 3 and info.value.text == "4x"


def test_write_npz_streams_rows_and_leaves_nothing_on_failure(tmp_path):
    blocks = [np.full((1, 4, 3), i, np.float32) for i in range(5)]
    write_npz(tmp_path / "ok.npz", {"x": Rows((5, 4, 3), np.float32, iter(blocks)), "y": np.arange(5)})
    with np.load(tmp_path / "ok.npz") as z:
        np.testing.assert_array_equal(z["x"], np.concatenate(blocks))
        np.testing.assert_array_equal(z["y"], np.arange(5))

    def failing():
        yield blocks[0]
        raise OSError("disk full")
    with pytest.raises(DataError, match=r"cannot write .*bad.npz: disk full \(free space"):
        write_npz(tmp_path / "bad.npz", {"x": Rows((5, 4, 3), np.float32, failing())})
    with pytest.raises(ValueError, match="2 rows written, 5 declared"):
        write_npz(tmp_path / "bad.npz", {"x": Rows((5, 4, 3), np.float32, iter(blocks[:2]))})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.npz"]


# ---------------------------------------------------------------- the command on generated files

def write_dataset(folder, names=("S001C001P001R001A001", "S001C002P002R001A002", "S001C003P003R001A003")):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_skeleton(folder / f"{name}.skeleton", [[(A_ID, standing(f, 0.1 * i, 0.01))] for f in range(12 + i)])
    return folder


def report_values(report):
    """{label: value} of the report's `  label  value` lines."""
    pairs = (line.strip().rsplit("  ", 1) for line in report.splitlines() if line.startswith("  ") and "  " in line.strip())
    return {label.strip(): value.strip() for label, value in pairs}


def last_line_number(path):
    return path.read_bytes().count(b"\n") + 1


def run(*args):
    return subprocess.run([sys.executable, "-m", "data.ntu", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True)


def test_command_report_skips_file_without_skeleton_and_resumes_from_cache(tmp_path, capsys):
    raw = write_dataset(tmp_path / "raw")
    write_skeleton(raw / "S001C001P002R001A004.skeleton", [[] for _ in range(5)])
    out = tmp_path / "out"
    ntu.main(["--dataset", "ntu60", "--raw-dir", str(raw), "--out-dir", str(out), "--workers", "1"])
    report = capsys.readouterr().out
    values = report_values(report)
    assert values["files read"] == "4" and values["files skipped: no skeleton"] == "1"
    assert values["NTU60_XSub.npz"] == "train 2, test 1" and values["frames per sample (padded)"] == "300"
    assert report.split("no skeleton:\n")[1].split("\n")[0].strip() == "S001C001P002R001A004"
    data = np.load(out / "NTU60_XSub.npz")
    assert list(data["names_train"]) == ["S001C001P001R001A001", "S001C002P002R001A002"]
    assert list(data["names_test"]) == ["S001C003P003R001A003"]
    np.testing.assert_array_equal(data["y_train"].argmax(1), [0, 1])
    assert data["x_train"].shape == (2, 300, 150) and data["y_train"].shape == (2, 60)
    view = np.load(out / "NTU60_XView.npz")
    assert list(view["names_train"]) == ["S001C002P002R001A002", "S001C003P003R001A003"]

    # A second run reads each file's result from the cache: replace one cached result and it shows.
    cached = out / "cache" / "S001C001P001R001A001.npz"
    with np.load(cached) as z:
        entry = dict(z)
    entry["joints"] = entry["joints"] + 1
    np.savez(cached, **entry)
    ntu.main(["--dataset", "ntu60", "--raw-dir", str(raw), "--out-dir", str(out), "--workers", "1", "--overwrite"])
    again = np.load(out / "NTU60_XSub.npz")
    shifted = ntu.centre(entry["joints"])
    np.testing.assert_array_equal(again["x_train"][0, :12, :75], shifted)
    # Touching the raw file invalidates its entry.
    os.utime(raw / "S001C001P001R001A001.skeleton", ns=(1, 1))
    ntu.main(["--dataset", "ntu60", "--raw-dir", str(raw), "--out-dir", str(out), "--workers", "1", "--overwrite"])
    np.testing.assert_array_equal(np.load(out / "NTU60_XSub.npz")["x_train"], data["x_train"])


def test_ntu120_copies_single_actor_into_second_slot(tmp_path):
    raw = write_dataset(tmp_path / "raw", ("S018C001P045R001A120", "S019C001P046R001A061"))
    ntu.main(["--dataset", "ntu120", "--raw-dir", str(raw), "--out-dir", str(tmp_path), "--workers", "1"])
    xset = np.load(tmp_path / "NTU120_XSet.npz")
    assert list(xset["names_train"]) == ["S018C001P045R001A120"] and xset["y_train"][0, 119] == 1
    x = xset["x_train"][0]
    np.testing.assert_array_equal(x[:, 75:], x[:, :75])
    assert x[:12].any() and not x[12:].any()
    assert list(np.load(tmp_path / "NTU120_XSub.npz")["names_train"]) == ["S018C001P045R001A120", "S019C001P046R001A061"]


def with_line(text, number, edit):
    """`text` with its 1-based line `number` replaced by edit(line)."""
    lines = text.split(b"\n")
    lines[number - 1] = edit(lines[number - 1])
    return b"\n".join(lines)


# Lines of the generated files: 1 frame count, 2 body count, 3 body info, 4 joint count, 5-29 joints,
# 30 body count of frame 2, 31 body info, 32 joint count, 33-57 joints, ...
BAD_FILES = {
    # case: (corruption, line named in the error (None: the last line), words in the message)
    "truncated": (lambda t: t[:t.index(b"\n", len(t) // 2)], None, "file ends early"),
    "truncated_in_line": (lambda t: t[:len(t) // 2], None, "a joint line: expected 12 numbers"),
    "eleven_numbers": (lambda t: with_line(t, 46, lambda line: line.rsplit(b" ", 1)[0]), 46,
                       "a joint line: expected 12 numbers, found 11 values"),
    "non_numeric": (lambda t: with_line(t, 35, lambda line: line.replace(b"250.5", b"25o.5")), 35, "'25o.5' is not a number"),
    "joint_count": (lambda t: with_line(t, 32, lambda line: b"24"), 32, "the joint count: expected 25, found '24'"),
    "body_count": (lambda t: with_line(t, 30, lambda line: b"x"), 30, "expected the number of bodies of frame 2"),
    "nan": (lambda t: with_line(t, 35, lambda line: b"nan " + line.split(b" ", 1)[1]), 35,
            "'nan' is not a finite coordinate"),
    "beyond_float32": (lambda t: with_line(t, 46, lambda line: b"1e39 " + line.split(b" ", 1)[1]), 46,
                       "'1e39' is not a finite coordinate"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_error_names_file_and_line(case, tmp_path):
    path = write_dataset(tmp_path / "raw") / "S001C001P001R001A001.skeleton"
    corrupt, line, words = BAD_FILES[case]
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(BadInput) as info:
        read_skeleton(path)
    assert str(info.value).startswith(f"{path}:{line or last_line_number(path)}: ")
    assert words in str(info.value)


def test_bad_file_stops_the_command_or_is_skipped(tmp_path):
    raw = write_dataset(tmp_path / "raw")
    bad = raw / "S001C001P001R001A001.skeleton"
    bad.write_bytes(bad.read_bytes()[:1000])
    out = tmp_path / "out"
    result = run("--dataset", "ntu60", "--raw-dir", raw, "--out-dir", out, "--workers", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: {bad}:{last_line_number(bad)}: ")  # after the progress bar
    assert not list(out.glob("*.npz")) and not list(out.glob("*.tmp*"))

    result = run("--dataset", "ntu60", "--raw-dir", raw, "--out-dir", out, "--workers", "2", "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert f"malformed:\n    {bad}:" in result.stdout
    assert list(np.load(out / "NTU60_XSub.npz")["names_train"]) == ["S001C002P002R001A002"]

    before = (out / "NTU60_XSub.npz").stat().st_mtime_ns
    result = run("--dataset", "ntu60", "--raw-dir", raw, "--out-dir", out, "--skip-bad")
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"error: {out / 'NTU60_XSub.npz'}, {out / 'NTU60_XView.npz'} already exist; pass --overwrite to replace"]
    assert (out / "NTU60_XSub.npz").stat().st_mtime_ns == before


def test_bad_names_and_folders_are_reported(tmp_path):
    raw = write_dataset(tmp_path / "raw")
    with pytest.raises(DataError, match="outside 1..60"):
        ntu.find_files([write_dataset(tmp_path / "more", ["S018C001P045R001A061"])], 60)
    (raw / "notes.skeleton").write_text("1\n0\n")
    with pytest.raises(BadInput, match="not an NTU sample name"):
        ntu.find_files([raw], 60)
    with pytest.raises(DataError, match="no such folder"):
        ntu.find_files([tmp_path / "missing"], 60)


def test_bench_prints_rate_and_projection(tmp_path):
    raw = write_dataset(tmp_path / "raw")
    result = subprocess.run([sys.executable, "-m", "data.bench", str(raw), "--workers", "1,2", "--repeat", "2"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    assert lines[0].startswith("3 files, one process: parsing")
    for workers, line in zip((1, 2), lines[1:]):
        rate = float(line.split(": ")[1].split(" files/s")[0])
        minutes = float(line.split("NTU-60 ")[1].split(" min")[0])
        assert line.startswith(f"workers {workers}:") and rate > 0
        assert minutes == pytest.approx(56_880 / rate / 60, rel=0.01, abs=0.06)


def test_unwritable_out_dir_is_one_line(tmp_path):
    raw = write_dataset(tmp_path / "raw")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run("--dataset", "ntu60", "--raw-dir", raw, "--out-dir", blocker / "out", "--workers", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: {blocker / 'out'}")
    assert blocker.read_text() == "not a folder"


def test_two_runs_into_one_out_dir_at_once_never_mix_their_arrays(tmp_path):
    """Two runs on different raw folders into one --out-dir at once: the folder's lock lets one write at a
    time; a run that finds it taken stops with one line. Both array files come from the same run."""
    raws = {"a": write_dataset(tmp_path / "a"),
            "b": write_dataset(tmp_path / "b", ("S002C001P001R001A004", "S002C002P002R001A005"))}
    both = [subprocess.Popen([sys.executable, "-m", "data.ntu", "--dataset", "ntu60", "--raw-dir", str(raw),
                              "--workers", "1", "--overwrite", "--out-dir", str(tmp_path / "out")],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for raw in raws.values()]
    errors = [p.communicate(timeout=120)[1] for p in both]
    assert 0 in [p.returncode for p in both], errors
    for p, error in zip(both, errors):
        if p.returncode:
            assert error.splitlines()[-1].startswith(f"error: --out-dir {tmp_path / 'out'}: in use by another "
                                                     f"data.ntu / data.pku / data.synthetic run (pid ")
    names = [{str(n) for n in np.load(tmp_path / "out" / f"NTU60_{bench}.npz")["names_train"]} |
             {str(n) for n in np.load(tmp_path / "out" / f"NTU60_{bench}.npz")["names_test"]}
             for bench in ("XSub", "XView")]
    assert names[0] == names[1] and names[0] in [{p.stem for p in raw.glob("*.skeleton")} for raw in raws.values()]
    assert not list((tmp_path / "out").glob("*.tmp*"))
