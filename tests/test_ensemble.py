"""Score files (--save_scores) and their fusion by sample name (ensemble.py)."""
import numpy as np
import pytest

import ensemble
from train_fixtures import log_entries, run_entry
from util.scores import load_scores, save_scores, topk_accuracy


def scores(path, names, logits, labels):
    save_scores(path, names, np.array(logits, np.float32), labels)
    return str(path)


def test_hand_computed_fusion_is_the_same_in_any_sample_order(tmp_path, capsys):
    # 3 samples, 3 classes; labels 0, 1, 2. Stream A gets samples a, b right; B gets c only.
    a = scores(tmp_path / 'a.npz', ['a', 'b', 'c'], [[3, 0, 0], [0, 2, 0], [1, 2, 0]], [0, 1, 2])
    # B written in another order: c, a, b
    b = scores(tmp_path / 'b.npz', ['c', 'a', 'b'], [[0, 0, 4], [0, 4, 0], [0, 0, 1]], [2, 0, 1])
    # fused with weights 1, 0.5: a = [3, 2, 0] -> 0 right; b = [0, 2, 0.5] -> 1 right; c = [1, 2, 2] -> tie, 1 wrong
    fused, labels = ensemble.main([a, b, '--weights', '1', '0.5', '--out', str(tmp_path / 'fused.npz')])
    np.testing.assert_allclose(fused, [[3, 2, 0], [0, 2, 0.5], [1, 2, 2]])
    assert topk_accuracy(fused, labels, 1) == pytest.approx(200 / 3)
    out = capsys.readouterr().out.splitlines()
    # top-1, top-5, mean class: one sample per class, so the mean class accuracy is the top-1
    assert out[-3].split() == [b, '0.5', '33.33', '100.00', '33.33']
    assert out[-2].split() == ['fused', '66.67', '100.00', '66.67']
    assert out[-1] == f"Fused scores (names, logits, labels) of 3 samples written to {tmp_path / 'fused.npz'}"
    b_same_order = scores(tmp_path / 'b2.npz', ['a', 'b', 'c'], [[0, 4, 0], [0, 0, 1], [0, 0, 4]], [0, 1, 2])
    same, _ = ensemble.main([a, b_same_order, '--weights', '1', '0.5'])
    np.testing.assert_array_equal(fused, same)
    names, logits, labels = load_scores(tmp_path / 'fused.npz')
    assert names == ['a', 'b', 'c'] and labels.tolist() == [0, 1, 2] and np.allclose(logits, fused)


@pytest.mark.parametrize('names, labels, message', [
    (['a', 'b', 'd'], [0, 1, 2], 'sample d is not in'),
    (['a', 'b'], [0, 1], 'sample c of .* is missing'),
    (['a', 'c', 'b'], [0, 1, 1], 'sample c has label 1'),
])
def test_mismatched_score_files_are_refused_with_the_first_offending_name(tmp_path, names, labels, message):
    a = scores(tmp_path / 'a.npz', ['a', 'b', 'c'], np.eye(3), [0, 1, 2])
    b = scores(tmp_path / 'b.npz', names, np.eye(3)[:len(names)], labels)
    with pytest.raises(SystemExit, match=message):
        ensemble.main([a, b])


@pytest.mark.slow
def test_save_scores_after_training_and_after_eval(work, tmp_path):
    out = tmp_path / 'linear'
    run_entry('main_linprobe.py', '--config', work['linear'], '--output_dir', out, '--save_scores')
    names, logits, labels = load_scores(out / 'scores.npz')
    assert len(names) == 11 and logits.shape == (11, 60)
    assert topk_accuracy(logits, labels, 1) == pytest.approx(log_entries(out)[-1]['test_acc1'])
    evaluated = tmp_path / 'eval'
    run_entry('main_linprobe.py', '--config', work['linear'], '--output_dir', evaluated, '--eval', '--resume',
              out / 'checkpoint-last.pth', '--save_scores')
    again = load_scores(evaluated / 'scores.npz')
    assert again[0] == names and np.allclose(again[1], logits, atol=1e-6)
