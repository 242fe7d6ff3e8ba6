"""Pictures (util/figures.py, util/skeleton_figures.py, visualize.py) and the pre-training monitor: the masking
arrays are the model's own, a tiny pre-training's TensorBoard events hold the kNN scalars and the masking image,
every picture reads back as PNG (at --dpi) and PDF, the figures show what they claim (row labels, shared colour
scales, counts, distinct markers, upright skeletons), and bad input ends in one line."""
import re
import subprocess
import sys

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib import animation
from matplotlib.text import Text
from PIL import Image

import visualize
from conftest import shared_path
from model_mamp import MAMP
from train_fixtures import ROOT, TINY_ENCODER, log_entries, pretrain_in_process, run_entry, write_config, write_npz
from util import figures
from util.actions import NTU60, NTU120
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


@pytest.fixture(scope='module')
def commands(work, pretrained, linprobed):
    """The arguments of each visualize.py picture on the tiny runs, without --out."""
    common = ['--device', 'cpu', '--batch_size', '4']
    return {'masking': ['masking', '--config', str(work['pretrain']), '--checkpoint',
                        str(pretrained / 'checkpoint-last.pth'), '--index', '2', *common],
            'tsne': ['tsne', '--config', str(work['linear']), '--encoder', f"MAMP={pretrained / 'checkpoint-last.pth'}",
                     '--encoder', 'random=', *common],
            'confusion': ['confusion', '--config', str(work['linear']), '--checkpoint',
                          str(linprobed / 'checkpoint-last.pth'), *common],
            'sequence': ['sequence', '--npz', str(work['npz']), '--index', '1']}


@pytest.fixture
def drawn(monkeypatch):
    """The pictures visualize.py saves, in order (figures.save still writes them)."""
    pictures, save = [], figures.save

    def keep(picture, path, dpi=None):
        pictures.append(picture)
        return save(picture, path, dpi)

    monkeypatch.setattr(figures, 'save', keep)
    return pictures


def read_image(path):
    """The pixels of a PNG, checked to be a real picture: a few hundred pixels a side and many colours."""
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10
    return pixels


def pdf_inches(path):
    """(width, height) in inches of a one-page PDF, from its MediaBox."""
    pdf = path.read_bytes()
    assert pdf.startswith(b'%PDF')
    box = re.search(rb'/MediaBox \[ *0 0 ([\d.]+) ([\d.]+) *\]', pdf)
    return float(box[1]) / 72, float(box[2]) / 72


def texts(fig):
    return [t.get_text() for t in fig.findobj(Text)]


def one_line_exit(argv):
    """The message of the SystemExit that visualize.main(argv) ends with, checked to be one line."""
    with pytest.raises(SystemExit) as exit_:
        visualize.main(argv)
    message = str(exit_.value.code)
    assert message.startswith('error: ') and '\n' not in message
    return message


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
    random = masking_arrays(model, x, 0.9, 0., 1, seed=3)  # uniform: exact, the same for every token
    np.testing.assert_array_equal(random['keep'], np.full((6, 25), np.float32(int(150 * (1 - 0.9)) / 150)))


