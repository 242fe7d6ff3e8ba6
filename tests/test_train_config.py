"""Config resolution, published hyper-parameters, schedules, parameter groups, samplers and the eval loop."""
import argparse
import json
import math
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn

import main_finetune
import main_linprobe
import main_pretrain
from model_transformer import SkeletonTransformer
from train_fixtures import ROOT, TINY_ENCODER, write_config, write_npz
from util import config, data, engine, evaluation, lr_sched, output, runner

DATASETS = {'ntu60_xsub': 60, 'ntu60_xview': 60, 'ntu120_xsub': 120, 'ntu120_xset': 120, 'pku_v1': 51, 'pku_v2': 51}
DATA_FILES = {'ntu60_xsub': 'data/ntu/NTU60_XSub.npz', 'ntu60_xview': 'data/ntu/NTU60_XView.npz',
              'ntu120_xsub': 'data/ntu120/NTU120_XSub.npz', 'ntu120_xset': 'data/ntu120/NTU120_XSet.npz',
              'pku_v1': 'data/pku_v1/PKUv1_XSub.npz', 'pku_v2': 'data/pku_v2/PKUv2_XSub.npz'}
PUBLISHED = sorted(p for name in [*DATASETS, 'transfer'] for p in (ROOT / 'config' / name).glob('*.yaml'))


def protocol_of(path):
    prefixes = {'pretrain': 'pretrain', 'tune': 'tune', 'fewshot': 'fewshot', 'linear': 'linprobe', 'detect': 'detect'}
    return next((protocol for prefix, protocol in prefixes.items() if path.stem.startswith(prefix)), 'finetune')


def error_of(excinfo):
    return str(excinfo.value.code)


@pytest.fixture
def npz(tmp_path):
    return write_npz(tmp_path / 'NTU60_XSub.npz')


def test_every_dataset_has_every_protocol():
    for name in DATASETS:
        stems = {p.stem for p in (ROOT / 'config' / name).glob('*.yaml')}
        assert stems - {'fewshot', 'detect'} == {'pretrain_mamp', 'pretrain_mae', 'linear', 'finetune', 'semi_1',
                                                 'semi_10', 'scratch', 'semi_1_scratch', 'semi_10_scratch', 'tune'}
        assert ('detect' in stems) == name.startswith('pku')  # detection in PKU-MMD's untrimmed recordings
        assert ('fewshot' in stems) == (name == 'ntu60_xsub')  # NTU-60 encoders on NTU-120's other actions
    assert {p.stem for p in (ROOT / 'config' / 'transfer').glob('*.yaml')} == {
        'ntu60_xsub_to_pku_v2', 'ntu120_xsub_to_pku_v2', 'pku_v1_to_pku_v2'}


@pytest.mark.parametrize('path', sorted((ROOT / 'config').glob('*/*.yaml')), ids=lambda p: f'{p.parent.name}/{p.stem}')
def test_every_config_resolves_with_its_entry_point(path):
    args = config.parse_args(protocol_of(path), ['--config', str(path)])
    assert args.train_feeder_args['window_size'] == args.model_args['num_frames']


