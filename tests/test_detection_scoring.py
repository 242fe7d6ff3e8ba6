"""PKU-MMD detection scoring (util.detection) and segments from frame probabilities (util.segments), on
hand-made cases whose answers are worked out in the comments."""
import numpy as np
import pytest

from data.pipeline import BadInput
from util.detection import frame_accuracy, read_intervals, score, write_proposals
from util.segments import segments_from_probs

THETAS = ("0.1", "0.3", "0.5", "0.7")


def test_a_perfect_detector_scores_100():
    truth = {"0002-L": [(1, 0, 50), (2, 60, 100)], "0003-M": [(1, 10, 40), (51, 50, 90)]}
    proposals = {v: [(label, s, e, 0.5 + 0.1 * i) for i, (label, s, e) in enumerate(rows)]
                 for v, rows in truth.items()}
    result = score(truth, proposals)
    assert result == {"mAP_a": {t: 100.0 for t in THETAS}, "mAP_v": {t: 100.0 for t in THETAS}}


# An instance of 90 frames and a detection of 90 frames shifted by s: IoU = (90 - s) / (90 + s) >= theta while
# s <= 90 (1 - theta) / (1 + theta): 73.6, 48.5, exactly 30 and 15.9 frames.
@pytest.mark.parametrize("theta,kept", [(0.1, 73), (0.3, 48), (0.5, 30), (0.7, 15)])
@pytest.mark.parametrize("direction", [1, -1])
def test_a_shifted_detection_drops_out_where_its_iou_falls_below_theta(theta, kept, direction):
    truth = {"v": [(7, 100, 190)]}
    for shift, expected in ((kept, 100.0), (kept + 1, 0.0)):
        start = 100 + direction * shift
        result = score(truth, {"v": [(7, start, start + 90, 0.9)]}, thetas=(theta,))
        assert result["mAP_a"][f"{theta:g}"] == expected
        assert result["mAP_v"][f"{theta:g}"] == expected


def test_a_second_detection_of_one_instance_is_a_false_positive():
    # Ranked TP, FP (the same instance again), TP: precision 1, 1/2, 2/3; the precision envelope 1, 2/3, 2/3;
    # AP = (1 + 2/3) / 2 instances = 5/6.
    truth = {"v": [(1, 0, 100), (1, 200, 300)]}
    proposals = {"v": [(1, 200, 300, 0.7), (1, 0, 100, 0.9), (1, 5, 100, 0.8)]}
    result = score(truth, proposals, thetas=(0.5,))
    assert result["mAP_a"]["0.5"] == pytest.approx(100 * 5 / 6)
    assert result["mAP_v"]["0.5"] == pytest.approx(100 * 5 / 6)


def test_a_false_positive_ranked_below_every_hit_costs_nothing():
    # All-point AP depends on the ranking alone: hit, then miss -> precision 1 at full recall.
    result = score({"v": [(3, 0, 100)]}, {"v": [(3, 0, 100, 0.9), (3, 500, 600, 0.1)]}, thetas=(0.5,))
    assert result["mAP_a"]["0.5"] == 100.0


def test_a_video_without_detections_still_counts_its_missed_actions():
    # Action 1: 2 instances, one found at rank 1 -> AP 1/2; action 2: never detected -> 0; mAP_a = 25.
    # Video a: AP 1; video b (no detections): 0; mAP_v = 50.
    truth = {"a": [(1, 0, 100)], "b": [(1, 0, 100), (2, 200, 300)]}
    result = score(truth, {"a": [(1, 0, 100, 0.9)]}, thetas=(0.5,))
    assert result == {"mAP_a": {"0.5": 25.0}, "mAP_v": {"0.5": 50.0}}


