"""Temporal action detection (main_detect.py, engine_detect.py, feeder/untrimmed.py): the windows follow the
published sliding window, a frame's dense feature is the encoder's on its window, the cache gives what the
encoder gives, and a training run writes proposal files whose mAP an independent computation reproduces."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import engine_detect
import main_detect
from conftest import ROOT
from feeder.augment import resample
from feeder.feeder_ntu import to_layout
from feeder.untrimmed import Recordings, UntrimmedFeeder, nearest_window, window_starts
from model_detect import FrameDetector
from train_fixtures import one_line_exit, run_entry
from util import config

ENCODER = {'dim_feat': 32, 'depth': 1, 'num_heads': 2, 'num_frames': 16}
WINDOW, HOP = 32, 4


def write_untrimmed(path, num_train=4, num_test=2, frames=400, seed=0, one_body=()):
    """An untrimmed file: each recording alternates 40 frames of background (a still pose, much the same in every
    recording) and 80 frames of an action 1, 2 or 3 (the pose moving at a frequency of its own). The test
    recordings in `one_body` have no second body."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, 150)
    arrays = {}
    for split, count in (('train', num_train), ('test', num_test)):
        xs, labels, intervals = [], [], []
        for v in range(count):
            pose = base + rng.normal(0, 0.05, 150)
            t = np.arange(frames)[:, None] / 30.0
            x = pose + 0.01 * rng.normal(size=(frames, 150))
            lab = np.zeros(frames, np.int64)
            for k, start in enumerate(range(40, frames - 100, 120)):
                action = (v + k) % 3 + 1
                x[start:start + 80] += 0.3 * np.sin(3 * action * t[start:start + 80] + pose)
                lab[start:start + 80] = action
                intervals.append((v, action, start, start + 80))
            if split == 'test' and v in one_body:
                x[:, 75:] = 0
            xs.append(x.astype(np.float32))
            labels.append(lab)
        arrays.update({f'x_{split}': np.concatenate(xs), f'frame_labels_{split}': np.concatenate(labels),
                       f'offsets_{split}': np.arange(count + 1, dtype=np.int64) * frames,
                       f'names_{split}': np.array([f'{split}{v:04d}-M' for v in range(count)]),
                       f'intervals_{split}': np.array(intervals, np.int64).reshape(-1, 4)})
    np.savez(path, **arrays)
    return path


def write_config(path, data_path, **overrides):
    windows = {'data_path': str(data_path), 'window_size': ENCODER['num_frames'], 'window': WINDOW, 'hop': HOP}
    cfg = {'_base_': str(ROOT / 'config/demo/detect.yaml'), 'model_args': dict(ENCODER),
           'train_feeder_args': {**windows, 'train_windows': [24, 32, 40]}, 'val_feeder_args': dict(windows),
           'epochs': 2, 'batch_size': 16, 'print_freq': 2, **overrides}
    Path(path).write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope='module')
def untrimmed(tmp_path_factory):
    return write_untrimmed(tmp_path_factory.mktemp('untrimmed') / 'PKUv1_XSub_untrimmed.npz', one_body=(1,))


@pytest.fixture(scope='module')
def pku_raw(tmp_path_factory, untrimmed):
    """The recordings of `untrimmed` as a PKU-MMD raw folder (skeleton/, label/, split files) and the untrimmed
    file python -m data.pku makes of it: (raw folder, data file)."""
    root = tmp_path_factory.mktemp('pku_raw')
    raw = root / 'raw'
    for folder in ('skeleton', 'label'):
        (raw / folder).mkdir(parents=True)
    names = {}
    for split in ('train', 'test'):
        recordings = Recordings(untrimmed, split)
        names[split] = [f"{'0002' if split == 'train' else '0003'}{v:02d}-M" for v in range(len(recordings))]
        truth = recordings.ground_truth()
        for v, name in enumerate(names[split]):
            np.savetxt(raw / 'skeleton' / f'{name}.txt', recordings.frames(v).numpy(), fmt='%.6f')
            rows = truth[recordings.names[v]]
            (raw / 'label' / f'{name}.txt').write_text(''.join(f'{a},{s},{e},1\n' for a, s, e in rows))
    for kind in ('subject', 'view'):
        (raw / f'cross-{kind}.txt').write_text(f"Training videos: \n{', '.join(names['train'])}, \n"
                                               f"Validataion videos: \n{', '.join(names['test'])}\n")
    return raw, untrimmed_file_of(raw, root / 'data')


