"""predict.py: raw NTU / PKU-MMD files give the logits of evaluation on the .npz that data.ntu / data.pku make of
the same files; outputs, and one-line errors."""
import argparse
import csv
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import predict
from conftest import shared_path
from data import ntu, pku
from util.evaluation import predict as evaluate_logits
from feeder.feeder_ntu import Feeder
from train_fixtures import one_thread, write_classifier_checkpoint
from util.scores import load_scores


def evaluation_logits(model, npz, feeder_args):
    """{name: logits} of both splits of a preprocessed .npz through the test feeder, as evaluation runs it."""
    out = {}
    for split in ('train', 'test'):
        dataset = Feeder(**{**feeder_args, 'data_path': str(npz), 'split': split})
        logits, _ = evaluate_logits(DataLoader(dataset, batch_size=7), model, torch.device('cpu'),
                                    argparse.Namespace(amp='none', dist_eval=False))
        out.update(zip(dataset.sample_name, logits))
    return out


def assert_same_logits(names, logits, expected):
    assert sorted(names) == sorted(expected)
    for name, row in zip(names, logits):
        torch.testing.assert_close(torch.from_numpy(row), expected[name], rtol=0, atol=1e-6)


def test_raw_ntu_files_give_the_logits_of_evaluation_on_their_npz(tmp_path, capsys):
    raw = shared_path('realdata', 'ntu', 'raw')
    ntu.main(['--dataset', 'ntu60', '--raw-dir', str(raw), '--out-dir', str(tmp_path / 'ntu'), '--workers', '1'])
    checkpoint = tmp_path / 'bone.pth'
    model = write_classifier_checkpoint(checkpoint, 'finetune', bone=True)
    with one_thread():
        expected = evaluation_logits(model, tmp_path / 'ntu' / 'NTU60_XSub.npz', torch.load(checkpoint)[
            'args']['val_feeder_args'])
        capsys.readouterr()
        names, logits, labels = predict.main(['--checkpoint', str(checkpoint), str(raw), '--workers', '2',
                                              '--out', str(tmp_path / 'p.json'), '--scores', str(tmp_path / 's.npz')])
    assert len(names) == 61
    assert_same_logits(names, logits, expected)
    assert labels.tolist() == [ntu.parse_name(n)['A'] - 1 for n in names]
    assert '61 samples from 61 files in ' in capsys.readouterr().out
    table = json.loads((tmp_path / 'p.json').read_text())
    row = table[names.index('S001C001P001R001A001')]
    assert row['action'] == 'drink water' and len(row['top']) == 5
    probs = torch.softmax(torch.from_numpy(logits[names.index('S001C001P001R001A001')]).double(), 0)
    assert row['top'][0]['probability'] == pytest.approx(probs.max().item(), abs=1e-6)
    assert load_scores(tmp_path / 's.npz')[0] == names


def test_raw_pku_videos_give_the_logits_of_evaluation_on_their_npz(tmp_path):
    raw = shared_path('realdata', 'pku')
    pku.main(['--phase', '1', '--raw-dir', str(raw), '--out-dir', str(tmp_path / 'pku'), '--workers', '1'])
    checkpoint = tmp_path / 'probe.pth'
    model = write_classifier_checkpoint(checkpoint, 'linprobe', 'PKUv1_XSub.npz', num_classes=51, vel=True)
    with one_thread():
        expected = evaluation_logits(model, tmp_path / 'pku' / 'PKUv1_XView.npz', torch.load(checkpoint)[
            'args']['val_feeder_args'])
        names, logits, labels = predict.main(['--checkpoint', str(checkpoint), str(raw / 'skeleton'),
                                              '--out', str(tmp_path / 'p.csv')])
    assert_same_logits(names, logits, expected)
    rows = list(csv.DictReader((tmp_path / 'p.csv').open()))
    assert [r['name'] for r in rows] == names and rows[0]['action'] == predict.action_names('pku')[labels[0]]
    video = sorted((raw / 'skeleton').glob('*.txt'))[0]
    k, label, start, end, _ = pku.read_labels(raw / "label" / video.name)[2]
    with one_thread():
        clip, clip_logits, clip_labels = predict.main(['--checkpoint', str(checkpoint), str(video), '--start',
                                                       str(start), '--end', str(end)])
    assert clip == [f"{video.stem}_{start}-{end}"] and clip_labels.tolist() == [-1]
    torch.testing.assert_close(torch.from_numpy(clip_logits[0]), expected[f"{video.stem}_{k}"], rtol=0, atol=1e-6)


def test_an_npz_split_is_scored_like_evaluation(tmp_path):
    from train_fixtures import write_npz
    npz = write_npz(tmp_path / 'NTU60_XSub.npz', num_test=5)
    model = write_classifier_checkpoint(tmp_path / 'c.pth', 'linprobe')
    with one_thread():
        names, logits, labels = predict.main(['--checkpoint', str(tmp_path / 'c.pth'), str(npz)])
        expected = evaluation_logits(model, npz, torch.load(tmp_path / 'c.pth')['args']['val_feeder_args'])
    assert names == [f"test_{i}" for i in range(5)] and labels.tolist() == [0, 1, 2, 3, 0]
    assert_same_logits(names, logits, {n: expected[n] for n in names})


@pytest.mark.parametrize('args, message', [
    (['x.skeleton'], 'x.skeleton: no such file or folder'),
    (['--out', 'p.txt', 'S.skeleton'], '--out p.txt: expected a .csv or .json'),
    (['S.skeleton', 'V.txt'], 'not a mix'),
    (['S.skeleton', '--start', '3', '--end', '9'], '--start and --end apply to PKU-MMD'),
    (['V.txt'], 'V.txt: no label file'),
])
def test_bad_input_gets_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_classifier_checkpoint(tmp_path / 'c.pth', 'finetune')
    (tmp_path / 'S.skeleton').write_text('0\n')
    (tmp_path / 'V.txt').write_text(' '.join(['0.5'] * 150) + '\n')
    with pytest.raises(SystemExit, match=message):
        predict.main(['--checkpoint', 'c.pth', *args])


def test_a_pretraining_checkpoint_is_refused(tmp_path):
    torch.save({'model': {'w': torch.zeros(1)}, 'args': {'model': 'model_mamp.MAMP', 'model_args': {}}},
               tmp_path / 'pre.pth')
    with pytest.raises(SystemExit, match='pre.pth: a pre-training checkpoint'):
        predict.main(['--checkpoint', str(tmp_path / 'pre.pth'), str(tmp_path)])
