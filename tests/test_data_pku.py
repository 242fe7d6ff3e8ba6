"""PKU-MMD preprocessing: the published Phase I arrays on real videos, generated videos, bad input."""
import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, shared_path

from data import pku
from data.pipeline import BadInput
from util.detection import read_intervals


def published_rows():
    """{(npz, part): {our sample name: (label0, frames kept)}} from row_order.tsv."""
    rows = {}
    with open(shared_path("realdata", "expected", "pku_v1", "row_order.tsv")) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            name = r["instance"].replace(".txt_", "_")  # 0036-L.txt_3 -> 0036-L_3
            rows.setdefault((r["npz"], r["part"]), {})[name] = (int(r["label0"]), int(r["frames_kept"]))
    return rows


@pytest.mark.parametrize("spelling", ["published", "phase2"])
def test_phase1_equals_published_arrays(spelling, tmp_path):
    """Samples compared as sets (the published script walks the folder unsorted). `phase2` renames the
    split files to the Phase II spelling and runs --phase 2 on the same videos."""
    raw, phase = shared_path("realdata", "pku"), 1
    if spelling == "phase2":
        phase = 2
        shutil.copytree(raw / "skeleton", tmp_path / "raw" / "skeleton")
        shutil.copytree(raw / "label", tmp_path / "raw" / "label")
        shutil.copy(raw / "cross-subject.txt", tmp_path / "raw" / "cross_subject_v2.txt")
        shutil.copy(raw / "cross-view.txt", tmp_path / "raw" / "cross_view_v2.txt")
        raw = tmp_path / "raw"
    pku.main(["--phase", str(phase), "--raw-dir", str(raw), "--out-dir", str(tmp_path / "out"), "--workers", "2"])
    for (npz, part), expected in published_rows().items():
        published = np.load(shared_path("realdata", "expected", "pku_v1", npz))
        ours = np.load(tmp_path / "out" / npz.replace("PKUv1", f"PKUv{phase}"))
        names = list(ours[f"names_{part}"])
        assert sorted(names) == sorted(expected)
        published_index = {name: i for i, name in enumerate(expected)}  # row_order lists rows in order
        for row, name in enumerate(names):
            i = published_index[name]
            np.testing.assert_array_equal(ours[f"x_{part}"][row], published[f"x_{part}"][i], err_msg=name)
            np.testing.assert_array_equal(ours[f"y_{part}"][row], published[f"y_{part}"][i], err_msg=name)
            label, kept = expected[name]
            assert ours[f"y_{part}"][row].argmax() == label and not ours[f"x_{part}"][row, kept:].any()
    empty = np.load(tmp_path / "out" / f"PKUv{phase}_XSub.npz")
    assert empty["x_test"].shape == (0, 300, 150) and empty["y_test"].shape == (0, 51)


def write_video(raw, name, frames, labels):
    """A generated video: `frames` (n, 150) written with 4 decimals, label lines as given."""
    (raw / "skeleton").mkdir(parents=True, exist_ok=True)
    (raw / "label").mkdir(exist_ok=True)
    np.savetxt(raw / "skeleton" / f"{name}.txt", frames, fmt="%.4f")
    (raw / "label" / f"{name}.txt").write_text("".join(f"{line}\n" for line in labels))


def write_splits(raw, train_subject, train_view):
    for kind, train in (("subject", train_subject), ("view", train_view)):
        (raw / f"cross-{kind}.txt").write_text(f"Training videos: \n{', '.join(train)}, \nValidataion videos: \n\n")