@pytest.mark.parametrize('path', PUBLISHED, ids=lambda p: f'{p.parent.name}/{p.stem}')
def test_configs_resolve_with_published_values(path):
    """Each config parses with its entry point; class counts, data files and key values are as published."""
    args = config.parse_args(protocol_of(path), ['--config', str(path)])
    dataset = 'pku_v2' if path.parent.name == 'transfer' else path.parent.name
    ntu120 = dataset.startswith('ntu120')
    data_file = DATA_FILES[dataset]
    if path.stem == 'fewshot':  # the 60 actions NTU-120 adds, all their cross-subject samples (STARS)
        assert args.held_out_actions == list(range(61, 121)) and args.model_args['num_classes'] == 120
        assert (args.val_feeder_args['data_path'], args.fewshot_splits) == (DATA_FILES['ntu120_xsub'],
                                                                            ['train', 'test'])
        return
    if path.stem == 'detect':  # Simple-Skeleton-Detection's protocol (docs/detection.md)
        untrimmed = data_file.replace('.npz', '_untrimmed.npz')
        assert args.train_feeder_args['data_path'] == args.val_feeder_args['data_path'] == untrimmed
        assert args.model == 'model_detect.FrameDetector' and args.model_args['num_classes'] == 52
        assert args.train_feeder_args['window_size'] == args.val_feeder_args['window_size'] == 120
        assert args.train_feeder_args['train_windows'] == [48, 64, 80]
        assert args.train_feeder_args['samples_per_recording'] == 16
        assert (args.val_feeder_args['window'], args.val_feeder_args['hop']) == (64, 1)
        assert (args.lr, args.lr_steps, args.epochs, args.batch_size, args.weight_decay) == (0.01, [40], 60, 64, 0.0)
        assert (args.nesterov, args.warmup_epochs, args.smooth, args.threshold) == (True, 0, 20, 0.4)
        return
    assert args.train_feeder_args['data_path'] == data_file
    assert args.train_feeder_args['window_size'] == args.model_args['num_frames'] == 120
    if protocol_of(path) == 'pretrain':
        mae = path.stem == 'pretrain_mae'
        assert args.model == 'model_mamp.MAMP' and args.model_args['target'] == ('joints' if mae else 'motion')
        assert args.model_args['decoder_depth'] == (3 if dataset.startswith('ntu60') else 5)
        assert args.motion_aware_tau == (0.0 if mae else 0.75 if ntu120 else 0.80)
        assert (args.mask_ratio, args.epochs, args.warmup_epochs, args.batch_size) == (0.9, 400, 20, 32)
        assert (args.lr, args.min_lr, args.weight_decay) == (1e-3, 5e-4, 0.05)
        return
    if path.stem == 'tune':  # NNCLR's head sizes, STARS' settings; two views from the training feeder
        assert args.model == 'model_tune.NNCLR' and args.train_feeder_args['views'] == 2
        assert [args.model_args[k] for k in ('proj_hidden_dim', 'proj_dim', 'pred_hidden_dim')] == [2048, 256, 4096]
        assert (args.temperature, args.model_args['drop_path_rate']) == (0.07, 0.0)
        assert (args.tune_blocks, args.nn_softmax_over, args.mask_own_entry, args.oracle_mask_same_action) == (
            'upper', 'predictions', True, False)
        assert (args.epochs, args.batch_size, args.warmup_epochs, args.lr_schedule) == (10, 32, 0, 'constant')
        assert (args.clip_grad, args.clip_mode, args.weight_decay) == (3.0, 'per_tensor', 0.01)
        pku = dataset.startswith('pku')
        assert (args.lr, args.layer_decay) == ((1e-4, 0.35) if pku else (1e-3, 0.40 if ntu120 else 0.45))
        assert args.val_feeder_args['data_path'] == data_file and args.val_feeder_args['p_interval'] == [0.95]
        return
    assert args.model == 'model_transformer.SkeletonTransformer'
    assert args.model_args['num_classes'] == DATASETS[dataset]
    assert args.val_feeder_args['split'] == 'test' and args.val_feeder_args['data_path'] == data_file
    if path.stem == 'linear':
        assert args.model_args['protocol'] == 'linprobe'
        assert (args.epochs, args.weight_decay) == (100, 0.0)  # batch and lr: tests/test_published_runs.py
        return
    assert args.model_args['protocol'] == 'finetune' and args.model_args['drop_path_rate'] == 0.3
    assert (args.epochs, args.warmup_epochs, args.batch_size, args.lr, args.min_lr) == (100, 5, 24, 3e-4, 1e-5)
    assert (args.weight_decay, args.smoothing) == (0.05, 0.1)
    assert args.layer_decay == (1.0 if path.stem.endswith('scratch') else 0.8)
    if path.stem.startswith('semi'):
        assert args.train_feeder_args['data_ratio'] == int(path.stem.split('_')[1]) / 100