@pytest.mark.slow
def test_pretraining_monitor_writes_knn_and_the_masking_image(pretrained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    log = log_entries(pretrained)
    assert [entry['epoch'] for entry in log] == [0, 1]
    assert all(0 <= entry['knn_acc1'] <= entry['knn_acc5'] <= 100 and entry['knn_time'] > 0 for entry in log)
    events = EventAccumulator(str(pretrained), size_guidance={'images': 0})
    events.Reload()
    # one tag whatever the bank (so that runs with other banks overlay), the step axis the epoch, as test/*
    assert {f'knn/{key}' for key in ('acc1', 'acc5', 'mean_class_acc', 'bank', 'time')} <= set(events.Tags()['scalars'])
    assert [e.value for e in events.Scalars('knn/acc1')] == pytest.approx([entry['knn_acc1'] for entry in log])
    assert [(e.step, e.value) for e in events.Scalars('knn/bank')] == [(0, 24), (1, 24)]
    bank = events.Tensors('knn/bank/text_summary')  # the bank in words, beside main_knn.py's
    assert [t.step for t in bank] == [0, 1] and bank[0].tensor_proto.string_val == [
        b'kNN monitor (bank of all 24 training samples, as main_knn.py)']
    images = events.Images('masking')
    assert [image.step for image in images] == [1] and images[0].width > 200


@pytest.mark.slow
def test_linear_probe_ends_with_the_confusion_image(linprobed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(linprobed), size_guidance={'images': 0})
    events.Reload()
    assert [image.step for image in events.Images('confusion')] == [0]  # after epoch 0


@pytest.mark.slow
@pytest.mark.parametrize('command', ['masking', 'tsne', 'confusion', 'sequence'])
def test_each_picture_as_png_at_the_dpi_and_as_pdf(commands, command, tmp_path):
    folder = tmp_path / 'new' / 'pictures'  # created by every command, before its work
    png = visualize.main([*commands[command], '--out', str(folder / 'a.png'), '--dpi', '150'])
    pdf = visualize.main([*commands[command], '--out', str(folder / 'a.pdf')])
    width, height = pdf_inches(pdf)
    # The tight boxes of the two renderers differ by the text hinting: a few pixels; another dpi would be 25% off
    assert read_image(png).shape[:2] == pytest.approx((150 * height, 150 * width), rel=0.03)
    written = {'a.pdf', 'a.png', 'a.csv'} if command == 'confusion' else {'a.pdf', 'a.png'}
    assert {p.name for p in folder.iterdir()} == written  # and no temporary file


@pytest.mark.parametrize('command', ['masking', 'tsne', 'confusion', 'sequence'])
def test_an_out_that_cannot_be_written_is_one_line_before_any_work(command, drawn, monkeypatch, tmp_path):
    commands = {'masking': ['masking', '--config', 'c.yaml', '--checkpoint', 'c.pth'], 'sequence': ['sequence'],
                'tsne': ['tsne', '--config', 'c.yaml', '--encoder', 'random='],
                'confusion': ['confusion', '--config', 'c.yaml', '--checkpoint', 'c.pth']}  # never read

    def work(args):
        """The picture's work, which must not start."""
        pytest.fail('the work started')

    monkeypatch.setattr(visualize, command, work)
    (tmp_path / 'file').write_text('')
    assert one_line_exit([*commands[command], '--out', str(tmp_path / 'file' / 'new' / 'a.png')]) == (
        f"error: --out {tmp_path / 'file' / 'new' / 'a.png'}: {tmp_path / 'file'} is a file, so no folder can be "
        f"made there; give another path")
    (tmp_path / 'b.png').mkdir()
    assert one_line_exit([*commands[command], '--out', str(tmp_path / 'b.png')]) == (
        f"error: --out {tmp_path / 'b.png'}: is a folder; give a file name")
    assert not drawn and sorted(p.name for p in tmp_path.iterdir()) == ['b.png', 'file']  # nothing made


@pytest.mark.slow
def test_visualize_writes_pictures_that_read_back(commands, tmp_path):
    svg = visualize.main([*commands['confusion'], '--out', str(tmp_path / 'confusion.svg')]).read_text()
    assert svg.startswith('<?xml') and '<svg' in svg and 'linear_confusion, epoch 0' in svg  # text kept as text
    rows = (tmp_path / 'confusion.csv').read_text().splitlines()
    accuracies = [float(row.split(',')[-1]) for row in rows[1:]]
    assert rows[0] == 'action,class,samples,correct,accuracy' and accuracies == sorted(accuracies)
    assert len(rows) == 5 and rows[1].split(',')[0] in ('drink water', 'eat meal/snack', 'brushing teeth',
                                                        'brushing hair')
    gif = visualize.main([*commands['sequence'], '--out', str(tmp_path / 'a.gif'), '--dpi', '60'])
    with Image.open(gif) as image:
        assert image.n_frames > 50 and image.size == (60 * figures.SINGLE_COLUMN, 60 * figures.SINGLE_COLUMN)


def test_sequence_of_a_raw_skeleton_file(tmp_path):
    raw = shared_path('realdata', 'ntu', 'raw', 'S001C001P001R001A001.skeleton')
    gif = visualize.main(['sequence', '--skeleton', str(raw), '--out', str(tmp_path / 'raw.gif'), '--fps', '30'])
    with Image.open(gif) as image:
        assert image.n_frames > 20
        frames = [np.asarray(image.convert('L')) for _ in range(1) if image.seek(10) is None]
    assert len(np.unique(frames[0])) > 2


def test_raw_skeleton_strip_is_upright_on_equal_axes_and_names_the_action(drawn, tmp_path):
    from data.ntu import process_file
    raw = shared_path('realdata', 'ntu', 'raw', 'S001C001P001R001A001.skeleton')
    pdf = visualize.main(['sequence', '--skeleton', str(raw), '--out', str(tmp_path / 'raw.pdf'), '--frames', '4'])
    assert pdf_inches(pdf)[0] > 3
    fig = drawn[0]
    assert 'S001C001P001R001A001: drink water' in texts(fig) and len(fig.axes) == 4
    joints = process_file(raw)[0]['joints'].reshape(-1, 3)
    for ax in fig.axes:
        spans = [np.ptp(limits) for limits in (ax.get_xlim3d(), ax.get_ylim3d(), ax.get_zlim3d())]
        assert spans == pytest.approx([spans[0]] * 3)  # one scale on x, z (depth) and y
        assert spans[0] == pytest.approx(np.ptp(joints, axis=0).max(), rel=1e-4)  # the largest extent
        head, foot = (ax.lines[j].get_data_3d()[2][0] for j in (3, 15))  # the vertical of bone j's first joint
        assert head - foot > 1.2  # metres: a standing person, y up
    assert fig.axes[0].get_xlim3d()[0] > fig.axes[0].get_xlim3d()[1]  # x to the left, as the camera sees it


def masking_rows_of(fig):
    """The row labels (the first column's y labels) and the colour limits of each image column of a masking
    figure."""
    images = [ax for ax in fig.axes if ax.images]
    columns = [images[column::3] for column in range(3)]
    return ([ax.get_ylabel() for ax in columns[0]],
            [{ax.images[0].get_clim() for ax in column} for column in columns])


@pytest.mark.slow
def test_masking_rows_say_what_the_checkpoint_did(work, pretrained, drawn, tmp_path):
    mae_config = write_config(tmp_path / 'mae.yaml', 'ntu60_xsub/pretrain_mae.yaml', work['npz'])
    torch.manual_seed(0)
    mae = MAMP(**TINY_ENCODER, decoder_dim_feat=32, decoder_depth=1, target='joints')
    (tmp_path / 'mae_run').mkdir()
    torch.save({'model': mae.state_dict(), 'epoch': 7, 'args': {'mask_ratio': 0.9, 'motion_aware_tau': 0.,
                                                                'motion_stride': 1}},
               tmp_path / 'mae_run' / 'checkpoint-last.pth')
    for config, checkpoint in ((work['pretrain'], pretrained / 'checkpoint-last.pth'),
                               (mae_config, tmp_path / 'mae_run' / 'checkpoint-last.pth')):
        visualize.main(['masking', '--config', str(config), '--checkpoint', str(checkpoint), '--device', 'cpu',
                        '--out', str(tmp_path / 'masking.png')])
    mamp, mae = drawn
    labels, limits = masking_rows_of(mamp)
    assert labels == ['motion-aware, tau 0.8\n(as trained)\n\nframe', 'uniform random\n\nframe']
    assert all(len(column) == 1 for column in limits)  # one colour scale per quantity across the rows
    keep = [ax.images[0].get_array() for ax in mamp.axes if ax.images][1::3]
    assert limits[1] == {(min(k.min() for k in keep), max(k.max() for k in keep))}
    assert len(mamp.axes) == 2 * 4 + 2 and len(mamp.legends) == 1  # one colour bar per scale, legend below
    assert not any(ax.get_legend() for ax in mamp.axes)
    assert any(text.startswith('pretrain_monitor, epoch 1: test sample 0 (') for text in texts(mamp))
    labels, _ = masking_rows_of(mae)
    assert labels == ['uniform random\n(as trained)\n\nframe']
    assert not any('motion-aware' in text for text in texts(mae))
    assert any(text.startswith('mae_run, epoch 7: ') for text in texts(mae))
    assert mae.axes[3].get_ylabel() == 'joint position, x (normalised)'
    mamp.canvas.draw()  # whole frames and joints on every axis; the colour bars say their units
    for ax in mamp.axes[:8]:
        for ticks in (ax.get_xticks(), ax.get_yticks() if ax.images else []):
            np.testing.assert_array_equal(ticks, np.round(ticks))
    assert mamp.axes[0].images[0].get_extent() == [-0.5, 24.5, 23.5, -0.5]  # 6 time patches of 4 frames
    assert [ax.get_ylabel() for ax in mamp.axes[8:]] == ['mean |change| over 4 frames (m)',
                                                          'probability of being kept']
    visualize.main(['masking', '--config', str(work['pretrain']), '--checkpoint',
                    str(pretrained / 'checkpoint-last.pth'), '--device', 'cpu', '--no-title', '--out',
                    str(tmp_path / 'masking.png')])
    assert not drawn[-1].texts  # no title: the figure's only text is in its axes and legend


def test_confusion_figure_shows_rates_with_counts():
    matrix = np.zeros((60, 60), int)
    matrix[0, 0], matrix[0, 1], matrix[1, 0], matrix[2, 2] = 63, 7, 1, 5  # 70, 1 and 5 test samples
    fig = figures.confusion_figure(matrix, NTU60, 'run')
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ['drink water (n=70)', 'eat meal/snack (n=1)',
                                                           'brushing teeth (n=5)']
    np.testing.assert_allclose(ax.images[0].get_array(), [[90, 10, 0], [100, 0, 0], [0, 0, 100]])
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(0, 0): '90', (0, 1): '10', (1, 0): '100', (1, 1): '0', (2, 2): '100'}
    rng = np.random.default_rng(0)
    labels = np.arange(120).repeat(3)
    large = figures.confusion_figure(figures.confusion(labels, rng.permutation(labels), 120), NTU120, 'run')
    ax = large.axes[0]
    assert len(ax.get_yticklabels()) == 120 and not ax.texts  # every class, no numbers in 14400 cells
    assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 5
    assert large.get_size_inches()[0] > 2 * fig.get_size_inches()[0]
    plt.close('all')


