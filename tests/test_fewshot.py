"""Few-shot evaluation (util/fewshot.py, main_fewshot.py) and the held-out actions: episodes on features whose
answer is known, the interval, the feeder's exclude_actions, the entry point and its one-line errors."""
import json

import numpy as np
import pytest

import main_fewshot
from conftest import ROOT
from feeder.feeder_ntu import Feeder
from train_fixtures import TINY_WINDOW, one_thread, write_config
from util import config, fewshot


def labelled(classes=6, per_class=10):
    return np.repeat(np.arange(classes), per_class)


def test_features_that_separate_the_classes_give_every_query():
    labels = labelled()
    rng = np.random.default_rng(0)
    features = np.eye(8)[labels] + 0.01 * rng.normal(size=(len(labels), 8))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    accuracies = fewshot.episode_accuracies(features, labels, np.arange(6), ways=5, shots=1, queries=4, episodes=50)
    assert accuracies.shape == (50,) and (accuracies == 1.0).all()
    assert fewshot.interval(accuracies) == (1.0, 0.0)


@pytest.mark.parametrize('ways', [2, 5])
def test_features_equal_for_every_class_give_chance(ways):
    labels = labelled()
    features = np.ones((len(labels), 4)) / 2
    mean, half = fewshot.interval(fewshot.episode_accuracies(features, labels, np.arange(6), ways, shots=3,
                                                             queries=2, episodes=20, seed=1))
    assert (mean, half) == pytest.approx((1 / ways, 0.0), abs=1e-12)


def test_nearest_class_mean_by_hand():
    """Two classes on a line, support means at 0 and 1: the queries of class 0 at 0.4 and 0.3 are right, those of
    class 1 at 0.45 (nearer 0) and 0.7 one wrong and one right: 3 of 4."""
    features = np.array([[-0.1], [0.1], [0.9], [1.1], [0.4], [0.3], [0.45], [0.7]])
    support, query = np.array([[0, 1], [2, 3]]), np.array([[4, 5], [6, 7]])
    assert fewshot.nearest_mean_accuracy(features, support, query) == 0.75


def test_interval_is_196_standard_errors():
    assert fewshot.interval([0.5, 1.0]) == pytest.approx((0.75, 1.96 * 0.25 / np.sqrt(2)))
    accuracies = np.random.default_rng(2).uniform(size=300)
    mean, half = fewshot.interval(accuracies)
    assert (mean, half) == pytest.approx((np.mean(accuracies), 1.96 * np.std(accuracies) / np.sqrt(300)))


def test_episodes_draw_distinct_classes_and_disjoint_samples():
    labels = labelled(classes=7, per_class=6)
    rng = np.random.default_rng(3)
    for _ in range(20):
        support, query = fewshot.draw_episode(rng, labels, np.array([0, 2, 3, 5, 6]), 4, 2, 3)
        assert support.shape == (4, 2) and query.shape == (4, 3)
        rows = np.concatenate([support, query], axis=1)
        assert len(set(rows.ravel())) == 20
        classes = labels[rows]
        assert (classes == classes[:, :1]).all() and len(set(classes[:, 0])) == 4
        assert set(classes[:, 0]) <= {0, 2, 3, 5, 6}
    np.testing.assert_array_equal(fewshot.usable_classes(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 2, 3]), 2),
                                  [0, 2])


def test_feeder_leaves_out_excluded_actions(work):
    options = dict(data_path=work['npz'], split='train', window_size=TINY_WINDOW)
    every = Feeder(**options)
    kept = Feeder(**options, exclude_actions=[1, 3])  # labels 0 and 2
    assert set(every.label) == {0, 1, 2, 3} and set(kept.label) == {1, 3}
    assert len(kept) == np.isin(every.label, [1, 3]).sum()
    assert kept.sample_name == [n for n, y in zip(every.sample_name, every.label) if y in (1, 3)]
    with pytest.raises(ValueError, match='exclude_actions: unknown action 61: the actions are numbered 1 to 60'):
        Feeder(**options, exclude_actions=[2, 61])


def test_real_pku_held_out_actions_are_the_same_in_the_three_configs():
    paths = {protocol: ROOT / 'config' / 'real_pku' / name for protocol, name in (
        ('pretrain', 'pretrain_mamp_heldout.yaml'), ('tune', 'tune_heldout.yaml'), ('fewshot', 'fewshot.yaml'))}
    args = {protocol: config.parse_args(protocol, ['--config', str(path)]) for protocol, path in paths.items()}
    held_out = args['fewshot'].held_out_actions
    assert len(held_out) >= args['fewshot'].ways
    assert args['pretrain'].train_feeder_args['exclude_actions'] == held_out
    assert args['tune'].train_feeder_args['exclude_actions'] == held_out