def untrimmed_file_of(raw, out_dir):
    """python -m data.pku on a raw folder -> its PKUv1_XSub_untrimmed.npz."""
    subprocess.run([sys.executable, '-m', 'data.pku', '--phase', '1', '--raw-dir', str(raw), '--out-dir',
                    str(out_dir), '--workers', '1'], cwd=ROOT, check=True, capture_output=True)
    return Path(out_dir) / 'PKUv1_XSub_untrimmed.npz'


@pytest.fixture(scope='module')
def synthetic_pku(tmp_path_factory):
    """python -m data.synthetic --format pku (4 training and 2 test takes, 3 views each), then python -m data.pku:
    (raw folder, data file)."""
    raw = tmp_path_factory.mktemp('synthetic_pku') / 'raw'
    subprocess.run([sys.executable, '-m', 'data.synthetic', '--format', 'pku', '--out-dir', str(raw), '--num-train',
                    '4', '--num-test', '2'], cwd=ROOT, check=True, capture_output=True)
    return raw, untrimmed_file_of(raw, raw.parent / 'data')


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return FrameDetector(**ENCODER).eval()


def test_windows_follow_the_published_sliding_window():
    """The window centred on t: t - w // 2, moved to 0 near the start and to length - w near the end, as
    processor/detection_downsample_linear.py's sliding_window_crop_downsample places it."""
    length, window = 100, 32
    for t in range(length):
        if t < window // 2:
            published = 0
        elif t > length - window // 2:
            published = length - window
        else:
            published = t - window // 2
        assert window_starts(t, length, window) == published
    assert nearest_window(np.arange(10), 4, 3).tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_dense_feature_of_a_frame_is_the_encoder_on_its_window(untrimmed):
    """Each frame's feature is the pooled encoder output of the window whose centre is nearest, read as the
    clip feeder reads a test clip (feeder.augment.resample of the crop): computed here window by window. The
    second recording has one body (the shared zero-body pass)."""
    model, recordings = tiny_model(), Recordings(untrimmed, 'test')
    for v in range(len(recordings)):
        frames = recordings.frames(v)
        features = engine_detect.dense_features(model, frames, WINDOW, HOP, ENCODER['num_frames'], batch_size=7)
        assert features.shape == (len(range(0, len(frames), HOP)), ENCODER['dim_feat'])
        for t in (0, 5, 17, 203, len(frames) - 1):
            w = nearest_window(t, HOP, len(features))
            start = window_starts(w * HOP, len(frames), WINDOW)
            assert abs(w * HOP - t) <= HOP // 2 or start == window_starts(t, len(frames), WINDOW)
            clip = to_layout(resample(frames.numpy()[start:start + WINDOW], ENCODER['num_frames']))
            with torch.inference_mode():
                direct = model.forward_features(torch.from_numpy(clip)[None]).mean(dim=(1, 2, 3))[0]
            torch.testing.assert_close(features[w], direct, rtol=1e-5, atol=1e-5)


def test_cached_features_are_the_computed_ones(untrimmed, tmp_path):
    """The first call computes and writes the cache, the second reads it: both equal split_features; another
    encoder gets another cache file."""
    model, recordings = tiny_model(), Recordings(untrimmed, 'test')
    settings = dict(window=WINDOW, hop=HOP, window_size=ENCODER['num_frames'], p_interval=1.0, device='cpu',
                    amp='none', batch_size=64)
    direct, offsets = engine_detect.split_features(model, recordings, **settings)
    first = engine_detect.cached_features(model, recordings, tmp_path, **settings)
    files = sorted(tmp_path.glob('*.npz'))
    assert len(files) == 1 and files[0].name.startswith('test_')
    second = engine_detect.cached_features(model, recordings, tmp_path, **settings)
    for features, where in (first, second):
        assert torch.equal(features, direct) and np.array_equal(where, offsets)
    assert offsets.tolist() == [0, 100, 200]
    engine_detect.cached_features(tiny_model(seed=1), recordings, tmp_path, **settings)
    assert len(list(tmp_path.glob('*.npz'))) == 2


