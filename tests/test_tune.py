"""Contrastive tuning (model_tune.py, main_tune.py, feeder/views.py): the loss against plain NumPy, the two views,
the queue across a resume and across processes, tuned checkpoints in the other entry points, one-line errors."""
import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main_finetune
import main_knn
import main_linprobe
import main_tune
import util.preemption
from feeder.feeder_ntu import Feeder
from feeder.views import ViewsFeeder
from model_mamp import MAMP
from model_transformer import SELF_SUPERVISED_ONLY, SkeletonTransformer, classifier_from_checkpoint
from model_tune import NNCLR
from train_fixtures import (TINY_ENCODER, TINY_WINDOW, assert_same_training_state, log_entries, one_thread,
                            pretrain_in_process, run_entry, write_classifier_checkpoint, write_config)
from util import config
from util.checkpoint import load_checkpoint
from util.data import SeededItems

HEADS = {'proj_hidden_dim': 32, 'proj_dim': 16, 'pred_hidden_dim': 32}
QUEUE_BUFFERS = ('queue', 'queue_ptr', 'queue_len')


def normalize(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def numpy_nnclr_loss(z1, z2, p1, p2, queue, written, temperature):
    """The symmetrised NNCLR loss, one sample at a time: NN(z) is the most cosine-similar of the first `written`
    queue rows (z itself when there is none); sample i's second-view prediction has NN(z1_i) as its positive
    and NN(z1_k), k != i, as its negatives; then the same with the views swapped."""
    z1, z2, p1, p2 = (normalize(a.astype(np.float64)) for a in (z1, z2, p1, p2))

    def nearest(z):
        if written == 0:
            return z
        return np.stack([queue[max(range(written), key=lambda j: z[i] @ queue[j])] for i in range(len(z))])

    def cross_entropy(p, candidates):
        total = 0.
        for i in range(len(p)):
            logits = np.array([p[i] @ candidates[k] / temperature for k in range(len(candidates))])
            total -= logits[i] - np.log(np.exp(logits).sum())
        return total / len(p)

    return (cross_entropy(p2, nearest(z1)) + cross_entropy(p1, nearest(z2))) / 2


@pytest.mark.parametrize('written', [5, 0])
def test_loss_and_queue_against_numpy(written):
    """Fixed embeddings, a queue of 7 rows of which `written` are filled: the loss equals the plain computation,
    the unwritten rows are never neighbours (they hold the exact first embedding), and the batch's normalised
    first-view embeddings are written from the pointer on, wrapping around."""
    torch.manual_seed(0)
    model = NNCLR(**TINY_ENCODER, **HEADS, queue_size=7)
    g = torch.Generator().manual_seed(1)
    z1, z2, p1, p2 = (torch.randn(4, 16, generator=g) for _ in range(4))
    queue = F.normalize(torch.randn(7, 16, generator=g), dim=1)
    queue[written:] = F.normalize(z1[:1], dim=1)
    model.queue.copy_(queue)
    model.queue_ptr.fill_(written)
    model.queue_len.fill_(written)
    loss = model.loss(z1, z2, p1, p2, temperature=0.2)
    expected = numpy_nnclr_loss(*(t.numpy() for t in (z1, z2, p1, p2)), queue.numpy().astype(np.float64), written,
                                0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    rows = [(written + i) % 7 for i in range(4)]
    torch.testing.assert_close(model.queue[rows], F.normalize(z1, dim=1))
    untouched = [r for r in range(7) if r not in rows]
    torch.testing.assert_close(model.queue[untouched], queue[untouched], rtol=0, atol=0)
    assert (model.queue_ptr.item(), model.queue_len.item()) == ((written + 4) % 7, min(written + 4, 7))


def test_tuner_keeps_the_encoder_names_of_the_pretraining_checkpoint():
    def encoder_keys(model):
        return {k for k in model.state_dict() if not k.startswith(SELF_SUPERVISED_ONLY + ('head.',))}
    tuner = NNCLR(**TINY_ENCODER, **HEADS, queue_size=8)
    mamp = MAMP(**TINY_ENCODER, decoder_dim_feat=32, decoder_depth=1)
    classifier = SkeletonTransformer(**TINY_ENCODER)
    assert encoder_keys(tuner) == encoder_keys(mamp) == encoder_keys(classifier)
    assert set(tuner.state_dict()) - encoder_keys(tuner) == {
        k for k in tuner.state_dict() if k.startswith(('projector.', 'predictor.', 'queue'))}
    assert {'queue', 'queue_ptr', 'queue_len'} <= set(tuner.state_dict())


def test_layer_decay_moves_the_lower_blocks_least():
    """main_finetune.make_optimizer on the tuner: lr scale decay^(depth + 1 - layer), heads at the full lr."""
    model = NNCLR(**{**TINY_ENCODER, 'depth': 2}, **HEADS, queue_size=8)
    args = argparse.Namespace(weight_decay=0.05, layer_decay=0.5, lr=1e-3, fused_optim=False)
    scale = {id(p): group['lr_scale'] for group in main_finetune.make_optimizer(model, args).param_groups
             for p in group['params']}
    named = dict(model.named_parameters())
    assert scale[id(named['joints_embed.proj.weight'])] == scale[id(named['temp_embed'])] == 0.5 ** 3
    assert scale[id(named['blocks.0.attn.qkv.weight'])] == 0.5 ** 2
    assert scale[id(named['blocks.1.attn.qkv.weight'])] == 0.5
    assert scale[id(named['projector.0.weight'])] == scale[id(named['predictor.3.weight'])] == 1.0


def test_views_are_the_feeders_own_augmentation(work):
    """View 0 is the one-view feeder's item for the same seed, view 1 another crop and rotation; the batched
    items equal the items one by one; views=1 is the plain feeder."""
    options = dict(data_path=work['npz'], split='train', p_interval=[0.5, 1], window_size=TINY_WINDOW,
                   random_rot=True)
    single = SeededItems(Feeder(**options), seed=3)
    paired = SeededItems(ViewsFeeder(**options, views=2), seed=3)
    keys = [(1, 2), (1, 7), (1, 9)]
    batch = paired.__getitems__(keys)
    for key, (views, label, index), (data, label1, index1) in zip(keys, batch, single.__getitems__(keys)):
        assert views.shape == (2, 3, TINY_WINDOW, 25, 2) and (label, index) == (label1, index1) == (
            int(single.dataset.label[key[1]]), key[1])
        np.testing.assert_array_equal(views[0], data)
        assert np.abs(views[1] - views[0]).max() > 0.05
        np.testing.assert_array_equal(paired[key][0], views)
    np.testing.assert_array_equal(SeededItems(ViewsFeeder(**options), seed=3)[keys[0]][0], batch[0][0][0])


@pytest.fixture(scope='module')
def tuning(work):
    """A one-epoch pre-training checkpoint, a tiny tuning config (queue of 16 of the 24 training samples, batch
    4: the queue wraps) and two uninterrupted epochs of tuning from that checkpoint."""
    root = work['root'] / 'tuning'
    pretrain_in_process(work, root / 'pretrain', '--epochs', '1')
    cfg = write_config(root / 'tune.yaml', 'ntu60_xsub/tune.yaml', work['npz'], model_args=HEADS, queue_size=16,
                       knn_every=0, lr=1e-3)
    start = root / 'pretrain' / 'checkpoint-last.pth'
    tune_in_process(cfg, root / 'reference', '--finetune', start)
    return {'root': root, 'config': cfg, 'start': start, 'reference': root / 'reference'}


def tune_in_process(cfg, out, *flags):
    argv = ['--config', str(cfg), '--output_dir', str(out), '--device', 'cpu', '--epochs', '2', '--save_every', '1',
            '--print_freq', '1', *map(str, flags)]
    with one_thread():
        return main_tune.main(config.parse_args('tune', argv))


def assert_same_queue(a, b):
    a, b = load_checkpoint(a)['model'], load_checkpoint(b)['model']
    for name in QUEUE_BUFFERS:
        assert torch.equal(a[name], b[name]), name


def test_tuning_writes_the_encoder_and_a_full_queue(tuning):
    checkpoint = load_checkpoint(tuning['reference'] / 'checkpoint-last.pth')
    model = checkpoint['model']
    assert (model['queue_ptr'].item(), model['queue_len'].item()) == (2 * 6 * 4 % 16, 16)  # 2 epochs x 6 steps x 4
    torch.testing.assert_close(model['queue'].norm(dim=1), torch.ones(16))
    start = load_checkpoint(tuning['start'])['model']
    assert not torch.equal(model['blocks.0.attn.qkv.weight'], start['blocks.0.attn.qkv.weight'])
    assert torch.equal(model['norm.bias'], start['norm.bias'])  # invisible to the loss: kept as pre-trained
    assert [entry['epoch'] for entry in log_entries(tuning['reference'])] == [0, 1]
    assert all(np.isfinite(entry['train_loss']) for entry in log_entries(tuning['reference']))
    saved = config.parse_args('tune', ['--config', str(tuning['reference'] / 'config.yaml')])
    assert saved.model_args['queue_size'] == saved.queue_size == 16


def test_resume_continues_the_queue_exactly(tuning, monkeypatch):
    """From the epoch-0 checkpoint, and after a preemption inside epoch 1 (step 2): the weights, optimiser state
    and the queue's content, order and pointer at the end are those of the uninterrupted run."""
    reference = tuning['reference']
    resumed = tuning['root'] / 'resumed'
    tune_in_process(tuning['config'], resumed, '--resume', reference / 'checkpoint-0.pth')
    assert_same_training_state(resumed / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')
    assert_same_queue(resumed / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')

    calls = []  # requested() is asked after steps 0-4 of epoch 0, after the epoch, then after each step of epoch 1
    monkeypatch.setattr(util.preemption, 'requested', lambda: calls.append(1) or len(calls) == 8)
    preempted = tuning['root'] / 'preempted'
    try:
        with pytest.raises(SystemExit) as stop:
            tune_in_process(tuning['config'], preempted, '--finetune', tuning['start'])
    finally:
        util.preemption.restore()
    monkeypatch.undo()
    assert stop.value.code == util.preemption.PREEMPTED_EXIT
    stopped = load_checkpoint(preempted / 'checkpoint-last.pth')
    assert (stopped['epoch'], stopped['position']['step'], stopped['model']['queue_ptr'].item()) == (0, 2, 8 * 4 % 16)
    tune_in_process(tuning['config'], preempted, '--auto_resume')
    assert_same_training_state(preempted / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')
    assert_same_queue(preempted / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')
    assert [e['train_loss'] for e in log_entries(preempted)] == [e['train_loss'] for e in log_entries(reference)]


def without_key_biases(name, tensor):
    """The key third of an attention's qkv bias has zero gradient in exact arithmetic (it shifts all of a query's
    logits alike): AdamW moves it by round-off alone, so it is left out of comparisons."""
    if name.endswith('attn.qkv.bias'):
        q, _, v = tensor.chunk(3)
        return torch.cat([q, v])
    return tensor


@pytest.mark.slow
def test_two_processes_match_one_process(tuning):
    """torchrun (gloo) with 2 x 4 samples against one process with 8: the queue holds the same embeddings in the
    same order (the global batch's), the losses and the trained weights agree to round-off."""
    common = ['--config', tuning['config'], '--finetune', tuning['start'], '--epochs', 2]
    one, two = tuning['root'] / 'one_process', tuning['root'] / 'two_processes'
    run_entry('main_tune.py', *common, '--output_dir', one, '--batch_size', 8)
    run_entry('main_tune.py', *common, '--output_dir', two, '--batch_size', 4, nproc=2, timeout=400)
    a, b = (load_checkpoint(out / 'checkpoint-last.pth')['model'] for out in (one, two))
    assert (a['queue_ptr'].item(), a['queue_len'].item()) == (b['queue_ptr'].item(), b['queue_len'].item()) == (0, 16)
    torch.testing.assert_close(b['queue'], a['queue'], rtol=0, atol=1e-5)
    for name in a:
        if a[name].is_floating_point() and name not in QUEUE_BUFFERS:
            torch.testing.assert_close(without_key_biases(name, b[name]), without_key_biases(name, a[name]),
                                       rtol=1e-4, atol=1e-5, msg=name)
    losses = [[entry['train_loss'] for entry in log_entries(out)] for out in (one, two)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_tuned_checkpoint_goes_where_a_pretraining_checkpoint_goes(work, tuning, capsys):
    """Linear probe (the frozen encoder is the tuned one), fine-tuning and kNN with k = 1 and 20 from one pass;
    each drops the projector, predictor and queue in one line."""
    tuned = tuning['reference'] / 'checkpoint-last.pth'
    state = load_checkpoint(tuned)['model']
    encoder = {k: v for k, v in state.items() if not k.startswith(SELF_SUPERVISED_ONLY)}
    n_projector, n_predictor = (sum(k.startswith(head) for k in state) for head in ('projector.', 'predictor.'))
    dropped = (f"load_pretrained: dropped from {tuned}: queue: 3 tensors, projector: {n_projector} tensors, "
               f"predictor: {n_predictor} tensors")
    root = tuning['root']
    flags = ['--device', 'cpu', '--finetune', str(tuned)]
    with one_thread():
        main_linprobe.main(config.parse_args('linprobe', ['--config', str(work['linear']), '--output_dir',
                                                          str(root / 'linear'), *flags]))
        main_finetune.main(config.parse_args('finetune', ['--config', str(work['finetune']), '--output_dir',
                                                          str(root / 'finetune'), *flags]))
        both = main_knn.main(config.parse_args('knn', ['--config', str(work['linear']), '--output_dir',
                                                       str(root / 'knn'), *flags, '--k', '1', '20']))
        alone = main_knn.main(config.parse_args('knn', ['--config', str(work['linear']), '--output_dir',
                                                        str(root / 'knn20'), *flags]))
    assert capsys.readouterr().out.count(dropped) == 4
    probe = load_checkpoint(root / 'linear' / 'checkpoint-last.pth')['model']
    for key, value in encoder.items():
        assert torch.equal(probe[key], value), key
    assert log_entries(root / 'finetune')[0]['test_num_samples'] == 11
    classifier, _ = classifier_from_checkpoint(root / 'finetune' / 'checkpoint-last.pth')  # as predict.py, export.py
    assert classifier.head.fc2.out_features == 60
    written = json.loads((root / 'knn' / 'knn.json').read_text())
    assert written == json.loads(json.dumps(both)) and set(written['by_k']) == {'1', '20'}
    assert (written['knn_k'], written['knn_acc1']) == (1, written['by_k']['1']['acc1'])
    assert written['by_k']['20'] == {key: alone[f'knn_{key}'] for key in ('acc1', 'acc5', 'mean_class_acc')}
    assert alone['knn_k'] == 20 and set(alone['by_k']) == {'20'}


def test_bad_input_is_one_line_and_writes_nothing(work, tuning, tmp_path):
    write_classifier_checkpoint(tmp_path / 'classifier.pth', 'finetune')
    wide = MAMP(**{**TINY_ENCODER, 'dim_feat': 48}, decoder_dim_feat=48, decoder_depth=1)
    torch.save({'model': wide.state_dict()}, tmp_path / 'wide.pth')
    for name, (ptr, length) in {'past_the_end': (16, 16), 'behind_the_rows': (3, 8)}.items():
        checkpoint = torch.load(tuning['reference'] / 'checkpoint-0.pth', weights_only=False)
        checkpoint['model']['queue_ptr'].fill_(ptr)
        checkpoint['model']['queue_len'].fill_(length)
        torch.save(checkpoint, tmp_path / f'{name}.pth')
    cases = [(['--finetune', tmp_path / 'classifier.pth'], 'a classifier checkpoint'),
             (['--batch_size', '1'], '--batch_size 1: the projector and predictor normalise over the batch '
                                     '(BatchNorm), which needs at least 2 samples per process'),
             (['--resume', tmp_path / 'past_the_end.pth'], 'past_the_end.pth: queue_ptr 16 and queue_len 16 are '
                                                          'impossible for a queue of 16 rows'),
             (['--resume', tmp_path / 'behind_the_rows.pth'], 'behind_the_rows.pth: queue_ptr 3 and queue_len 8 are '
                                                             'impossible for a queue of 16 rows'),
             (['--finetune', tmp_path / 'wide.pth'], 'an encoder of width 48, the model\'s is 32'),
             (['--queue_size', '25'], '--queue_size 25: larger than the 24 training samples'),
             (['--queue_size', '3'], '--queue_size 3: smaller than one batch of 4'),
             (['--opts', 'train_feeder_args.exclude_actions=[61]'], 'exclude_actions: unknown action 61'),
             (['--opts', 'train_feeder_args.views=1'], 'two views of each sample')]
    for i, (flags, words) in enumerate(cases):
        out = tmp_path / f'out{i}'
        with pytest.raises(SystemExit) as stop:
            tune_in_process(tuning['config'], out, '--finetune', tuning['start'], *flags)
        message = str(stop.value.code)
        assert message.startswith('error: ') and '\n' not in message and words in message, message
        assert not out.exists() or {p.name for p in out.iterdir()} == {'.lock'}


@pytest.mark.slow
def test_bad_input_from_the_command_line_is_one_line(tuning, tmp_path):
    result = run_entry('main_tune.py', '--config', tuning['config'], '--output_dir', tmp_path / 'out',
                       '--finetune', tuning['start'], '--queue_size', '25', check=False, timeout=120)
    assert result.returncode == 1 and result.stderr.strip().count('\n') == 0 and 'larger than' in result.stderr
    assert not (tmp_path / 'out').exists()