def scatter_colours(ax):
    """The colour of each scatter collection of a t-SNE panel, in drawing order."""
    return [tuple(np.round(c.get_facecolor()[0][:3], 4)) for c in ax.collections]


@pytest.mark.parametrize('actions', [13, 20])
def test_tsne_gives_each_of_up_to_twenty_actions_its_own_colour(actions):
    rng = np.random.default_rng(0)
    labels = np.arange(actions).repeat(2)
    features = rng.normal(size=(actions, 8))[labels] + 0.1 * rng.normal(size=(2 * actions, 8))
    fig = figures.tsne_figure({'a': (features, labels), 'b': (features[::-1], labels[::-1])}, NTU60)
    for ax in fig.axes:
        assert len(ax.collections) == actions and len(set(scatter_colours(ax))) == actions
    assert scatter_colours(fig.axes[0]) == scatter_colours(fig.axes[1])  # an action has one colour in every panel
    handles = fig.legends[0].legend_handles
    assert len({h.get_color() for h in handles}) == actions and not fig.texts  # no title given, none drawn
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(NTU60[:actions])
    plt.close(fig)


def test_tsne_of_sixty_actions_names_the_largest_and_greys_the_rest_with_the_legend_outside():
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.arange(60).repeat(3), np.arange(40, 58).repeat(2)])  # 40-57: the largest
    features = rng.normal(size=(60, 8))[labels] + 0.1 * rng.normal(size=(len(labels), 8))
    fig = figures.tsne_figure({'a': (features, labels)}, NTU60, 't-SNE')
    colours = scatter_colours(fig.axes[0])
    assert colours[0] == figures.OTHERS and len(colours) == 19 and len(set(colours)) == 19  # grey first, below
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [*NTU60[40:58], '42 other actions']
    assert len(fig.axes[0].collections[0].get_offsets()) == 42 * 3
    fig.canvas.draw()
    assert not fig.legends[0].get_window_extent().overlaps(fig.axes[0].get_window_extent())
    plt.close(fig)