def test_precedence_defaults_config_cli_opts(npz, tmp_path):
    cfg = write_config(tmp_path / 'c.yaml', 'ntu60_xsub/finetune.yaml', npz, epochs=7)
    args = config.parse_args('finetune', ['--config', str(cfg)])
    assert (args.epochs, args.batch_size, args.accum_iter) == (7, 4, 1)  # tiny config, config, default
    args = config.parse_args('finetune', ['--config', str(cfg), '--epochs', '3', '--data_path', 'x.npz', '--opts',
                                          'model_args.depth=2', 'epochs=5', 'val_feeder_args.window_size=24',
                                          'lr=1e-2'])
    assert args.epochs == 5 and args.lr == 0.01 and args.model_args['depth'] == 2
    assert args.model_args['dim_feat'] == TINY_ENCODER['dim_feat']  # other nested values are kept
    assert args.train_feeder_args['data_path'] == args.val_feeder_args['data_path'] == 'x.npz'
    assert args.train_feeder_args['p_interval'] == [0.5, 1]  # from the _base_ config


def test_several_opts_add_up(npz, tmp_path):
    """scripts/ensemble.sh gives the stream's --opts and then the user's: the second must not replace the first."""
    cfg = write_config(tmp_path / 'c.yaml', 'ntu60_xsub/finetune.yaml', npz)
    args = config.parse_args('finetune', ['--config', str(cfg), '--opts', 'train_feeder_args.bone=true',
                                          'val_feeder_args.bone=true', '--opts', 'epochs=5'])
    assert args.train_feeder_args['bone'] is True and args.val_feeder_args['bone'] is True and args.epochs == 5


def test_resume_drops_a_log_line_cut_short_and_a_failed_log_write_is_one_line(tmp_path):
    lines = [json.dumps({'epoch': e, 'train_loss': 1.0 / (e + 1)}) for e in range(3)]
    (tmp_path / 'log.txt').write_text('\n'.join(lines) + '\n{"epoch": 3, "train_lo')
    args = argparse.Namespace(output_dir=str(tmp_path), start_epoch=2)
    runner.trim_log(args)
    assert (tmp_path / 'log.txt').read_text() == lines[0] + '\n' + lines[1] + '\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['log.txt']

    (tmp_path / 'log.txt').unlink()
    (tmp_path / 'log.txt').mkdir()  # a log.txt that cannot be appended to
    with pytest.raises(SystemExit, match=f"error: cannot write {tmp_path / 'log.txt'}: Is a directory"):
        output.log_stats(args, {'epoch': 2})


def test_blr_on_command_line_replaces_config_lr(npz, tmp_path):
    cfg = write_config(tmp_path / 'c.yaml', 'ntu60_xsub/finetune.yaml', npz)
    args = config.parse_args('finetune', ['--config', str(cfg), '--blr', '0.02', '--batch_size', '8',
                                          '--accum_iter', '2', '--output_dir', str(tmp_path / 'out'), '--device', 'cpu'])
    runner.setup(args)
    assert args.lr == pytest.approx(0.02 * 8 * 2 / 256)
    args = config.parse_args('finetune', ['--config', str(cfg), '--blr', '0.02', '--lr', '0.5'])
    assert args.lr == 0.5


def test_resolved_config_round_trips(npz, tmp_path):
    cfg = write_config(tmp_path / 'c.yaml', 'ntu60_xsub/pretrain_mamp.yaml', npz)
    args = config.parse_args('pretrain', ['--config', str(cfg), '--opts', 'model_args.depth=2', '--amp', 'bf16'])
    config.save_config(args, tmp_path / 'resolved.yaml')
    again = config.parse_args('pretrain', ['--config', str(tmp_path / 'resolved.yaml')])
    assert {k: v for k, v in vars(again).items() if k not in ('config', 'opts')} == {
        k: v for k, v in vars(args).items() if k not in ('config', 'opts')}


