"""predict.py reports: accuracy apart for inputs in the checkpoint's training split, mean class accuracy, a
warning for another dataset's inputs, PKU-MMD frames and shortened clips, per-class table, what it wrote."""
import csv
import re

import numpy as np
import pytest
import torch

import predict
from data import synthetic
from test_data_pku import write_splits, write_video
from train_fixtures import one_thread, write_classifier_checkpoint
from util.scores import accuracies, class_accuracy, load_scores


@pytest.fixture(scope='module')
def recordings(tmp_path_factory):
    """Synthetic NTU-60 .skeleton files of training and test performers, and the NTU60_XSub.npz of the same
    samples (names_train: the training ones)."""
    root = tmp_path_factory.mktemp('recordings')
    synthetic.main(['--out-dir', str(root), '--format', 'skeleton', '--num-train', '6', '--num-test', '5'])
    synthetic.main(['--out-dir', str(root), '--format', 'npz', '--num-train', '6', '--num-test', '5'])
    return root


def checkpoint_trained_on(path, train_data, protocol='finetune', **kwargs):
    """A tiny classifier checkpoint whose run trained on `train_data` (its train_feeder_args data_path)."""
    write_classifier_checkpoint(path, protocol, **kwargs)
    checkpoint = torch.load(path)
    checkpoint['args']['train_feeder_args'] = {'data_path': str(train_data)}
    torch.save(checkpoint, path)
    return str(path)


def accuracy_lines(out):
    """{'test-split ' / 'training-split ' / '': (samples, top-1, top-5, mean class)} of the printed lines."""
    found = re.findall(r"Accuracy on the (\d+) (test-split |training-split |)samples of known action: top-1 "
                       r"([\d.]+)%, top-5 ([\d.]+)%, mean class ([\d.]+)%", out)
    return {group: (int(n), *map(float, values)) for n, group, *values in found}


def expected(logits, labels, split):
    acc = accuracies(logits, np.where(split, labels, -1))
    return (acc['samples'], *(round(acc[k], 2) for k in ('top1', 'top5', 'mean_class')))


@pytest.mark.parametrize('source', ['names_train', 'rule'])
def test_training_and_test_inputs_are_reported_apart(recordings, tmp_path, capsys, source):
    """The training performers' files are in names_train of the checkpoint's training data (or, that file gone,
    in the NTU-60 cross-subject rule): two accuracy lines, each equal to the accuracies of its samples."""
    train_data = recordings / 'NTU60_XSub.npz' if source == 'names_train' else tmp_path / 'gone' / 'NTU60_XSub.npz'
    checkpoint = checkpoint_trained_on(tmp_path / 'c.pth', train_data)
    with one_thread():
        names, logits, labels = predict.main(['--checkpoint', checkpoint, str(recordings / 'raw'), '--workers', '1',
                                              '--device', 'cpu', '--per_class', str(tmp_path / 'classes.csv')])
    out = capsys.readouterr().out
    in_train = np.array([n in set(np.load(recordings / 'NTU60_XSub.npz')['names_train']) for n in names])
    assert in_train.sum() == 6 and len(names) == 11
    lines = accuracy_lines(out)
    assert lines == {'test-split ': expected(logits, labels, ~in_train),
                     'training-split ': expected(logits, labels, in_train)}
    assert (f"names_train of {train_data}" if source == 'names_train' else "the NTU60 XSub split rule") in out
    assert '(seen in training: no test of the model)' in out
    table = list(csv.DictReader((tmp_path / 'classes.csv').open()))
    accuracy, counts = class_accuracy(logits[~in_train].argmax(1), labels[~in_train], 60)
    assert [int(r['class']) for r in table] == np.flatnonzero(counts).tolist()
    for row in table:
        c = int(row['class'])
        assert row['action'] == predict.action_names('ntu60')[c] and int(row['samples']) == counts[c]
        assert float(row['accuracy']) == pytest.approx(accuracy[c], abs=0.005)