def test_demo_fewshot_holds_out_of_the_demo_pretraining_what_its_episodes_draw():
    """The demo's own pre-training sees every action; its few-shot recipe pre-trains without the episodes'
    actions, otherwise as the demo, and they are synthetic actions with samples enough for 5 shots + 15 queries."""
    from data.synthetic import ACTIONS
    demo = ROOT / 'config' / 'demo'
    fewshot = config.parse_args('fewshot', ['--config', str(demo / 'fewshot.yaml')])
    heldout = config.parse_args('pretrain', ['--config', str(demo / 'pretrain_heldout.yaml')])
    plain = config.parse_args('pretrain', ['--config', str(demo / 'pretrain.yaml')])
    assert heldout.train_feeder_args.pop('exclude_actions') == fewshot.held_out_actions
    assert vars(heldout) == {**vars(plain), 'config': str(demo / 'pretrain_heldout.yaml')}
    assert set(fewshot.held_out_actions) <= set(ACTIONS) and len(fewshot.held_out_actions) == fewshot.ways
    assert fewshot.val_feeder_args['split'] == 'train' and 600 // len(ACTIONS) >= max(fewshot.shots) + fewshot.queries


@pytest.fixture(scope='module')
def fewshot_config(work):
    """The tiny data's four actions (1-4), 6 training samples each, as the held-out actions."""
    return write_config(work['root'] / 'fewshot.yaml', 'ntu60_xsub/fewshot.yaml', work['npz'],
                        val_feeder_args={'data_path': str(work['npz']), 'split': 'train'},
                        model_args={'num_classes': 60}, held_out_actions=[1, 2, 3, 4], ways=3, shots=[1, 2],
                        queries=3, episodes=40, fewshot_splits=['train'])


def run_fewshot(cfg, out, *flags):
    with one_thread():
        return main_fewshot.main(config.parse_args('fewshot', ['--config', str(cfg), '--output_dir', str(out),
                                                               '--device', 'cpu', *map(str, flags)]))


def test_fewshot_entry_point_writes_every_shot(fewshot_config, tmp_path, capsys):
    stats = run_fewshot(fewshot_config, tmp_path / 'out')
    printed = capsys.readouterr().out  # an evaluation: no lr, no training settings
    assert not any(line.startswith('{"config"') for line in printed.splitlines()) and ' lr ' not in printed
    written = json.loads((tmp_path / 'out' / 'fewshot.json').read_text())
    assert written == json.loads(json.dumps(stats))
    assert (written['ways'], written['queries'], written['episodes'], written['classes']) == (3, 3, 40, 4)
    assert set(written['by_shots']) == {'1', '2'}
    for result in written['by_shots'].values():
        assert 0 <= result['acc'] <= 100 and result['ci95'] > 0
    again = run_fewshot(fewshot_config, tmp_path / 'again')  # the same seed: the same episodes
    assert again['by_shots'] == stats['by_shots']


def test_fewshot_draws_from_both_splits_by_default(fewshot_config, tmp_path):
    """Without fewshot_splits (STARS' data): the 24 training and 11 test samples of the four actions."""
    ntu = config.parse_args('fewshot', ['--config', str(ROOT / 'config' / 'ntu60_xsub' / 'fewshot.yaml')])
    assert ntu.fewshot_splits == ['train', 'test']
    both = run_fewshot(fewshot_config, tmp_path / 'both', '--fewshot_splits', 'train', 'test')
    train = run_fewshot(fewshot_config, tmp_path / 'train')
    assert (both['samples'], both['splits'], train['samples'], train['splits']) == (35, ['train', 'test'], 24,
                                                                                    ['train'])
    assert both['by_shots'] != train['by_shots']


@pytest.mark.parametrize('flags, words', [
    (['--held_out_actions', '3', '61'], 'unknown action 61: the actions are numbered 1 to 60'),
    (['--ways', '5'], '--ways 5: only 4 of the 4 held-out actions'),
    (['--shots', '4', '--queries', '3'], 'have 7 samples'),
    (['--ways', '1'], 'argument --ways: expected an integer >= 2, got 1'),
    (['--fewshot_splits', 'val'], "argument --fewshot_splits: invalid choice: 'val'")])
def test_fewshot_bad_input_is_one_line_and_writes_nothing(fewshot_config, tmp_path, flags, words):
    with pytest.raises(SystemExit) as stop:
        run_fewshot(fewshot_config, tmp_path / 'out', *flags)
    message = str(stop.value.code)
    assert message.startswith('error: ') and '\n' not in message and words in message, message
    assert not (tmp_path / 'out').exists()