@pytest.mark.parametrize('entry, message', [
    ({'smoothing': 0.1}, "unknown key 'smoothing'"),  # a fine-tuning key in a pre-training config
    ({'model_args': {'dpeth': 2}}, "unknown key 'dpeth' in model_args"),
    ({'train_feeder_args': {'windows_size': 24}}, "unknown key 'windows_size' in train_feeder_args"),
    ({'epochs': 'many'}, "epochs: expected an integer >= 1, got many"),
    ({'amp': 'fp8'}, "amp: expected one of none, bf16, fp16"),
    ({'batch_size': 2.5}, "batch_size: expected an integer >= 1, got 2.5"),
    ({'model_args': [1, 2]}, "model_args must be a mapping, got [1, 2]"),
])
def test_bad_config_entry_names_key_and_file(npz, tmp_path, entry, message):
    cfg = write_config(tmp_path / 'bad.yaml', 'ntu60_xsub/pretrain_mamp.yaml', npz, **entry)
    with pytest.raises(SystemExit) as excinfo:
        config.parse_args('pretrain', ['--config', str(cfg)])
    assert message in error_of(excinfo) and str(cfg) in error_of(excinfo)


def test_unknown_opts_key_and_missing_config(tmp_path):
    with pytest.raises(SystemExit) as excinfo:
        config.parse_args('pretrain', ['--config', str(tmp_path / 'nope.yaml')])
    assert error_of(excinfo).startswith(f"error: config file {tmp_path / 'nope.yaml'} not found")
    cfg = ROOT / 'config/ntu60_xsub/pretrain_mamp.yaml'
    with pytest.raises(SystemExit) as excinfo:
        config.parse_args('pretrain', ['--config', str(cfg), '--opts', 'epoch=3'])
    assert "--opts epoch=3: unknown key 'epoch'" in error_of(excinfo)


def test_missing_data_file_and_missing_cuda_are_one_line(npz, tmp_path):
    cfg = write_config(tmp_path / 'c.yaml', 'ntu60_xsub/finetune.yaml', tmp_path / 'missing.npz')
    args = config.parse_args('finetune', ['--config', str(cfg)])
    with pytest.raises(SystemExit) as excinfo:
        data.build_dataset(args, 'train_feeder_args')
    message = error_of(excinfo)
    assert f"data file {tmp_path / 'missing.npz'} not found (train_feeder_args.data_path in {cfg})" in message
    assert '\n' not in message
    if not torch.cuda.is_available():
        args = config.parse_args('finetune', ['--config', str(cfg), '--device', 'cuda'])
        with pytest.raises(SystemExit) as excinfo:
            runner.setup(args)
        assert 'CUDA is not available' in error_of(excinfo) and '--device cpu' in error_of(excinfo)


def test_lr_schedule_warmup_then_half_cycle_cosine():
    args = config.argparse.Namespace(lr=1.0, min_lr=0.1, warmup_epochs=2, epochs=10)
    params = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{'params': params[:1], 'lr_scale': 0.5}, {'params': params[1:]}], lr=0.)
    for epoch, expected in [(0, 0.), (0.5, 0.25), (2, 1.0), (6, 0.55), (10, 0.1),
                            (4.5, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 2.5 / 8)))]:
        assert lr_sched.adjust_learning_rate(optimizer, epoch, args) == pytest.approx(expected)
        assert [g['lr'] for g in optimizer.param_groups] == pytest.approx([expected * 0.5, expected])


def tiny_classifier(protocol='finetune', depth=2):
    return SkeletonTransformer(**{**TINY_ENCODER, 'depth': depth, 'num_classes': 60, 'protocol': protocol})