def test_map_v_and_map_a_on_two_videos_by_hand():
    truth = {"v1": [(1, 0, 100), (2, 150, 250)],
             "v2": [(4, 0, 60), (5, 100, 200), (5, 300, 400)]}
    proposals = {"v1": [(2, 150, 250, 0.9), (3, 300, 350, 0.8), (1, 0, 100, 0.7)],
                 "v2": [(5, 300, 400, 0.95), (4, 0, 60, 0.6), (5, 100, 130, 0.5)]}  # last: IoU 30/100 = 0.3
    result = score(truth, proposals, thetas=(0.3, 0.5))
    # v1: hit, miss (action 3 is in no video), hit -> (1 + 2/3) / 2 = 5/6.
    # v2 at theta 0.5: hit, hit, miss -> (1 + 1) / 3 = 2/3; at 0.3 all three hit -> 1.
    assert result["mAP_v"]["0.5"] == pytest.approx(100 * (5 / 6 + 2 / 3) / 2)  # 75
    assert result["mAP_v"]["0.3"] == pytest.approx(100 * (5 / 6 + 1) / 2)  # 91.67
    # Per action (3 has no instance and is left out): 1, 2, 4 found at rank 1 -> 1 each; action 5 at 0.5:
    # hit then miss over 2 instances -> 1/2; at 0.3 both -> 1.
    assert result["mAP_a"]["0.5"] == pytest.approx(100 * 3.5 / 4)  # 87.5
    assert result["mAP_a"]["0.3"] == 100.0


def test_proposals_of_a_video_without_ground_truth_are_refused():
    with pytest.raises(ValueError, match="0999-L"):
        score({"v": [(1, 0, 10)]}, {"0999-L": [(1, 0, 10, 0.5)]})


def test_frame_accuracy():
    assert frame_accuracy([0, 1, 1, 2], [0, 1, 2, 2]) == 75.0
    with pytest.raises(ValueError, match="shapes"):
        frame_accuracy([0, 1], [0, 1, 2])


def test_segments_from_probs_by_hand():
    # 160 frames: action 1 on [20, 50), a 5-frame blip of action 1 on [73, 78), action 2 on [100, 130); an action
    # frame has 0.9 on its action and 0.1 on background. The 20-frame mean of frame i spans [i - 10, i + 10):
    # activity 0.9 * (action frames in the window) / 20 >= 0.4 needs 9 of them. Action 1: i + 10 - 20 >= 9 and
    # 50 - (i - 10) >= 9 -> [19, 52); action 2 -> [99, 132); the blip reaches 5 / 20 * 0.9 = 0.225 and is gone.
    # Score: the window counts over [19, 52) are 9..20 (12 frames), 20 (10 frames), 19..9 (11 frames), summing
    # to 174 + 200 + 154 = 528 = 33 * 16 -> mean probability 0.9 * 16 / 20 = 0.72.
    probs = np.zeros((160, 3))
    probs[:, 0] = 1
    for (start, end), action in (((20, 50), 1), ((73, 78), 1), ((100, 130), 2)):
        probs[start:end] = 0
        probs[start:end, 0], probs[start:end, action] = 0.1, 0.9
    segments = segments_from_probs(probs)
    assert [s[:3] for s in segments] == [(1, 19, 52), (2, 99, 132)]
    assert [s[3] for s in segments] == pytest.approx([0.72, 0.72])
    # Without the filter the blip is a segment of its own and the runs are the action frames themselves.
    unfiltered = segments_from_probs(probs, smooth=1)
    assert [s[:3] for s in unfiltered] == [(1, 20, 50), (1, 73, 78), (2, 100, 130)]
    assert [s[3] for s in unfiltered] == pytest.approx([0.9, 0.9, 0.9])


def test_proposals_written_read_back(tmp_path):
    segments = [(12, 0, 40, 0.123456789012345), (3, 30, 90, 0.5)]
    write_proposals(tmp_path / "0002-L.txt", segments)
    assert read_intervals(tmp_path / "0002-L.txt", num_frames=90) == segments
    assert [p.name for p in tmp_path.iterdir()] == ["0002-L.txt"]


@pytest.mark.parametrize("text,line,message", [
    ("1,0,10,1\n2,5,x,1\n", 2, "expected label,start,end,confidence"),
    ("1,10,10,1\n", 1, "start 10 is not before end 10"),
    ("1,0,10,1\n\n2,20,101,1\n", 3, "past the recording's 100 frames"),
    ("1,50,80,1\n2,0,60,1\n", 1, "overlap line 2"),
])
def test_bad_interval_files_name_the_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "0002-L.txt"
    path.write_text(text)
    with pytest.raises(BadInput, match=f"{path}:{line}: .*{message}"):
        read_intervals(path, num_frames=100, allow_overlap=False)


def test_proposals_may_overlap(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("1,50,80,0.5\n2,0,60,0.25\n")
    assert read_intervals(path) == [(1, 50, 80, 0.5), (2, 0, 60, 0.25)]