def test_a_damaged_or_wrong_feature_cache_is_computed_again(untrimmed, tmp_path, capsys):
    """A cache file cut short, or holding features of other recordings or non-finite ones, is not used: a note,
    then the computed features, which replace the file."""
    model, recordings = tiny_model(), Recordings(untrimmed, 'test')
    settings = dict(window=WINDOW, hop=HOP, window_size=ENCODER['num_frames'], p_interval=1.0, device='cpu',
                    amp='none', batch_size=64)
    direct, offsets = engine_detect.cached_features(model, recordings, tmp_path, **settings)
    path = next(tmp_path.glob('*.npz'))
    for damage in (lambda: path.write_bytes(path.read_bytes()[:300]),
                   lambda: np.savez(path, features=direct.numpy(), offsets=offsets[:-1]),
                   lambda: np.savez(path, features=np.full_like(direct.numpy(), np.nan), offsets=offsets)):
        damage()
        capsys.readouterr()
        features, where = engine_detect.cached_features(model, recordings, tmp_path, **settings)
        assert 'cannot be used' in capsys.readouterr().out
        assert torch.equal(features, direct) and np.array_equal(where, offsets)
        with np.load(path) as f:
            assert np.array_equal(f['features'], direct.numpy())


def test_training_windows_are_labelled_with_their_centre_frame(untrimmed):
    feeder = UntrimmedFeeder(untrimmed, 'train', window_size=16, train_windows=(24, 32, 40))
    assert len(feeder) == 4 * 16 and feeder.num_classes == 52
    np.random.seed(0)
    for index in range(40):
        state = np.random.get_state()
        v, centre, window = feeder.draw(index)
        np.random.set_state(state)
        data, label, _ = feeder[index]
        start = window_starts(centre, 400, window)
        assert v == index % 4 and window in (24, 32, 40) and data.shape == (3, 16, 25, 2)
        assert label == feeder.recordings.labels(v)[start + window // 2]


def independent_map_a(label_dir, proposal_dir, theta):
    """mAP_a from the files alone: per action, detections of every video ranked by confidence, a detection
    a true positive when it overlaps an unmatched instance of its action in its video with IoU >= theta
    (frames [start, end)), AP the area under the precision envelope; mean over the actions with instances of
    the videos that have proposal files."""
    found = {p.stem: np.loadtxt(p, delimiter=',', ndmin=2) for p in Path(proposal_dir).glob('*.txt')}
    truth = {v: np.loadtxt(Path(label_dir) / f'{v}.txt', delimiter=',', ndmin=2).astype(int) for v in found}
    aps = []
    for action in sorted({int(row[0]) for rows in truth.values() for row in rows}):
        instances = {v: [tuple(r[1:3]) for r in rows if r[0] == action] for v, rows in truth.items()}
        total = sum(len(i) for i in instances.values())
        detections = sorted(((-r[3], v, r[1], r[2]) for v, rows in found.items() for r in rows if r.size and
                             int(r[0]) == action), key=lambda d: d[0])
        used, hits = set(), []
        for _, v, start, end in detections:
            ious = [max(0, min(end, e) - max(start, s)) / (max(end, e) - min(start, s)) for s, e in instances[v]]
            best = int(np.argmax(ious)) if ious else -1
            hit = best >= 0 and ious[best] >= theta and (v, best) not in used
            used.add((v, best)) if hit else None
            hits.append(hit)
        hits = np.array(hits, bool)
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1) if len(hits) else np.zeros(0)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(hits) else precision
        aps.append(envelope[hits].sum() / total)
    return 100 * np.mean(aps)


