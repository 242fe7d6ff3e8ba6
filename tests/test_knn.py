"""kNN evaluation (util/knn.py, main_knn.py): the vote against NumPy, top-1 and mean class accuracy against
NumPy, the pooled features against the linear probe's, one process against two, the monitor's name, and the
one-line errors."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine_pretrain import Monitor
from model_transformer import SkeletonTransformer
from train_fixtures import TINY_ENCODER, run_entry
from util import config, data
from util.knn import KNN, PooledFeatures, bank_subset, knn_topk


def numpy_knn_top1(bank, bank_labels, queries, num_classes, k, t):
    """Weighted kNN, one query at a time: the k most similar bank rows vote exp(sim / t) for their class."""
    predictions = []
    for q in queries:
        sim = bank @ q
        nearest = np.argsort(-sim)[:k]
        votes = np.zeros(num_classes)
        np.add.at(votes, bank_labels[nearest], np.exp(sim[nearest] / t))
        predictions.append(votes.argmax())
    return np.array(predictions)


def test_knn_vote_equals_numpy_in_chunks():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(200, 16)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    queries = rng.normal(size=(37, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    labels = rng.integers(0, 7, 200)
    expected = numpy_knn_top1(bank, labels, queries, 7, k=10, t=0.1)
    # 4 * 200 * 5 bytes: chunks of 5 queries, the last one of 2
    top, chunk_bytes = knn_topk(torch.from_numpy(bank), torch.from_numpy(labels), torch.from_numpy(queries), 7,
                                k=10, t=0.1, max_bytes=4 * 200 * 5)
    assert top.shape == (37, 5)
    np.testing.assert_array_equal(top[:, 0].numpy(), expected)
    assert 4 * 200 * 5 <= chunk_bytes < 4 * 200 * 6
    assert len(set(top[:, 0].tolist())) > 1


def test_pooled_features_are_what_the_linear_probe_sees():
    torch.manual_seed(0)
    model = SkeletonTransformer(**TINY_ENCODER).eval()
    x = torch.randn(3, 3, 24, 25, 2)
    with torch.no_grad():
        expected = F.normalize(model.forward_features(x).mean(dim=(1, 2, 3)), dim=1)
        torch.testing.assert_close(PooledFeatures(model)(x), expected)


def knn_args(work, *flags):
    """The kNN settings of main_knn.py on the tiny linear config, with the loader options setup() derives."""
    args = config.parse_args('knn', ['--config', str(work['linear']), '--device', 'cpu', '--batch_size', '4', *flags])
    args.num_workers, args.pin_mem = 0, False
    return args


def test_knn_accuracies_equal_numpy(work):
    """KNN's top-1 and mean class accuracy against features computed whole and a vote and per-class mean in
    NumPy. The test labels (3, 3, 3 and 2 samples of 4 classes) make the two differ."""
    args = knn_args(work, '--k', '5')
    torch.manual_seed(0)
    model = SkeletonTransformer(**args.model_args).eval()
    result = KNN(args)(model, torch.device('cpu'))

    def features(split):
        dataset = data.build_dataset(args, 'val_feeder_args', split=split)
        x = torch.stack([torch.from_numpy(dataset[i][0]) for i in range(len(dataset))])
        with torch.no_grad():
            return PooledFeatures(model)(x).numpy(), np.array([dataset[i][1] for i in range(len(dataset))])
    (bank, bank_labels), (queries, labels) = features('train'), features('test')
    predictions = numpy_knn_top1(bank, bank_labels, queries, 60, k=5, t=0.07)
    per_class = [np.mean(predictions[labels == c] == c) for c in np.unique(labels)]
    assert np.bincount(labels).tolist() == [3, 3, 3, 2]
    assert result['acc1'] == pytest.approx(100 * np.mean(predictions == labels))
    assert result['mean_class_acc'] == pytest.approx(100 * np.mean(per_class))
    assert result['mean_class_acc'] != pytest.approx(result['acc1'])
    assert result['bank'] == 24


def test_a_k_beyond_the_bank_is_the_bank_with_a_note(work, capsys):
    """--k 1 1000 on a bank of 24: one note, and the k used and reported is 24, whose vote is the whole bank's
    (the same top-1 as k = 24 given)."""
    args = knn_args(work, '--k', '1', '1000')
    torch.manual_seed(0)
    model = SkeletonTransformer(**args.model_args).eval()
    evaluate = KNN(args)
    assert evaluate.ks == [1, 24]
    by_k, _ = evaluate.accuracies(model, torch.device('cpu'))
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith('note:')] == [
        f"note: --k 1000: more neighbours than the 24 training samples in the bank of {work['npz']}; k = 24 is used "
        f"instead"]
    assert '(k=1000' not in out and '(k=24, t=0.07)' in out
    assert by_k[24] == KNN(knn_args(work, '--k', '24')).accuracies(model, torch.device('cpu'))[0][24]


def test_monitor_names_its_bank_beside_main_knn(work):
    """The monitor's print line and TensorBoard tags say when its bank is smaller than main_knn.py's."""
    pretrain = config.parse_args('pretrain', ['--config', str(work['pretrain']), '--knn_every', '1'])
    pretrain.num_workers, pretrain.pin_mem = 0, False
    monitor = Monitor(pretrain)
    for max_train, name in ((10, 'kNN monitor (bank of 10 training samples; main_knn.py uses all 24)'),
                            (0, 'kNN monitor (bank of all 24 training samples, as main_knn.py)')):
        pretrain.knn_max_train = max_train
        monitor.knn = KNN(pretrain)
        assert monitor.knn_name() == name


def test_bank_subset_is_fixed_and_bounded():
    np.testing.assert_array_equal(bank_subset(10, 0), np.arange(10))
    subset = bank_subset(100, 30)
    assert len(subset) == 30 and len(set(subset)) == 30 and subset.max() < 100
    np.testing.assert_array_equal(subset, bank_subset(100, 30))


@pytest.mark.slow
def test_two_processes_give_the_one_process_result(work, tmp_path):
    results = []
    for nproc in (None, 2):
        out = tmp_path / f'nproc{nproc}'
        run_entry('main_knn.py', '--config', work['linear'], '--output_dir', out, '--k', 5, '--knn_max_train',
                  20, nproc=nproc, timeout=240)
        results.append(json.loads((out / 'knn.json').read_text()))
    one, two = results
    assert one['knn_acc1'] == pytest.approx(two['knn_acc1'])
    assert one['knn_acc5'] == pytest.approx(two['knn_acc5'])
    assert one['knn_mean_class_acc'] == pytest.approx(two['knn_mean_class_acc'])
    assert 0 < one['knn_acc1'] <= 100 and one['knn_k'] == 5


@pytest.mark.slow
def test_knn_bad_input_is_one_line(work, tmp_path):
    cases = [('main_knn.py', 'linear', ['--k', '0'], '--k/--knn_k: expected an integer >= 1, got 0'),
             ('main_knn.py', 'linear', ['--finetune', tmp_path / 'missing.pth'], 'missing.pth'),
             ('main_knn.py', 'linear', ['--knn_max_train', '-1'],
              '--knn_max_train: expected an integer >= 0, got -1'),
             ('main_pretrain.py', 'pretrain', ['--knn_every', '-2'],
              '--knn_every: expected an integer >= 0, got -2')]
    for script, config, flags, words in cases:
        result = run_entry(script, '--config', work[config], '--output_dir', tmp_path, *flags, check=False,
                           timeout=120)
        assert result.returncode == 1
        assert result.stderr.strip().count('\n') == 0 and words in result.stderr, result.stderr
        assert not (tmp_path / 'knn.json').exists()


def test_fewer_than_five_neighbours_give_no_top5(work, capsys):
    """With k < 5 at most k classes get a vote, the rest of a top-5 is a tie in class order: not reported."""
    args = knn_args(work, '--k', '1', '5')
    torch.manual_seed(0)
    by_k, _ = KNN(args).accuracies(SkeletonTransformer(**args.model_args).eval(), torch.device('cpu'))
    assert by_k[1]['acc5'] is None and 0 <= by_k[1]['acc1'] <= by_k[5]['acc5'] <= 100
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('kNN')]
    assert len(lines) == 2 and 'top-5' not in lines[0] and 'top-5' in lines[1]
