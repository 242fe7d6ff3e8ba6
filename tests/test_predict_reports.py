"""predict.py reports: accuracy apart for the inputs seen in training (told by the data), mean class accuracy, a
warning for another dataset's inputs or actions the model does not know, PKU-MMD frames and shortened clips,
per-class table, what it wrote."""
import csv
import re
import shutil

import numpy as np
import pytest
import torch

import predict
from data import ntu, synthetic
from data.pipeline import run_command
from test_data_pku import write_splits, write_video
from feeder.feeder_ntu import Feeder
from train_fixtures import one_thread, write_classifier_checkpoint
from util.scores import accuracies, class_accuracy, load_scores


@pytest.fixture(scope='module')
def recordings(tmp_path_factory):
    """Synthetic NTU-60 .skeleton files of training and test performers, and the NTU60_XSub.npz that data.ntu
    makes of them (names_train: the training ones)."""
    root = tmp_path_factory.mktemp('recordings')
    synthetic.main(['--out-dir', str(root), '--format', 'skeleton', '--num-train', '6', '--num-test', '5'])
    run_command(lambda: ntu.main(['--dataset', 'ntu60', '--raw-dir', str(root / 'raw'), '--out-dir', str(root),
                                  '--workers', '1']))
    return root


def checkpoint_trained_on(path, train_data, protocol='finetune', digests=True, **kwargs):
    """A tiny classifier checkpoint whose run trained on the train split of `train_data` (its digests stored as a
    training run stores them; none with `digests` False, as in a checkpoint written before they were kept)."""
    write_classifier_checkpoint(path, protocol, **kwargs)
    checkpoint = torch.load(path)
    checkpoint['args']['train_feeder_args'] = {'data_path': str(train_data)}
    if digests:
        checkpoint['train_digests'] = torch.from_numpy(Feeder(train_data, 'train').digests())
    torch.save(checkpoint, path)
    return str(path)


def accuracy_lines(out):
    """{'seen-in-training ' / '': (samples, top-1, top-5, mean class)} of the printed lines."""
    found = re.findall(r"Accuracy on the (\d+) (seen-in-training |)samples of known action: top-1 "
                       r"([\d.]+)%, top-5 ([\d.]+)%, mean class ([\d.]+)%", out)
    return {group: (int(n), *map(float, values)) for n, group, *values in found}


def expected(logits, labels, split):
    acc = accuracies(logits, np.where(split, labels, -1))
    return (acc['samples'], *(round(acc[k], 2) for k in ('top1', 'top5', 'mean_class')))


def test_inputs_seen_in_training_are_told_by_their_data_and_reported_apart(recordings, tmp_path, capsys):
    """The training performers' recordings are the samples the checkpoint's run read (their digests are stored):
    two accuracy lines, each equal to the accuracies of its samples. A recording of other data under a training
    sample's name is not seen; the checkpoint's data file is never opened (it is gone here)."""
    raw = tmp_path / 'raw'
    shutil.copytree(recordings / 'raw', raw)
    train_names = {str(n) for n in np.load(recordings / 'NTU60_XSub.npz')['names_train']}
    test_file = next(p for p in sorted(raw.iterdir()) if p.stem not in train_names)
    impostor = sorted(train_names)[0]
    test_file.rename(raw / f'{impostor}.skeleton')  # a test recording under a training sample's name
    checkpoint = checkpoint_trained_on(tmp_path / 'c.pth', recordings / 'NTU60_XSub.npz')
    torch_checkpoint = torch.load(checkpoint)
    torch_checkpoint['args']['val_feeder_args']['data_path'] = str(tmp_path / 'gone' / 'NTU60_XSub.npz')
    torch.save(torch_checkpoint, checkpoint)
    with one_thread():
        names, logits, labels = predict.main(['--checkpoint', checkpoint, str(raw), '--workers', '1',
                                              '--device', 'cpu', '--per_class', str(tmp_path / 'classes.csv')])
    out = capsys.readouterr().out
    in_train = np.array([n in train_names and n != impostor for n in names])
    assert in_train.sum() == 5 and len(names) == 10 and impostor in names
    lines = accuracy_lines(out)
    assert lines == {'': expected(logits, labels, ~in_train), 'seen-in-training ': expected(logits, labels, in_train)}
    assert '(no test of the model)' in out and 'none seen in training' in out
    table = list(csv.DictReader((tmp_path / 'classes.csv').open()))
    accuracy, counts = class_accuracy(logits[~in_train].argmax(1), labels[~in_train], 60)
    assert [int(r['class']) for r in table] == np.flatnonzero(counts).tolist()
    for row in table:
        c = int(row['class'])
        assert row['action'] == predict.action_names('ntu60')[c] and int(row['samples']) == counts[c]
        assert float(row['accuracy']) == pytest.approx(accuracy[c], abs=0.005)


