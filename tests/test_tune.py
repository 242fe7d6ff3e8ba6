"""Contrastive tuning (model_tune.py, main_tune.py, feeder/views.py): the loss against plain NumPy, the two views,
the queue across a resume and across processes, tuned checkpoints in the other entry points, one-line errors."""
import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
                            pretrain_in_process, run_entry, write_classifier_checkpoint, write_config, write_npz)
from util import config, purity
from util.checkpoint import load_checkpoint
from util.data import SeededItems

HEADS = {'proj_hidden_dim': 32, 'proj_dim': 16, 'pred_hidden_dim': 32}
QUEUE_BUFFERS = ('queue', 'queue_ptr', 'queue_len', 'queue_id')
EMBEDDINGS = ('joints_embed.proj.weight', 'joints_embed.proj.bias', 'pos_embed', 'temp_embed')


def normalize(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def numpy_nnclr_loss(z1, z2, p1, p2, queue, written, temperature, softmax_over, same_action=None):
    """The symmetrised NNCLR loss, one sample at a time, as NNCLR's paper writes it (softmax_over='predictions'):
    NN(z) is the most cosine-similar of the first `written` queue rows (z itself when there is none); the row of
    sample i is its neighbour NN(z1_i), whose positive is p2_i among the predictions p2_k of the batch; then the
    same with the views swapped. softmax_over='neighbours': the row of p2_i, over the neighbours NN(z1_k).
    same_action[i][k] True: column k is left out of row i's softmax unless k == i."""
    z1, z2, p1, p2 = (normalize(a.astype(np.float64)) for a in (z1, z2, p1, p2))

    def nearest(z):
        if written == 0:
            return z
        return np.stack([queue[max(range(written), key=lambda j: z[i] @ queue[j])] for i in range(len(z))])

    def cross_entropy(rows, columns):
        total = 0.
        for i in range(len(rows)):
            kept = [k for k in range(len(columns)) if k == i or same_action is None or not same_action[i][k]]
            logits = {k: rows[i] @ columns[k] / temperature for k in kept}
            total -= logits[i] - np.log(sum(np.exp(v) for v in logits.values()))
        return total / len(rows)

    if softmax_over == 'predictions':
        return (cross_entropy(nearest(z1), p2) + cross_entropy(nearest(z2), p1)) / 2
    return (cross_entropy(p2, nearest(z1)) + cross_entropy(p1, nearest(z2))) / 2


def model_with_queue(queue, written, ids):
    """A tiny NNCLR whose queue of 7 rows holds `queue` with the first `written` rows written, of samples ids."""
    torch.manual_seed(0)
    model = NNCLR(**TINY_ENCODER, **HEADS, queue_size=7)
    model.queue.copy_(queue)
    model.queue_ptr.fill_(written)
    model.queue_len.fill_(written)
    model.queue_id[:written] = torch.as_tensor(ids[:written])
    return model


@pytest.mark.parametrize('softmax_over', ['predictions', 'neighbours'])
@pytest.mark.parametrize('written', [5, 0])
def test_loss_and_queue_against_numpy(written, softmax_over):
    """Fixed embeddings, a queue of 7 rows of which `written` are filled (other samples than the batch's): the loss
    equals the plain computation in either direction, the unwritten rows are never neighbours (they hold the
    exact first embedding), and the batch's normalised first-view embeddings and their ids are written from the
    pointer on, wrapping around."""
    g = torch.Generator().manual_seed(1)
    z1, z2, p1, p2 = (torch.randn(4, 16, generator=g) for _ in range(4))
    queue = F.normalize(torch.randn(7, 16, generator=g), dim=1)
    queue[written:] = F.normalize(z1[:1], dim=1)
    model = model_with_queue(queue, written, [100 + j for j in range(7)])
    ids = torch.tensor([3, 1, 7, 5])
    loss, neighbour_ids = model.loss(z1, z2, p1, p2, ids, temperature=0.2, softmax_over=softmax_over)
    expected = numpy_nnclr_loss(*(t.numpy() for t in (z1, z2, p1, p2)), queue.numpy().astype(np.float64), written,
                                0.2, softmax_over)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    sims = F.normalize(z1, dim=1) @ queue[:written].T
    assert neighbour_ids.tolist() == ((100 + sims.argmax(dim=1)).tolist() if written else [-1] * 4)
    rows = [(written + i) % 7 for i in range(4)]
    torch.testing.assert_close(model.queue[rows], F.normalize(z1, dim=1))
    assert model.queue_id[rows].tolist() == ids.tolist()
    untouched = [r for r in range(7) if r not in rows]
    torch.testing.assert_close(model.queue[untouched], queue[untouched], rtol=0, atol=0)
    assert (model.queue_ptr.item(), model.queue_len.item()) == ((written + 4) % 7, min(written + 4, 7))


def test_gradient_reaches_every_prediction_of_the_batch():
    """NNCLR's direction: each prediction is a column of every neighbour's softmax, so a prediction's gradient
    depends on the other samples' neighbours; turned round (each prediction a row), a sample's prediction
    gradient depends on the other neighbours as negatives only. Checked against autograd of the formula written
    with log_softmax over dim 0 of the prediction-row logits (the transpose)."""
    g = torch.Generator().manual_seed(2)
    z1, z2 = (torch.randn(4, 16, generator=g) for _ in range(2))
    p1, p2 = (torch.randn(4, 16, generator=g, requires_grad=True) for _ in range(2))
    queue = F.normalize(torch.randn(7, 16, generator=g), dim=1)
    model = model_with_queue(queue, 7, list(range(100, 107)))
    loss, _ = model.loss(z1, z2, p1, p2, torch.arange(4), temperature=0.07)
    grads = torch.autograd.grad(loss, [p1, p2])
    nn1, nn2 = (queue[(F.normalize(z, dim=1) @ queue.T).argmax(dim=1)] for z in (z1, z2))

    def transposed(p, nn):  # logits[k, i] = p_k . nn_i / t; the softmax of neighbour i runs over k (dim 0)
        logits = F.normalize(p, dim=1) @ nn.T / 0.07
        return -logits.log_softmax(dim=0).diagonal().mean()

    expected = torch.autograd.grad((transposed(p1, nn2) + transposed(p2, nn1)) / 2, [p1, p2])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
        assert (got.norm(dim=1) > 0).all()


def test_own_queue_entry_is_not_the_neighbour():
    """Sample 11's embedding of an earlier step is in the queue (row 2), nearly equal to its present one: it is the
    neighbour without the mask, the most similar other row with it."""
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(2, 16, generator=g)
    queue = F.normalize(torch.randn(7, 16, generator=g), dim=1)
    queue[2] = F.normalize(z1[0] + 0.01 * torch.randn(16, generator=g), dim=0)
    ids = [20, 21, 11, 22, 23, 24, 25]
    others = [j for j in range(7) if j != 2]
    second = others[int((F.normalize(z1[:1], dim=1) @ queue[others].T).argmax())]
    for mask_own, expected in ((False, 11), (True, ids[second])):
        model = model_with_queue(queue, 7, ids)
        _, found = model.nearest_neighbours(F.normalize(z1, dim=1), torch.tensor([11, 30]), mask_own)
        assert found[0].item() == expected
    model = model_with_queue(queue, 1, [11])  # only the own entry written: no neighbour, the sample itself
    neighbours, found = model.nearest_neighbours(F.normalize(z1, dim=1), torch.tensor([11, 30]), True)
    assert found.tolist() == [-1, 11]
    torch.testing.assert_close(neighbours[0], F.normalize(z1, dim=1)[0])


def test_oracle_removes_the_negatives_of_the_same_action():
    g = torch.Generator().manual_seed(4)
    z1, z2, p1, p2 = (torch.randn(4, 16, generator=g) for _ in range(4))
    queue = F.normalize(torch.randn(7, 16, generator=g), dim=1)
    labels = torch.tensor([0, 1, 0, 2])
    same = (labels[:, None] == labels[None, :]).tolist()
    for softmax_over in ('predictions', 'neighbours'):
        model = model_with_queue(queue, 6, list(range(100, 107)))
        loss, _ = model.loss(z1, z2, p1, p2, torch.arange(4), 0.2, softmax_over, labels=labels)
        arrays = [t.numpy() for t in (z1, z2, p1, p2)]
        expected = numpy_nnclr_loss(*arrays, queue.numpy().astype(np.float64), 6, 0.2, softmax_over, same)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        assert expected != pytest.approx(numpy_nnclr_loss(*arrays, queue.numpy().astype(np.float64), 6, 0.2,
                                                          softmax_over))


def test_queue_counters_out_of_range_are_refused():
    model = NNCLR(**TINY_ENCODER, **HEADS, queue_size=8)
    state = model.state_dict()
    for key, value, words in (('queue_ptr', 8, 'queue_ptr 8 and queue_len 0 are impossible'),
                              ('queue_len', 9, 'queue_ptr 0 and queue_len 9 are impossible'),
                              ('queue_id', torch.arange(8), 'sample ids outside the 0 written rows')):
        with pytest.raises(RuntimeError, match=words):
            NNCLR(**TINY_ENCODER, **HEADS, queue_size=8).load_state_dict({**state, key: torch.as_tensor(value)})


def test_tuner_keeps_the_encoder_names_of_the_pretraining_checkpoint():
    def encoder_keys(model):
        return {k for k in model.state_dict() if not k.startswith(SELF_SUPERVISED_ONLY + ('head.',))}
    tuner = NNCLR(**TINY_ENCODER, **HEADS, queue_size=8)
    mamp = MAMP(**TINY_ENCODER, decoder_dim_feat=32, decoder_depth=1)
    classifier = SkeletonTransformer(**TINY_ENCODER)
    assert encoder_keys(tuner) == encoder_keys(mamp) == encoder_keys(classifier)
    assert set(tuner.state_dict()) - encoder_keys(tuner) == {
        k for k in tuner.state_dict() if k.startswith(('projector.', 'predictor.', 'queue'))}
    assert set(QUEUE_BUFFERS) <= set(tuner.state_dict())


def optimised(tune_blocks, depth=4):
    """{parameter name: lr scale} of what the tuning's optimiser moves, for a tiny tuner of `depth` blocks."""
    model = NNCLR(**{**TINY_ENCODER, 'depth': depth}, **HEADS, queue_size=8)
    main_tune.freeze(model, tune_blocks)
    args = argparse.Namespace(weight_decay=0.05, layer_decay=0.5, lr=1e-3, fused_optim=False)
    scale = {id(p): group['lr_scale'] for group in main_finetune.make_optimizer(model, args).param_groups
             for p in group['params']}
    return {name: scale[id(p)] for name, p in model.named_parameters() if id(p) in scale}


def test_upper_half_tuned_at_stars_rates():
    """--tune_blocks upper (STARS): blocks depth // 2 .. depth - 1 at lr x decay^(depth - i), the final norm and the
    heads at the lr; the embeddings and the lower blocks are not in the optimiser."""
    moved = optimised('upper')
    assert {name.split('.')[0] for name in moved} == {'blocks', 'norm', 'projector', 'predictor'}
    assert {name.split('.')[1] for name in moved if name.startswith('blocks.')} == {'2', '3'}
    assert moved['blocks.2.attn.qkv.weight'] == 0.5 ** 2 and moved['blocks.3.mlp.fc1.weight'] == 0.5
    assert moved['norm.weight'] == moved['projector.0.weight'] == moved['predictor.3.weight'] == 1.0
    assert {name.split('.')[1] for name in optimised(1) if name.startswith('blocks.')} == {'3'}
    assert {name.split('.')[1] for name in optimised('upper', depth=5) if name.startswith('blocks.')} == {'2', '3',
                                                                                                          '4'}


def test_all_blocks_tuned_with_layer_decay_down_to_the_embeddings():
    """--tune_blocks all: every parameter but the final norm's bias (invisible to the loss), lr scale
    decay^(depth + 1 - layer) with the embeddings as layer 0, heads at the full lr."""
    moved = optimised('all', depth=2)
    named = dict(NNCLR(**{**TINY_ENCODER, 'depth': 2}, **HEADS, queue_size=8).named_parameters())
    assert set(moved) == set(named) - {'norm.bias'}
    assert moved['joints_embed.proj.weight'] == moved['temp_embed'] == 0.5 ** 3
    assert moved['blocks.0.attn.qkv.weight'] == 0.5 ** 2
    assert moved['blocks.1.attn.qkv.weight'] == 0.5
    assert moved['projector.0.weight'] == moved['predictor.3.weight'] == 1.0


def test_cameras_from_sample_names():
    assert [purity.camera_of(n) for n in ('S001C002P003R002A013', '0005-L_0', '0299-R_12', 'train_7')] == [
        'C002', 'L', 'R', None]
    np.testing.assert_array_equal(purity.cameras(['0005-M_0', '0005-L_1', '0006-M_0']), [0, 1, 0])
    assert purity.cameras(['0005-M_0', 'train_1']) is None


def test_purity_counts_the_neighbours_from_the_queue():
    """Samples 0-3 (actions 0, 0, 1, 1; cameras L, M, L, L): 0's neighbour 1 shares the action, not the camera;
    1's neighbour 2 neither; 3's neighbour 2 both; 2 has none (-1) and is not counted: 2 of 3 and 1 of 3."""
    counter = purity.Purity([0, 0, 1, 1], ['0001-L_0', '0001-M_0', '0002-L_0', '0002-L_1'], torch.device('cpu'))
    counter.add(torch.tensor([0, 1]), torch.tensor([1, 2]))
    counter.add(torch.tensor([2, 3]), torch.tensor([-1, 2]))
    assert counter.result() == pytest.approx({'nn_action_purity': 200 / 3, 'nn_camera_purity': 100 / 3})
    assert purity.Purity([0], ['train_0'], torch.device('cpu')).result() == {}


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
    assert sorted(model['queue_id'].tolist()) == sorted(set(model['queue_id'].tolist())) and (
        0 <= model['queue_id']).all() and (model['queue_id'] < 24).all()
    start = load_checkpoint(tuning['start'])['model']
    # the one block is the upper half of a one-block encoder (depth // 2 = 0); the embeddings stay as pre-trained
    assert not torch.equal(model['blocks.0.attn.qkv.weight'], start['blocks.0.attn.qkv.weight'])
    for name in EMBEDDINGS + ('norm.bias',):  # the final norm's bias is invisible to the loss
        assert torch.equal(model[name], start[name]), name
    entries = log_entries(tuning['reference'])
    assert [entry['epoch'] for entry in entries] == [0, 1]
    assert all(np.isfinite(entry['train_loss']) for entry in entries)
    # purity of the neighbours: 4 classes over 24 samples; no camera in the names of this data
    assert all(0 <= entry['train_nn_action_purity'] <= 100 and 'train_nn_camera_purity' not in entry
               for entry in entries)
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


def test_resume_refuses_a_queue_out_of_range(tuning, tmp_path):
    """A checkpoint whose queue counters or sample ids do not fit: one line, nothing trained."""
    checkpoint = load_checkpoint(tuning['reference'] / 'checkpoint-0.pth')
    for i, (key, value, words) in enumerate((('queue_ptr', 99, 'queue_ptr 99 and queue_len 16 are impossible'),
                                             ('queue_id', torch.arange(16) + 40, 'the queue holds sample id 55'))):
        doctored = tmp_path / f'doctored{i}.pth'
        torch.save({**checkpoint, 'model': {**checkpoint['model'], key: torch.as_tensor(value)}}, doctored)
        with pytest.raises(SystemExit) as stop:
            tune_in_process(tuning['config'], tmp_path / f'out{i}', '--resume', doctored)
        message = str(stop.value.code)
        assert message.startswith('error: ') and '\n' not in message and words in message, message
        assert not (tmp_path / f'out{i}' / 'checkpoint-last.pth').exists()


def test_tune_blocks_all_moves_the_embeddings_too(tuning):
    """Today's earlier recipe (--tune_blocks all, each prediction's softmax over the neighbours, temperature
    0.1, no own-entry mask, total-norm clipping, cosine schedule) moves every weight the loss sees, the
    embeddings included, where the default leaves them as pre-trained."""
    out = tuning['root'] / 'all_blocks'
    tune_in_process(tuning['config'], out, '--finetune', tuning['start'], '--epochs', 1, '--tune_blocks', 'all',
                    '--nn_softmax_over', 'neighbours', '--no-mask_own_entry', '--temperature', 0.1,
                    '--clip_mode', 'total', '--lr_schedule', 'cosine')
    start, tuned = (load_checkpoint(path)['model'] for path in (tuning['start'], out / 'checkpoint-last.pth'))
    for name in EMBEDDINGS + ('blocks.0.attn.qkv.weight', 'norm.weight'):
        assert not torch.equal(tuned[name], start[name]), name
    assert torch.equal(tuned['norm.bias'], start['norm.bias'])
    saved = config.parse_args('tune', ['--config', str(out / 'config.yaml')])
    assert (saved.tune_blocks, saved.nn_softmax_over, saved.mask_own_entry) == ('all', 'neighbours', False)


@pytest.mark.slow
def test_demo_config_tunes_the_upper_half_only(tmp_path):
    """config/demo/tune.yaml for one epoch from a demo-sized start checkpoint, on NTU-named samples: the
    embeddings and blocks 0-1 of the 4 are bit-identical to the start, blocks 2-3 moved; log.txt and TensorBoard
    hold the purity of the neighbours by action and by camera."""
    npz = write_npz(tmp_path / 'NTU60_XSub.npz', num_train=24, num_test=8)
    with np.load(npz) as arrays:
        arrays = dict(arrays)
    for split, n in (('train', 24), ('test', 8)):
        arrays[f'names_{split}'] = np.array([f'S001C00{1 + i % 3}P00{1 + i % 2}R001A00{1 + i % 4}'
                                             for i in range(n)])
    np.savez(npz, **arrays)
    demo = config.parse_args('tune', ['--config', 'config/demo/tune.yaml'])
    model_args = {k: v for k, v in demo.model_args.items() if not k.startswith(('proj', 'pred'))}
    start = tmp_path / 'start.pth'
    torch.manual_seed(0)
    torch.save({'model': MAMP(**model_args, decoder_dim_feat=64, decoder_depth=1).state_dict()}, start)
    out = tmp_path / 'tune'
    argv = ['--config', 'config/demo/tune.yaml', '--data_path', str(npz), '--finetune', str(start), '--output_dir',
            str(out), '--device', 'cpu', '--epochs', '1', '--batch_size', '4', '--queue_size', '16', '--knn_every',
            '0']
    with one_thread():
        main_tune.main(config.parse_args('tune', argv))
    before, after = (load_checkpoint(path)['model'] for path in (start, out / 'checkpoint-last.pth'))
    assert demo.model_args['depth'] == 4
    for name in before:
        if name.startswith(EMBEDDINGS + ('blocks.0.', 'blocks.1.', 'norm.bias')):
            assert torch.equal(after[name], before[name]), name
        elif name.startswith(('blocks.2.', 'blocks.3.')) and not name.endswith(('attn.qkv.bias', 'proj.bias')):
            assert not torch.equal(after[name], before[name]), name
    entry, = log_entries(out)
    assert 0 <= entry['train_nn_action_purity'] <= 100 and 0 <= entry['train_nn_camera_purity'] <= 100
    tags = EventAccumulator(str(out)).Reload().Tags()['scalars']
    assert {'train/nn_action_purity', 'train/nn_camera_purity'} <= set(tags)


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
    assert torch.equal(b['queue_id'], a['queue_id'])
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
    dropped = (f"load_pretrained: dropped from {tuned}: queue: 4 tensors, projector: {n_projector} tensors, "
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
             (['--opts', 'train_feeder_args.views=1'], 'two views of each sample'),
             (['--tune_blocks', '2'], '--tune_blocks 2: the encoder has 1 block(s)'),
             (['--tune_blocks', 'lower'], "argument --tune_blocks: expected all, upper or an integer >= 1, got lower"),
             (['--nn_softmax_over', 'rows'], "argument --nn_softmax_over: invalid choice: 'rows'")]
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
