"""Pictures (util/figures.py, visualize.py) and the pre-training monitor: the masking arrays are the model's own,
a tiny pre-training's TensorBoard events hold the kNN scalars and the masking image, the files read back, and
bad input ends in one line."""
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch
from PIL import Image

import visualize
from conftest import shared_path
from model_mamp import MAMP
from train_fixtures import ROOT, TINY_ENCODER, log_entries, pretrain_in_process, run_entry
from util.figures import MASK_DRAWS, masking_arrays


@pytest.fixture(scope='module')
def pretrained(work):
    """Two pre-training epochs with the kNN monitor every epoch and the masking figure after the last."""
    out = work['root'] / 'pretrain_monitor'
    pretrain_in_process(work, out, '--knn_every', 1, '--vis_every', 2)
    return out


@pytest.fixture(scope='module')
def linprobed(work, pretrained):
    out = work['root'] / 'linear_confusion'
    run_entry('main_linprobe.py', '--config', work['linear'], '--output_dir', out, '--finetune',
              pretrained / 'checkpoint-last.pth')
    return out


def read_image(path):
    """The pixels of a PNG, checked to be a real picture: a few hundred pixels a side and many colours."""
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10
    return pixels


def test_masking_arrays_are_the_models_own():
    torch.manual_seed(0)
    model = MAMP(**TINY_ENCODER, decoder_dim_feat=32, decoder_depth=1)
    t = torch.linspace(0, 1, 24)
    x = 0.01 * torch.randn(1, 3, 24, 25, 2)
    x[:, :, :, 7] += torch.sin(20 * t)[:, None]  # joint 7 moves much more than the others
    arrays = masking_arrays(model, x, 0.9, 0.8, 1, seed=3)

    motion = model.motion_scores(model.patchify(x))[0].view(6, 25)
    torch.manual_seed(3)
    _, pred, mask = model(x, mask_ratio=0.9, motion_stride=1, motion_aware_tau=0.8)
    *_, draws = model.masking(MASK_DRAWS, 150, 0.9, x.device, motion.view(1, -1).expand(MASK_DRAWS, -1), 0.8)
    np.testing.assert_array_equal(arrays['motion'], motion.numpy())
    np.testing.assert_array_equal(arrays['mask'], mask[0].view(6, 25).numpy())
    np.testing.assert_array_equal(arrays['pred'], pred[0].view(6, 25, -1).detach().numpy())
    np.testing.assert_array_equal(arrays['keep'], 1 - draws.mean(0).view(6, 25).numpy())
    assert arrays['keep'].mean() == pytest.approx(int(150 * (1 - 0.9)) / 150)  # len_keep tokens kept per draw
    assert arrays['keep'][:, 7].mean() < 0.5 * arrays['keep'].mean()  # the moving joint is masked more
    random = masking_arrays(model, x, 0.9, 0., 1, seed=3)
    assert random['keep'][:, 7].mean() > 0.5 * random['keep'].mean()


def test_pretraining_monitor_writes_knn_and_the_masking_image(pretrained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    log = log_entries(pretrained)
    assert [entry['epoch'] for entry in log] == [0, 1]
    assert all(0 <= entry['knn_acc1'] <= entry['knn_acc5'] <= 100 and entry['knn_time'] > 0 for entry in log)
    events = EventAccumulator(str(pretrained), size_guidance={'images': 0})
    events.Reload()
    name = 'kNN monitor (bank of all 24 training samples, as main_knn.py)'  # the published bank: 10,000 at most
    assert {f'{name}/{key}' for key in ('acc1', 'acc5', 'mean_class_acc', 'time')} <= set(events.Tags()['scalars'])
    assert [e.value for e in events.Scalars(f'{name}/acc1')] == pytest.approx([entry['knn_acc1'] for entry in log])
    assert [e.step for e in events.Scalars(f'{name}/acc1')] == [1000, 2000]  # after epochs 0 and 1, as test/*
    images = events.Images('masking')
    assert [image.step for image in images] == [2000] and images[0].width > 200


def test_linear_probe_ends_with_the_confusion_image(linprobed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(linprobed), size_guidance={'images': 0})
    events.Reload()
    assert [image.step for image in events.Images('confusion')] == [1000]  # after epoch 0


def test_visualize_writes_pictures_that_read_back(work, pretrained, linprobed, tmp_path):
    common = ['--device', 'cpu', '--batch_size', '4']
    masking = visualize.main(['masking', '--config', str(work['pretrain']), '--checkpoint',
                              str(pretrained / 'checkpoint-last.pth'), '--index', '2', '--out',
                              str(tmp_path / 'masking.png'), *common])
    read_image(masking)
    tsne = visualize.main(['tsne', '--config', str(work['linear']), '--encoder',
                           f"MAMP={pretrained / 'checkpoint-last.pth'}", '--encoder', 'random=', '--out',
                           str(tmp_path / 'tsne.png'), *common])
    read_image(tsne)
    confusion = visualize.main(['confusion', '--config', str(work['linear']), '--checkpoint',
                                str(linprobed / 'checkpoint-last.pth'), '--out', str(tmp_path / 'confusion.png'),
                                *common])
    read_image(confusion)
    rows = (tmp_path / 'confusion.csv').read_text().splitlines()
    accuracies = [float(row.split(',')[-1]) for row in rows[1:]]
    assert rows[0] == 'action,class,samples,correct,accuracy' and accuracies == sorted(accuracies)
    assert len(rows) == 5 and rows[1].split(',')[0] in ('drink water', 'eat meal/snack', 'brushing teeth',
                                                        'brushing hair')
    gif = visualize.main(['sequence', '--npz', str(work['npz']), '--index', '1', '--out', str(tmp_path / 'a.gif')])
    with Image.open(gif) as image:
        assert image.n_frames > 50 and image.size[0] > 200


def test_sequence_of_a_raw_skeleton_file(tmp_path):
    raw = shared_path('realdata', 'ntu', 'raw', 'S001C001P001R001A001.skeleton')
    gif = visualize.main(['sequence', '--skeleton', str(raw), '--out', str(tmp_path / 'raw.gif'), '--fps', '30'])
    with Image.open(gif) as image:
        assert image.n_frames > 20
        frames = [np.asarray(image.convert('L')) for _ in range(1) if image.seek(10) is None]
    assert len(np.unique(frames[0])) > 2


def test_bad_input_is_one_line(work, pretrained, linprobed, tmp_path):
    cases = [
        (['sequence', '--npz', work['npz'], '--index', '99'], '--index 99'),
        (['masking', '--config', work['pretrain'], '--checkpoint', linprobed / 'checkpoint-last.pth'],
         'not a pre-training checkpoint'),
        (['confusion', '--config', work['linear'], '--checkpoint', pretrained / 'checkpoint-last.pth'],
         'needs a classifier'),
        (['sequence', '--npz', work['npz'], '--dataset', 'kinetics'], "unknown dataset 'kinetics'"),
        (['masking', '--config', work['pretrain'], '--checkpoint', pretrained / 'checkpoint-last.pth', '--index',
          '11'], '--index 11'),
    ]
    for argv, words in cases:
        out = tmp_path / 'out.png'
        result = subprocess.run([sys.executable, str(ROOT / 'visualize.py'), *map(str, argv), '--out', str(out)],
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert result.returncode == 1 and words in result.stderr, result.stderr
        assert result.stderr.strip().count('\n') == 0 and not out.exists()