def test_a_checkpoint_without_digests_marks_nothing_seen_in_one_line(recordings, tmp_path, capsys):
    checkpoint = checkpoint_trained_on(tmp_path / 'c.pth', recordings / 'NTU60_XSub.npz', digests=False)
    with one_thread():
        names, logits, labels = predict.main(['--checkpoint', checkpoint, str(recordings / 'raw'), '--workers', '1',
                                              '--device', 'cpu'])
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith('note:')] == [
        f"note: {checkpoint} stores no digests of its training samples (written before they were kept): no input "
        f"is marked as seen in training"]
    assert accuracy_lines(out) == {'': expected(logits, labels, np.ones(len(names), bool))}
    assert 'none seen in training' not in out


def test_inputs_of_another_dataset_get_a_warning_and_no_true_action(recordings, tmp_path, capsys):
    checkpoint = checkpoint_trained_on(tmp_path / 'pku.pth', 'PKUv1_XSub.npz', data_path='PKUv1_XSub.npz',
                                       num_classes=51, digests=False)
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
    assert accuracy_lines(out) == {'': expected(logits, labels, np.ones(len(names), bool))}
    assert 'none seen in training' in out
    assert re.search(rf"\n5 samples of {re.escape(str(npz))} in [\d.]+ s: [\d.]+ samples/s\n", out)


def test_pku_instances_have_their_frames_and_a_clip_past_the_video_is_shortened(tmp_path, capsys):
    rng = np.random.default_rng(0)
    raw = tmp_path / 'raw'
    write_video(raw, '0002-L', np.round(rng.normal(size=(40, 150)), 4), ['3,0,12,1', '5,15,40,1'])
    write_splits(raw, ['0003-L'], ['0003-L'])
    video = raw / 'skeleton' / '0002-L.txt'
    checkpoint = checkpoint_trained_on(tmp_path / 'c.pth', 'PKUv1_XSub.npz', data_path='PKUv1_XSub.npz',
                                       num_classes=51, digests=False)
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
    assert labels.tolist() == [2, 4] and 'stores no digests' in out
    assert f"note: {video}: the clip is frames 30 to 40: the video ends there" in out
    assert shortened == whole == ['0002-L_30-40']
    np.testing.assert_array_equal(logits, expected_logits)
    clip = list(csv.DictReader((tmp_path / 'clip.csv').open()))
    assert [(r['name'], r['action'], r['start'], r['end']) for r in clip] == [('0002-L_30-40', '', '30', '40')]
    with pytest.raises(SystemExit, match=rf"error: {re.escape(str(video))}: --start 40 is past its 40 frames; "
                                         rf"give a start below 40"):
        predict.main(['--checkpoint', checkpoint, str(video), '--start', '40', '--end', '45', '--device', 'cpu'])


def test_inputs_of_actions_the_model_does_not_know_get_one_warning(recordings, tmp_path, capfd):
    """Real-style NTU-60 recordings scored against a 13-action model: one warning line, and no true action for
    the inputs beyond its actions."""
    checkpoint = checkpoint_trained_on(tmp_path / 'c.pth', recordings / 'NTU60_XSub.npz', num_classes=13)
    with one_thread():
        names, _, labels = predict.main(['--checkpoint', checkpoint, str(recordings / 'raw'), '--workers', '1',
                                         '--device', 'cpu'])
    beyond = sum(int(n[-3:]) > 13 for n in names)
    assert 0 < beyond < len(names)
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith('warning:')]
    assert warnings == [f"warning: {beyond} of the {len(names)} inputs are of actions {checkpoint} does not know (its "
                        f"13 actions end at 'tear up paper'): no true action is shown or scored for them"]
    assert (labels == -1).sum() == beyond and labels.max() < 13