def test_finetune_layer_decay_and_weight_decay_groups():
    model = tiny_classifier(depth=3)
    args = config.argparse.Namespace(weight_decay=0.05, layer_decay=0.8, lr=1e-3, fused_optim=True)
    optimizer = main_finetune.make_optimizer(model, args)
    scale, decay = {}, {}
    for group in optimizer.param_groups:
        for p in group['params']:
            scale[id(p)], decay[id(p)] = group['lr_scale'], group['weight_decay']
    for name, p in model.named_parameters():
        layer = (0 if name.split('.')[0] in ('joints_embed', 'temp_embed', 'pos_embed')
                 else int(name.split('.')[1]) + 1 if name.startswith('blocks.') else 4)
        assert scale[id(p)] == pytest.approx(0.8 ** (4 - layer)), name
        assert decay[id(p)] == (0. if p.ndim == 1 else 0.05), name  # 1-D: biases and norms
    assert decay[id(model.temp_embed)] == 0.05 and decay[id(model.pos_embed)] == 0.05
    assert sum(len(g['params']) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_pretrain_optimizer_betas_and_weight_decay():
    from model_mamp import MAMP
    model = MAMP(**TINY_ENCODER, decoder_dim_feat=32, decoder_depth=1)
    args = config.argparse.Namespace(weight_decay=0.05, lr=1e-3, fused_optim=False)
    optimizer = main_pretrain.make_optimizer(model, args)
    decayed = {id(p) for g in optimizer.param_groups if g['weight_decay'] == 0.05 for p in g['params']}
    assert optimizer.defaults['betas'] == (0.9, 0.95) and optimizer.defaults['foreach']
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1 and not name.endswith('.bias')), name
    assert id(model.mask_token) in decayed


def test_linprobe_trains_only_the_head_and_keeps_the_encoder_in_eval_mode():
    model = tiny_classifier('linprobe')
    main_linprobe.prepare_model(model)
    bn = model.head.fc[0]
    assert isinstance(bn, nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ['head.fc.1.weight', 'head.fc.1.bias']
    engine.set_train_mode(model)
    assert model.head.training and bn.training
    assert not any(m.training for m in [model.joints_embed, model.norm, *model.blocks, *model.blocks[0].modules()])
    args = config.argparse.Namespace(lr=0.1, weight_decay=0., fused_optim=True)
    optimizer = main_linprobe.make_optimizer(model, args)
    assert optimizer.defaults['momentum'] == 0.9
    assert {id(p) for g in optimizer.param_groups for p in g['params']} == {id(p) for p in model.head.parameters()}


def test_shards_cover_the_test_set_exactly_once():
    for n, world in [(11, 2), (10, 3), (5, 8)]:
        shards = [list(data.ShardSampler(n, rank, world)) for rank in range(world)]
        assert sorted(sum(shards, [])) == list(range(n))


class FixedLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[x[:, 0, 0, 0, 0].long()]


def test_evaluate_counts_every_sample_once():
    """Top-1/top-5 accuracy and mean cross-entropy over 13 samples in batches of 4, computed with NumPy."""
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(13, 7)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 7, 13))
    x = torch.zeros(13, 3, 1, 1, 1)
    x[:, 0, 0, 0, 0] = torch.arange(13)
    loader = torch.utils.data.DataLoader(list(zip(x, labels, range(13))), batch_size=4)
    args = config.argparse.Namespace(amp='none', dist_eval=False, model_args={'num_classes': 7})
    stats = evaluation.evaluate(loader, FixedLogits(logits), torch.device('cpu'), args)
    order = np.argsort(-logits.numpy(), axis=1)
    ref_loss = -np.mean(torch.log_softmax(logits.double(), 1).numpy()[np.arange(13), labels.numpy()])
    assert stats['num_samples'] == 13
    assert stats['acc1'] == pytest.approx(100 * np.mean(order[:, 0] == labels.numpy()))
    assert stats['acc5'] == pytest.approx(100 * np.mean((order[:, :5] == labels.numpy()[:, None]).any(1)))
    assert stats['loss'] == pytest.approx(ref_loss, rel=1e-6)