def test_instances_cut_padded_skipped_and_split(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    long_video = np.round(rng.normal(size=(400, 150)), 4)
    long_video[10:20] = 0
    write_video(raw, "0002-L", long_video, ["3,0,350,1", "51,10,20,2", "1,390,400,1"])
    write_video(raw, "0003-M", np.round(rng.normal(size=(50, 150)), 4), ["7,5,45,1"])
    write_video(raw, "0003-R", np.zeros((50, 150)), ["8,5,45,1"])  # no sample at all
    write_splits(raw, ["0002-L", "0003-R"], ["0003-M", "0002-R"])
    pku.main(["--phase", "1", "--raw-dir", str(raw), "--out-dir", str(tmp_path / "out"), "--workers", "1"])
    xsub = np.load(tmp_path / "out" / "PKUv1_XSub.npz")
    # 0002-L: instance 0 cut to 300 frames, instance 1 all zero (skipped), instance 2 the last 10 frames.
    assert list(xsub["names_train"]) == ["0002-L_0", "0002-L_2"] and list(xsub["names_test"]) == ["0003-M_0"]
    np.testing.assert_array_equal(xsub["x_train"][0], long_video[:300].astype(np.float32))
    np.testing.assert_array_equal(xsub["x_train"][1, :10], long_video[390:].astype(np.float32))
    assert not xsub["x_train"][1, 10:].any()
    np.testing.assert_array_equal(xsub["y_train"].argmax(1), [2, 0])
    np.testing.assert_array_equal(xsub["y_test"].argmax(1), [6])
    xview = np.load(tmp_path / "out" / "PKUv1_XView.npz")
    assert list(xview["names_train"]) == ["0003-M_0"] and list(xview["names_test"]) == ["0002-L_0", "0002-L_2"]
    assert xview["x_test"].shape == (2, 300, 150)


def valid_raw(tmp_path):
    raw = tmp_path / "raw"
    write_video(raw, "0002-L", np.ones((30, 150)), ["3,0,20,1"])
    write_video(raw, "0003-L", np.ones((30, 150)), ["4,0,20,1"])
    write_splits(raw, ["0002-L", "0003-L"], ["0002-L"])
    return raw


def test_label_line_with_missing_field_names_file_and_line(tmp_path):
    raw = valid_raw(tmp_path)
    (raw / "label" / "0003-L.txt").write_text("4,0,20,1\n5,21,29\n")
    with pytest.raises(BadInput, match=r"0003-L.txt:2: expected label,start,end,confidence .* found '5,21,29'"):
        pku.read_labels(raw / "label" / "0003-L.txt")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "data.pku", "--phase", "1", "--raw-dir", str(raw), "--out-dir",
                             str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: {raw / 'label' / '0003-L.txt'}:2: ")
    assert not out.exists() or not list(out.glob("*.npz*"))

    result = subprocess.run([sys.executable, "-m", "data.pku", "--phase", "1", "--raw-dir", str(raw), "--out-dir",
                             str(out), "--skip-bad"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"malformed:\n    {raw / 'label' / '0003-L.txt'}:2:" in result.stdout
    assert list(np.load(out / "PKUv1_XSub.npz")["names_train"]) == ["0002-L_0"]


def test_split_file_naming_no_video_and_bad_skeleton_line(tmp_path):
    raw = valid_raw(tmp_path)
    (raw / "cross-view.txt").write_text("Training videos: \n\nValidataion videos: \n0002-L\n")
    with pytest.raises(BadInput, match=r"cross-view.txt:2: expected the training videos"):
        pku.main(["--phase", "1", "--raw-dir", str(raw), "--out-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    rows = np.ones((30, 150))
    np.savetxt(raw / "skeleton" / "0002-L.txt", rows, fmt="%.1f")
    text = (raw / "skeleton" / "0002-L.txt").read_text().splitlines()
    text[6] = text[6].rsplit(" ", 1)[0]
    (raw / "skeleton" / "0002-L.txt").write_text("\n".join(text))
    with pytest.raises(BadInput, match=r"0002-L.txt:7: expected 150 numbers, found 149"):
        pku.read_pku_skeleton(raw / "skeleton" / "0002-L.txt")


@pytest.mark.parametrize("line, words", [("4,25,20,1", "frames 25 to 20 are not within the 30 frames of 0003-L.txt"),
                                         ("4,30,40,1", "frames 30 to 40 are not within the 30 frames of 0003-L.txt")])
def test_label_line_outside_the_video_names_file_and_line(tmp_path, line, words):
    raw = valid_raw(tmp_path)
    (raw / "label" / "0003-L.txt").write_text(f"4,0,20,1\n{line}\n")
    result = subprocess.run([sys.executable, "-m", "data.pku", "--phase", "1", "--raw-dir", str(raw), "--out-dir",
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"error: {raw / 'label' / '0003-L.txt'}:2: {words}: fix or delete the line"
    assert not list((tmp_path / "out").glob("*.npz*"))


def test_label_end_past_the_video_is_kept_and_reported(tmp_path, capsys):
    raw = valid_raw(tmp_path)
    (raw / "label" / "0003-L.txt").write_text("4,0,20,1\n5,10,45,1\n")
    with pytest.raises(pku.DataError, match=rf"^{raw / 'label' / '0003-L.txt'}:2: the label line ends past its "
                                            rf"video; .* pass --clips-only"):
        pku.main(["--phase", "1", "--raw-dir", str(raw), "--out-dir", str(tmp_path / "out"), "--workers", "1"])
    assert not list((tmp_path / "out").glob("*.npz*"))
    pku.main(["--phase", "1", "--raw-dir", str(raw), "--out-dir", str(tmp_path / "out"), "--workers", "1",
              "--clips-only"])
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npz")) == ["PKUv1_XSub.npz", "PKUv1_XView.npz"]
    report = capsys.readouterr().out
    assert "instances shortened: end past the video  1" in report
    assert f"shortened (end past the video):\n    {raw / 'label' / '0003-L.txt'}:2\n" in report
    xsub = np.load(tmp_path / "out" / "PKUv1_XSub.npz")
    row = list(xsub["names_train"]).index("0003-L_1")
    assert xsub["x_train"][row, :20].all() and not xsub["x_train"][row, 20:].any()  # frames 10..29


def test_split_file_naming_none_of_the_videos_is_an_error(tmp_path):
    raw = valid_raw(tmp_path)
    (raw / "cross-view.txt").write_text("Training videos: \n0999-L, 0998-M\nValidataion videos: \n\n")
    with pytest.raises(pku.DataError, match=r"cross-view.txt: names none of the 2 videos in .* as training videos"):
        pku.main(["--phase", "1", "--raw-dir", str(raw), "--out-dir", str(tmp_path / "out"), "--workers", "1"])
    assert not list((tmp_path / "out").glob("*.npz*"))


def check_untrimmed(out, raw, phase):
    """The untrimmed arrays of both benchmarks against the clip arrays, frame for frame, and against the label
    files read on their own (util.detection.read_intervals); returns the XSub untrimmed arrays."""
    for bench in pku.BENCHMARKS:
        clips = np.load(out / f"PKUv{phase}_{bench}.npz")
        whole = np.load(out / f"PKUv{phase}_{bench}_untrimmed.npz")
        for part in ("train", "test"):
            x, offsets, names = whole[f"x_{part}"], whole[f"offsets_{part}"], list(whole[f"names_{part}"])
            frame_labels, intervals = whole[f"frame_labels_{part}"], whole[f"intervals_{part}"]
            assert x.dtype == np.float32 and x.shape == (offsets[-1], 150) and offsets[0] == 0
            assert offsets.dtype == frame_labels.dtype == intervals.dtype == np.int64
            assert len(offsets) == len(names) + 1 and frame_labels.shape == (len(x),)
            for row, name in enumerate(clips[f"names_{part}"]):
                video, k = name.rsplit("_", 1)
                v = names.index(video)
                _, label, start, end = intervals[intervals[:, 0] == v][int(k)]
                length = min(end - start, pku.MAX_FRAMES)
                np.testing.assert_array_equal(clips[f"x_{part}"][row, :length],
                                              x[offsets[v] + start:offsets[v] + start + length], err_msg=name)
                assert clips[f"y_{part}"][row].argmax() + 1 == label
            for v, video in enumerate(names):
                lines = read_intervals(raw / "label" / f"{video}.txt", num_frames=offsets[v + 1] - offsets[v])
                np.testing.assert_array_equal(intervals[intervals[:, 0] == v, 1:], [line[:3] for line in lines])
                expected = np.zeros(offsets[v + 1] - offsets[v], np.int64)
                for label, start, end, _ in lines:
                    expected[start:end] = label
                np.testing.assert_array_equal(frame_labels[offsets[v]:offsets[v + 1]], expected, err_msg=video)
                skeleton = pku.read_pku_skeleton(raw / "skeleton" / f"{video}.txt").astype(np.float32)
                np.testing.assert_array_equal(x[offsets[v]:offsets[v + 1]], skeleton, err_msg=video)
    return np.load(out / f"PKUv{phase}_XSub_untrimmed.npz")


def test_untrimmed_arrays_hold_whole_videos_and_frame_labels(tmp_path):
    """Overlapping label lines: the later line labels the shared frames, both stay intervals; a video with no
    data (no clip) is still there."""
    rng = np.random.default_rng(1)
    raw = tmp_path / "raw"
    for name, frames, labels in (("0002-L", rng.normal(size=(400, 150)), ["3,0,350,1", "51,10,20,2", "1,390,400,1"]),
                                 ("0003-M", rng.normal(size=(50, 150)), ["7,5,45,1", "8,30,40,0"]),
                                 ("0004-R", np.zeros((60, 150)), ["9,0,10,1"])):
        write_video(raw, name, np.round(frames, 4), labels)
    write_splits(raw, ["0002-L", "0004-R"], ["0003-M"])
    pku.main(["--phase", "2", "--raw-dir", str(raw), "--out-dir", str(tmp_path / "out"), "--workers", "1"])
    xsub = check_untrimmed(tmp_path / "out", raw, 2)
    assert list(xsub["names_train"]) == ["0002-L", "0004-R"] and list(xsub["names_test"]) == ["0003-M"]
    np.testing.assert_array_equal(xsub["offsets_train"], [0, 400, 460])
    np.testing.assert_array_equal(xsub["intervals_train"], [[0, 3, 0, 350], [0, 51, 10, 20], [0, 1, 390, 400],
                                                            [1, 9, 0, 10]])
    labels = xsub["frame_labels_train"]
    assert (labels[:10] == 3).all() and (labels[10:20] == 51).all() and (labels[20:350] == 3).all()
    assert not labels[350:390].any() and (labels[390:400] == 1).all() and (labels[400:410] == 9).all()
    test_labels = xsub["frame_labels_test"]
    assert (test_labels[5:30] == 7).all() and (test_labels[30:40] == 8).all() and (test_labels[40:45] == 7).all()


def test_real_untrimmed_arrays_match_the_clip_arrays(tmp_path):
    raw = shared_path("realdata", "pku")
    pku.main(["--phase", "1", "--raw-dir", str(raw), "--out-dir", str(tmp_path / "out"), "--workers", "2"])
    xsub = check_untrimmed(tmp_path / "out", raw, 1)
    assert len(xsub["names_train"]) + len(xsub["names_test"]) == len(list((raw / "skeleton").glob("*.txt")))