@pytest.mark.slow
def test_encoder_given_as_a_bare_checkpoint_is_loaded_and_named_by_its_run(work, pretrained, monkeypatch, tmp_path):
    panels = {}
    monkeypatch.setattr(figures, 'tsne_figure', lambda shown, *_: panels.update(shown) or plt.figure())
    checkpoint = str(pretrained / 'checkpoint-last.pth')
    visualize.main(['tsne', '--config', str(work['linear']), '--encoder', checkpoint, '--encoder', f'MAMP={checkpoint}',
                    '--encoder', 'random=', '--device', 'cpu', '--out', str(tmp_path / 'tsne.png')])
    assert list(panels) == ['pretrain_monitor, epoch 1', 'MAMP', 'random']
    np.testing.assert_array_equal(panels['pretrain_monitor, epoch 1'][0], panels['MAMP'][0])
    assert not np.allclose(panels['MAMP'][0], panels['random'][0])
    message = one_line_exit(['tsne', '--config', str(work['linear']), '--encoder', str(tmp_path / 'missing.pth')])
    assert 'missing.pth: no such checkpoint file; give LABEL=CHECKPOINT' in message


def test_mp4_without_ffmpeg_is_one_line_before_drawing(work, drawn, monkeypatch, tmp_path):
    monkeypatch.setattr(animation.writers, 'is_available', lambda name: name != 'ffmpeg')
    out = tmp_path / 'a.mp4'
    message = one_line_exit(['sequence', '--npz', str(work['npz']), '--out', str(out)])
    assert 'needs ffmpeg' in message and '.gif' in message and not drawn and not out.exists()