def check_proposal_file(path, length):
    for line in Path(path).read_text().splitlines():
        label, start, end, confidence = line.split(',')
        assert 1 <= int(label) <= 51 and 0 <= int(start) < int(end) <= length
        assert 0 < float(confidence) <= 1


@pytest.mark.slow
@pytest.mark.parametrize('recordings, mode', [('synthetic_pku', 'linear'), ('synthetic_pku', 'finetune'),
                                              ('pku_raw', 'linear')])
def test_main_detect_writes_proposals_scored_as_the_files_say(request, tmp_path, recordings, mode):
    """A short run in each mode on the untrimmed file python -m data.pku makes of synthetic PKU-MMD-format
    recordings (and of the easier ones of write_untrimmed, where a random encoder finds actions at IoU 0.5):
    proposal files in the format for every test recording, detection.json, log.txt and TensorBoard with the
    scores, and mAP_a equal to an independent computation from the proposal files and the label files."""
    raw, data_path = request.getfixturevalue(recordings)
    cfg = write_config(tmp_path / 'detect.yaml', data_path, epochs=3)
    out = tmp_path / 'out'
    result = run_entry('main_detect.py', '--config', cfg, '--mode', mode, '--output_dir', out, '--smooth', 8,
                       '--opts', 'train_feeder_args.samples_per_recording=64')
    recordings = Recordings(data_path, 'test')
    labels = raw / 'label'
    assert sorted(p.stem for p in (out / 'proposals').glob('*.txt')) == sorted(recordings.names)
    for v, name in enumerate(recordings.names):
        check_proposal_file(out / 'proposals' / f'{name}.txt', recordings.length(v))
    stats = json.loads((out / 'detection.json').read_text())
    assert set(stats) == {'mAP_a', 'mAP_v', 'frame_acc'}
    assert set(stats['mAP_a']) == set(stats['mAP_v']) == {'0.1', '0.3', '0.5', '0.7'}
    for theta in (0.1, 0.3, 0.5, 0.7):
        assert stats['mAP_a'][f'{theta}'] == pytest.approx(independent_map_a(labels, out / 'proposals', theta),
                                                           abs=1e-9)
    assert stats['mAP_a']['0.5' if recordings == 'pku_raw' else '0.1'] > 0  # not a comparison of zeros
    assert f"mAP_a 0.1 {stats['mAP_a']['0.1']:.2f}%, 0.3 {stats['mAP_a']['0.3']:.2f}%, 0.5 " \
           f"{stats['mAP_a']['0.5']:.2f}%" in result.stdout
    last = json.loads((out / 'log.txt').read_text().splitlines()[-1])
    assert last['epoch'] == 2 and last['test_mAP_a'] == stats['mAP_a'] and last['test_frame_acc'] == stats['frame_acc']
    assert (out / 'checkpoint-last.pth').is_file()
    from train_fixtures import scalar_tags
    events, tags = scalar_tags(out)
    assert {'test/mAP_a@0.5', 'test/mAP_v@0.5', 'test/frame_acc'} <= tags and 'timeline' in events.Tags()['images']
    assert events.Scalars('test/mAP_a@0.5')[-1].value == pytest.approx(stats['mAP_a']['0.5'])
    if mode == 'linear':
        assert len(list((out / 'features').glob('train_*.npz'))) == 3  # one per training window length
        assert len(list((out / 'features').glob('test_*.npz'))) == 1


def args_for(cfg, *flags):
    return config.parse_args('detect', ['--config', str(cfg), '--device', 'cpu', *map(str, flags)])


@pytest.mark.parametrize('change, expected', [
    ({'val_feeder_args': {'window': 500}}, "recording test0000-M (test) has 400 frames, fewer than one window of 500"),
    ({'model_args': {**ENCODER, 'num_classes': 61}}, "model_args.num_classes is 61 but"),
])
def test_bad_settings_end_in_one_line(untrimmed, tmp_path, change, expected):
    base = yaml.safe_load(write_config(tmp_path / 'base.yaml', untrimmed).read_text())
    for key, value in change.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    (tmp_path / 'bad.yaml').write_text(yaml.safe_dump(base))
    message = one_line_exit(lambda: main_detect.main(args_for(tmp_path / 'bad.yaml', '--output_dir', tmp_path / 'o')))
    assert expected in message