def test_seeded_items_depend_on_seed_epoch_and_index_only(npz):
    from feeder.feeder_ntu import Feeder
    items = data.SeededItems(Feeder(npz, 'train', p_interval=[0.5, 1], window_size=24, random_rot=True), seed=3)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = items[(2, 5)][0]
    assert torch.equal(torch.rand(1), before)  # the caller's random stream is untouched
    items[(2, 1)]
    assert np.array_equal(items[(2, 5)][0], a)  # whatever was drawn in between
    assert not np.array_equal(items[(3, 5)][0], a)
    assert not np.array_equal(data.SeededItems(items.dataset, seed=4)[(2, 5)][0], a)
    # a loader batch (__getitems__: the feeder's batched augmentation) gives the same items
    keys = [(2, 5), (2, 1), (3, 5), (2, 0)]
    batch = items.__getitems__(keys)
    for key, item in zip(keys, batch):
        assert np.array_equal(item[0], items[key][0]) and item[1:] == items[key][1:]
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    items.__getitems__(keys)
    assert torch.equal(torch.rand(1), before)


@pytest.mark.parametrize('script, env, expected', [
    ('pretrain.sh', {}, 'main_pretrain.py --config config/ntu60_xsub/pretrain_mamp.yaml '
                        '--output_dir output/ntu60_xsub/pretrain_mamp --auto_resume'),
    ('pretrain.sh', {'MODEL': 'mae', 'DATASET': 'pku_v1'},
     'main_pretrain.py --config config/pku_v1/pretrain_mae.yaml --output_dir output/pku_v1/pretrain_mae --auto_resume'),
    ('linprobe.sh', {'DATASET': 'ntu120_xset'},
     'main_linprobe.py --config config/ntu120_xset/linear.yaml --output_dir output/ntu120_xset/linear '
     '--dist_eval --auto_resume'),
    ('finetune.sh', {'PRETRAIN': 'official.pth'},
     'main_finetune.py --config config/ntu60_xsub/finetune.yaml --output_dir output/ntu60_xsub/finetune '
     '--finetune official.pth --dist_eval --auto_resume'),
    ('transfer.sh', {'SOURCE': 'ntu120_xsub'},
     'main_finetune.py --config config/transfer/ntu120_xsub_to_pku_v2.yaml '
     '--output_dir output/transfer/ntu120_xsub_to_pku_v2 --dist_eval --auto_resume'),
    ('tune.sh', {'DATASET': 'pku_v1', 'PRETRAIN': 'mamp.pth'},
     'main_tune.py --config config/pku_v1/tune.yaml --output_dir output/pku_v1/tune --finetune mamp.pth --auto_resume'),
    ('scratch.sh', {'OUTPUT_DIR': '/tmp/x'},
     'main_finetune.py --config config/ntu60_xsub/scratch.yaml --output_dir /tmp/x --dist_eval --auto_resume'),
])
def test_scripts_launch_torchrun_with_their_config(tmp_path, script, env, expected):
    """Each script runs torchrun on an existing config; a fake torchrun on PATH prints its arguments."""
    fake = tmp_path / 'torchrun'
    fake.write_text('#!/usr/bin/env bash\necho "$@"\n')
    fake.chmod(0o755)
    run_env = {**os.environ, 'PATH': f"{tmp_path}:{os.environ['PATH']}", 'GPUS': '2', **env}
    result = subprocess.run(['bash', str(ROOT / 'scripts' / script), '--epochs', '3'], env=run_env,
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'--standalone --nproc_per_node=2 {expected} --epochs 3'
    assert (ROOT / expected.split('--config ')[1].split()[0]).is_file()


def test_multi_node_launch_needs_the_master_address(tmp_path):
    fake = tmp_path / 'torchrun'
    fake.write_text('#!/usr/bin/env bash\necho "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, 'PATH': f"{tmp_path}:{os.environ['PATH']}", 'GPUS': '8', 'NNODES': '2', 'NODE_RANK': '1'}
    result = subprocess.run(['bash', str(ROOT / 'scripts/pretrain.sh')], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and 'MASTER_ADDR' in result.stderr
    result = subprocess.run(['bash', str(ROOT / 'scripts/pretrain.sh')], env={**env, 'MASTER_ADDR': '10.0.0.1'},
                            capture_output=True, text=True)
    assert result.stdout.startswith('--nnodes=2 --node_rank=1 --nproc_per_node=8 --master_addr=10.0.0.1 '
                                    '--master_port=29500 main_pretrain.py')