def test_inputs_of_another_dataset_get_a_warning_and_no_true_action(recordings, tmp_path, capsys):
    checkpoint = checkpoint_trained_on(tmp_path / 'pku.pth', 'PKUv1_XSub.npz', data_path='PKUv1_XSub.npz',
                                       num_classes=51)
    with one_thread():
        names, logits, labels = predict.main(['--checkpoint', checkpoint, str(recordings / 'raw'), '--workers', '1',
                                              '--device', 'cpu', '--scores', str(tmp_path / 's.npz')])
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith('warning:')]
    assert warnings == [f"warning: the inputs are NTU RGB+D recordings, {checkpoint} is a PKU-MMD model: its "
                        f"predictions are PKU-MMD actions, and no true action is shown or scored"]
    assert labels.tolist() == [-1] * 11 and logits.shape == (11, 51)
    assert '(true:' not in captured.out and 'Accuracy' not in captured.out
    assert load_scores(tmp_path / 's.npz')[2].tolist() == [-1] * 11
    assert (f"Scores (names, logits, labels; -1: unknown) of 11 samples written to {tmp_path / 's.npz'} "
            f"(for ensemble.py)") in captured.out


def test_an_npz_reports_samples_per_second_and_mean_class_accuracy(recordings, tmp_path, capsys):
    checkpoint = checkpoint_trained_on(tmp_path / 'c.pth', recordings / 'NTU60_XSub.npz')
    npz = recordings / 'NTU60_XSub.npz'
    with one_thread():
        names, logits, labels = predict.main(['--checkpoint', checkpoint, str(npz), '--device', 'cpu'])
    out = capsys.readouterr().out
    assert accuracy_lines(out) == {'test-split ': expected(logits, labels, np.ones(len(names), bool))}
    assert re.search(rf"\n5 samples of {re.escape(str(npz))} in [\d.]+ s: [\d.]+ samples/s\n", out)


def test_pku_instances_have_their_frames_and_a_clip_past_the_video_is_shortened(tmp_path, capsys):
    rng = np.random.default_rng(0)
    raw = tmp_path / 'raw'
    write_video(raw, '0002-L', np.round(rng.normal(size=(40, 150)), 4), ['3,0,12,1', '5,15,40,1'])
    write_splits(raw, ['0003-L'], ['0003-L'])
    video = raw / 'skeleton' / '0002-L.txt'
    checkpoint = checkpoint_trained_on(tmp_path / 'c.pth', 'PKUv1_XSub.npz', data_path='PKUv1_XSub.npz',
                                       num_classes=51)
    with one_thread():
        names, _, labels = predict.main(['--checkpoint', checkpoint, str(video), '--out', str(tmp_path / 'p.csv'),
                                         '--device', 'cpu'])
        shortened, logits, _ = predict.main(['--checkpoint', checkpoint, str(video), '--start', '30', '--end', '45',
                                             '--device', 'cpu', '--out', str(tmp_path / 'clip.csv')])
        whole, expected_logits, _ = predict.main(['--checkpoint', checkpoint, str(video), '--start', '30', '--end',
                                                  '40', '--device', 'cpu'])
    out = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / 'p.csv').open()))
    assert [(r['name'], r['start'], r['end']) for r in rows] == [('0002-L_0', '0', '12'), ('0002-L_1', '15', '40')]
    assert labels.tolist() == [2, 4] and 'test-split' in out and 'the split file' in out
    assert f"note: {video}: the clip is frames 30 to 40: the video ends there" in out
    assert shortened == whole == ['0002-L_30-40']
    np.testing.assert_array_equal(logits, expected_logits)
    clip = list(csv.DictReader((tmp_path / 'clip.csv').open()))
    assert [(r['name'], r['action'], r['start'], r['end']) for r in clip] == [('0002-L_30-40', '', '30', '40')]
    with pytest.raises(SystemExit, match=rf"error: {re.escape(str(video))}: --start 40 is past its 40 frames; "
                                         rf"give a start below 40"):
        predict.main(['--checkpoint', checkpoint, str(video), '--start', '40', '--end', '45', '--device', 'cpu'])