@pytest.mark.parametrize('mode', ['linear', 'finetune'])
def test_a_checkpoint_of_other_classes_ends_in_one_line(untrimmed, tmp_path, mode):
    """--resume with a detector of 61 classes (another dataset's actions), in either mode."""
    other, _ = detector_checkpoint(tmp_path / 'other.pth', untrimmed, num_classes=61, mode=mode)
    cfg = write_config(tmp_path / 'detect.yaml', untrimmed)
    message = one_line_exit(lambda: main_detect.main(args_for(cfg, '--mode', mode, '--resume', other,
                                                              '--output_dir', tmp_path / 'o')))
    assert f"--resume {other}: does not fit the model of {cfg}" in message and 'size mismatch' in message


def test_bad_data_ends_in_one_line(untrimmed, tmp_path):
    """An empty test split, a file without the untrimmed arrays, a frame label past the 51 actions."""
    with np.load(untrimmed) as f:
        arrays = dict(f)
    empty = dict(arrays, x_test=np.zeros((0, 150), np.float32), offsets_test=np.zeros(1, np.int64),
                 frame_labels_test=np.zeros(0, np.int64), names_test=np.array([], str),
                 intervals_test=np.zeros((0, 4), np.int64))
    wrong_label = dict(arrays, frame_labels_test=np.where(arrays['frame_labels_test'] == 2, 60, 0))
    clips = {'x_train': np.zeros((2, 300, 150), np.float32), 'y_train': np.eye(51)[:2]}
    cases = [(empty, "no recording in the test split"), (wrong_label, "is 60; expected 0 (background) to 51"),
             (clips, "no array x_test")]
    for arrays, expected in cases:
        path = tmp_path / 'bad.npz'
        np.savez(path, **arrays)
        cfg = write_config(tmp_path / 'bad.yaml', path)
        message = one_line_exit(lambda: main_detect.main(args_for(cfg, '--output_dir', tmp_path / 'o')))
        assert expected in message and str(path) in message


def test_every_numeric_detect_flag_declares_a_range():
    from util import flags
    actions = [a for a in flags.get_args_parser('detect')._actions
               if a.type in (int, float) or isinstance(a.type, flags.Range)
               or (isinstance(a.default, (int, float)) and not isinstance(a.default, bool))]
    assert {'smooth', 'threshold', 'thetas', 'feature_batch', 'lr_steps'} <= {a.dest for a in actions}
    assert [a.dest for a in actions if not isinstance(a.type, flags.Range)] == []