def test_a_failed_write_leaves_the_earlier_picture_whole(tmp_path, monkeypatch):
    path = tmp_path / 'picture.png'
    path.write_bytes(b'earlier picture')
    fig = plt.figure()

    def broken(tmp, **_):
        tmp.write_bytes(b'half')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(fig, 'savefig', broken)
    with pytest.raises(SystemExit, match='cannot write .*picture.png: .*No space left'):
        figures.save(fig, path)
    assert path.read_bytes() == b'earlier picture' and [p.name for p in tmp_path.iterdir()] == ['picture.png']


@pytest.mark.slow
def test_bad_input_is_one_line(work, pretrained, linprobed, tmp_path):
    empty = write_npz(tmp_path / 'NTU60_empty.npz', num_test=0)
    cases = [
        (['confusion', '--config', work['linear'], '--checkpoint', linprobed / 'checkpoint-last.pth', '--data_path',
          empty], f'the test split of {empty} has no sample'),
        (['tsne', '--config', work['linear'], '--encoder', 'random=', '--data_path', empty],
         f'the test split of {empty} has no sample'),
        (['tsne', '--config', work['linear'], '--encoder', pretrained], f'--encoder {pretrained}: no such checkpoint'),
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


def test_tsne_title_names_the_data_file_given(tmp_path, monkeypatch):
    """Every NTU-60 array is NTU60_XSub.npz, the demo's synthetic one too: the title names where it is."""
    data = tmp_path / 'demo_output' / '20261206-120000' / 'data' / 'NTU60_XSub.npz'
    monkeypatch.chdir(tmp_path)
    assert visualize.shown_path(data) == 'demo_output/20261206-120000/data/NTU60_XSub.npz'
    monkeypatch.chdir(ROOT)
    assert visualize.shown_path(data) == str(data)