def test_lr_steps_drop_the_lr_tenfold_at_each_step():
    from argparse import Namespace

    from util.lr_sched import adjust_learning_rate
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1)
    args = Namespace(lr=0.01, min_lr=0., warmup_epochs=0, epochs=60, lr_steps=[40, 50])
    assert [adjust_learning_rate(optimizer, e, args) for e in (0, 39.99, 40, 49.5, 50, 59.9)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    assert optimizer.param_groups[0]['lr'] == pytest.approx(0.0001)


def detector_checkpoint(path, untrimmed, num_classes=52, mode='linear'):
    """A checkpoint as main_detect.py writes it in `mode` (linear: the probe's norm before the head's Linear), of
    a random encoder and a head whose frames are not all background, with the settings of write_config."""
    from model_transformer import prepare_linear_probe
    cfg = write_config(path.with_suffix('.yaml'), untrimmed,
                       model_args={**ENCODER, 'num_classes': num_classes})
    settings = vars(config.parse_args('detect', ['--config', str(cfg), '--threshold', '0.2', '--smooth', '5',
                                                 '--mode', mode]))
    torch.manual_seed(0)
    model = FrameDetector(**{**ENCODER, 'num_classes': num_classes})
    linear = model.head.fc
    if mode == 'linear':
        prepare_linear_probe(model)
    torch.nn.init.normal_(linear.weight, std=3)
    torch.save({'model': model.state_dict(), 'args': settings, 'epoch': 0}, path)
    return path, model.eval()


def write_skeleton_file(path, frames):
    np.savetxt(path, frames, fmt='%.6f')
    return path


def test_predict_prints_the_timeline_of_a_recording(untrimmed, tmp_path, capsys):
    """predict.py with a detection checkpoint on a whole PKU-MMD-format file: the segments detect_recording
    finds, printed with times at 30 fps and action names, and written as a proposal file and as CSV / JSON."""
    import csv

    import predict
    from engine_detect import detect_recording
    from util.actions import action_names
    from util.detection import read_intervals
    ckpt, model = detector_checkpoint(tmp_path / 'detector.pth', untrimmed)
    frames = Recordings(untrimmed, 'test').frames(0)
    skeleton = write_skeleton_file(tmp_path / '0002-L.txt', frames.numpy())
    read_back = torch.from_numpy(np.loadtxt(skeleton, dtype=np.float64).astype(np.float32))
    _, expected = detect_recording(model, read_back, WINDOW, HOP, ENCODER['num_frames'], smooth=5, threshold=0.2)
    assert expected
    for suffix in ('.csv', '.json'):
        out = tmp_path / f'timeline{suffix}'
        timelines = predict.main(['--checkpoint', str(ckpt), str(skeleton), '--device', 'cpu', '--out', str(out),
                                  '--proposals', str(tmp_path / 'proposals')])
        rows = json.loads(out.read_text()) if suffix == '.json' else list(csv.DictReader(out.open()))
        assert [(int(r['action_number']), int(r['start']), int(r['end'])) for r in rows] == [
            (a, s, e) for a, s, e, _ in expected]
        assert [r['recording'] for r in rows] == ['0002-L'] * len(expected)
        assert [float(r['end_s']) for r in rows] == pytest.approx([e / 30 for _, _, e, _ in expected], abs=1e-3)
        assert [r['action'] for r in timelines['0002-L']] == [action_names('pku')[a - 1] for a, *_ in expected]
    written = read_intervals(tmp_path / 'proposals' / '0002-L.txt')
    assert [(a, s, e) for a, s, e, _ in written] == [(a, s, e) for a, s, e, _ in expected]
    assert [c for *_, c in written] == pytest.approx([c for *_, c in expected])
    printed = capsys.readouterr().out
    label, start, end, score = expected[0]
    assert f"0002-L: {len(frames)} frames ({len(frames) / 30:.1f} s), {len(expected)} action(s) detected" in printed
    assert f"{start / 30:8.2f} s - {end / 30:8.2f} s  frames {start:>6} - {end:<6}  score {score:.3f}  " \
           f"{action_names('pku')[label - 1]} ({label})" in printed


def test_predict_timeline_bad_input_ends_in_one_line(untrimmed, tmp_path):
    """A detector of another class count, a recording shorter than one window, an NTU file, a clip range."""
    import predict
    ckpt, _ = detector_checkpoint(tmp_path / 'detector.pth', untrimmed)
    other, _ = detector_checkpoint(tmp_path / 'other.pth', untrimmed, num_classes=61)
    frames = Recordings(untrimmed, 'test').frames(0).numpy()
    short = write_skeleton_file(tmp_path / 'short.txt', frames[:WINDOW - 1])
    whole = write_skeleton_file(tmp_path / 'whole.txt', frames)
    ntu = tmp_path / 'S001C001P001R001A001.skeleton'
    ntu.write_text('1\n')
    cases = [([str(other), str(whole)], 'a detector of 61 classes; the timeline names background and the 51'),
             ([str(ckpt), str(short)], f'short.txt: {WINDOW - 1} frames, fewer than one window of {WINDOW}'),
             ([str(ckpt), str(ntu)], 'is a detector (main_detect.py): give PKU-MMD-format skeleton files'),
             ([str(ckpt), str(whole), '--start', '0', '--end', '50'], 'without --start, --end or --labels')]
    for (checkpoint, *rest), expected in cases:
        message = one_line_exit(lambda: predict.main(['--checkpoint', checkpoint, *rest, '--device', 'cpu']))
        assert expected in message


def test_visualize_timeline_draws_true_and_predicted_rows(tmp_path):
    import visualize
    labels, proposals = tmp_path / '0002-L.txt', tmp_path / 'proposals.txt'
    labels.write_text('1,40,120,1\n3,160,240,1\n')
    proposals.write_text('1,38,125,0.8\n2,170,230,0.4\n')
    for suffix in ('.png', '.svg'):
        out = visualize.main(['timeline', '--labels', str(labels), '--proposals', str(proposals), '--length', '400',
                              '--out', str(tmp_path / f'timeline{suffix}')])
        assert out.is_file() and out.stat().st_size > 1000
    svg = (tmp_path / 'timeline.svg').read_text()
    assert all(name in svg for name in ('bow', 'brushing teeth', 'brushing hair', 'true', 'predicted'))
    proposals.write_text('1,38\n')
    message = one_line_exit(lambda: visualize.main(['timeline', '--labels', str(labels), '--proposals',
                                                    str(proposals), '--out', str(tmp_path / 't.png')]))
    assert f'--proposals {proposals}' in message


def test_timeline_legend_names_the_short_bars_and_leaves_the_axes_room(tmp_path):
    """Bars too short for their name are named in a figure legend below the axes, one entry an action; with 9
    such actions (3 legend rows) the axes keep their height and saving raises no layout warning."""
    import warnings
    from util.actions import action_names
    from util.figures import save, timeline_figure
    names = action_names('pku')
    short = [(action, 100 * action, 100 * action + 20) for action in range(1, 10)]
    fig = timeline_figure([('true', short + [(20, 1200, 1900)]), ('detected', short[:3])], names, 2000, 'recording')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        save(fig, tmp_path / 'timeline.png')
    legend = fig.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == [names[action - 1] for action in range(1, 10)]
    assert names[19] in [text.get_text() for text in fig.axes[0].texts]  # the long bar is named on itself
    assert fig.axes[0].get_position().height > 0.2


@pytest.mark.slow
def test_linear_mode_resumes_where_it_stopped(untrimmed, tmp_path):
    """Three epochs in one run, and two epochs then --auto_resume to three: the same weights and optimiser
    state, the cached features (3 training window lengths, the test windows) read back on the resumed start."""
    from train_fixtures import assert_same_training_state
    cfg = write_config(tmp_path / 'detect.yaml', untrimmed)
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    run_entry('main_detect.py', '--config', cfg, '--output_dir', straight, '--epochs', 3)
    run_entry('main_detect.py', '--config', cfg, '--output_dir', resumed, '--epochs', 2)
    again = run_entry('main_detect.py', '--config', cfg, '--output_dir', resumed, '--epochs', 3, '--auto_resume')
    assert 'continuing at epoch 2' in again.stdout and again.stdout.count('read from') == 4
    assert_same_training_state(straight / 'checkpoint-last.pth', resumed / 'checkpoint-last.pth')
    assert json.loads((straight / 'detection.json').read_text()) == json.loads((resumed / 'detection.json').read_text())


def test_predict_timeline_of_a_real_recording(untrimmed, tmp_path, capsys):
    """A real PKU-MMD Phase I recording (../shared): read whole, every window encoded, the timeline's rows the
    proposal file's lines, each inside the recording."""
    import csv

    import predict
    from conftest import shared_path
    from util.detection import read_intervals
    skeleton = shared_path('realdata', 'pku', 'skeleton', '0036-L.txt')
    length = sum(1 for line in skeleton.open() if line.strip())
    ckpt, _ = detector_checkpoint(tmp_path / 'detector.pth', untrimmed)
    predict.main(['--checkpoint', str(ckpt), str(skeleton), '--device', 'cpu', '--out', str(tmp_path / 't.csv'),
                  '--proposals', str(tmp_path)])
    assert f"0036-L: {length} frames ({length / 30:.1f} s)" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / 't.csv').open()))
    written = read_intervals(tmp_path / '0036-L.txt', num_frames=length)
    assert [(int(r['action_number']), int(r['start']), int(r['end'])) for r in rows] == [w[:3] for w in written]
