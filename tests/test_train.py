"""End-to-end runs of the three entry points on CPU with tiny models and generated data."""
import argparse
import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import main_finetune
import main_linprobe
import util.lr_sched
from conftest import shared_path
from feeder.feeder_ntu import Feeder
from train_fixtures import (ROOT, assert_same_training_state, log_entries, one_thread, pretrain_in_process, run_entry,
                            scalar_tags, write_config)
from util import config
from util.checkpoint import load_checkpoint
from util.scores import load_scores, mean_class_accuracy

pytestmark = pytest.mark.slow
CHECKPOINT_KEYS = {'model', 'optimizer', 'epoch', 'scaler', 'args'}


@pytest.fixture(scope='module')
def pretrained(work):
    """One pre-training epoch through scripts/pretrain.sh (torchrun, one process)."""
    out = work['root'] / 'pretrain'
    env = {**os.environ, 'GPUS': '1', 'CONFIG': str(work['pretrain']), 'OUTPUT_DIR': str(out),
           'OMP_NUM_THREADS': '1'}
    result = subprocess.run(['bash', 'scripts/pretrain.sh', '--device', 'cpu'], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def linprobed(work, pretrained):
    out = work['root'] / 'linear'
    run_entry('main_linprobe.py', '--config', work['linear'], '--output_dir', out,
              '--finetune', pretrained / 'checkpoint-last.pth')
    return out


@pytest.fixture(scope='module')
def finetuned(work, pretrained):
    out = work['root'] / 'finetune'
    run_entry('main_finetune.py', '--config', work['finetune'], '--output_dir', out,
              '--finetune', pretrained / 'checkpoint-last.pth')
    return out


def check_outputs(out, protocol, log_keys, tags):
    """One epoch wrote checkpoint-0 and -last (published format), log.txt, events and a reusable config."""
    for name in ('checkpoint-0.pth', 'checkpoint-last.pth'):
        checkpoint = load_checkpoint(out / name)
        assert CHECKPOINT_KEYS <= set(checkpoint) and checkpoint['epoch'] == 0
    log = log_entries(out)
    assert len(log) == 1 and log_keys <= set(log[0]) and log[0]['epoch'] == 0
    trainable = sum(p.numel() for p in checkpoint['model'].values()) if protocol == 'pretrain' else None
    if trainable is not None:
        assert log[0]['n_parameters'] == trainable
    events, found = scalar_tags(out)
    assert tags <= found
    assert len(events.Scalars('perf/epoch_time_s')) == 1
    args = config.parse_args(protocol, ['--config', str(out / 'config.yaml')])
    assert args.output_dir == str(out) and args.model_args == checkpoint['args']['model_args']
    return checkpoint, log, events


TRAIN_TAGS = {'train/loss', 'train/lr', 'train_step/loss', 'train_step/lr', 'perf/samples_per_s', 'perf/epoch_time_s'}
TEST_TAGS = TRAIN_TAGS | {'test/loss', 'test/acc1', 'test/acc5', 'test/mean_class_acc'}
CLASSIFY_KEYS = {'train_loss', 'train_lr', 'test_loss', 'test_acc1', 'test_acc5', 'test_mean_class_acc', 'epoch',
                 'n_parameters'}


def test_pretrain_epoch_outputs(pretrained):
    _, log, events = check_outputs(pretrained, 'pretrain', {'train_loss', 'train_lr', 'epoch', 'n_parameters'},
                                   TRAIN_TAGS)
    logged = [e.value for e in events.Scalars('train_step/loss')]
    assert len(logged) == 3  # 6 steps, print_freq 2
    assert log[0]['train_loss'] == pytest.approx(sum(logged) / 3, rel=1e-5)
    assert [e.value for e in events.Scalars('train/loss')] == [pytest.approx(log[0]['train_loss'])]


def test_linprobe_epoch_outputs_and_frozen_encoder(pretrained, linprobed):
    checkpoint, log, _ = check_outputs(linprobed, 'linprobe', CLASSIFY_KEYS, TEST_TAGS)
    encoder = load_checkpoint(pretrained / 'checkpoint-last.pth')['model']
    probe = checkpoint['model']
    shared = [k for k in probe if not k.startswith('head.')]
    assert shared and all(torch.equal(probe[k], encoder[k]) for k in shared)
    assert log[0]['n_parameters'] == probe['head.fc.1.weight'].numel() + probe['head.fc.1.bias'].numel()
    assert probe['head.fc.0.running_mean'].abs().sum() > 0  # the BatchNorm saw the features
    assert (checkpoint['best_acc1'], checkpoint['best_epoch']) == (log[0]['test_acc1'], 0) == (
        log[0]['best_acc1'], log[0]['best_epoch'])


def read_per_class(path):
    """per_class.csv as {class: (action, samples, correct, accuracy)}."""
    with open(path, newline='') as f:
        return {int(row['class']): (row['action'], int(row['samples']), int(row['correct']), float(row['accuracy']))
                for row in csv.DictReader(f)}


def test_finetune_epoch_outputs_and_eval(work, pretrained, finetuned):
    checkpoint, log, events = check_outputs(finetuned, 'finetune', CLASSIFY_KEYS, TEST_TAGS)
    encoder = load_checkpoint(pretrained / 'checkpoint-last.pth')['model']
    assert not torch.equal(checkpoint['model']['blocks.0.attn.qkv.weight'], encoder['blocks.0.attn.qkv.weight'])
    assert log[0]['test_num_samples'] == 11
    assert events.Scalars('test/acc1')[0].value == pytest.approx(log[0]['test_acc1'])
    # the losses inside the epoch by optimiser step (every second of 6), what is measured after epoch 0 at 0
    assert [e.step for e in events.Scalars('train_step/loss')] == [2, 4, 6]
    assert [e.step for e in events.Scalars('test/mean_class_acc')] == [0]
    assert [(e.step, e.value) for e in events.Scalars('train/loss')] == [(0, pytest.approx(log[0]['train_loss']))]
    per_class = read_per_class(finetuned / 'per_class.csv')  # the final evaluation, with NTU-60 action names
    assert sorted(per_class) == [0, 1, 2, 3] and [v[1] for v in per_class.values()] == [3, 3, 3, 2]
    assert per_class[0][0] == 'drink water' and sum(v[2] for v in per_class.values()) == round(
        log[0]['test_acc1'] * 11 / 100)
    assert np.mean([v[3] for v in per_class.values()]) == pytest.approx(log[0]['test_mean_class_acc'], abs=0.01)
    result = run_entry('main_finetune.py', '--config', work['finetune'], '--output_dir', finetuned, '--eval',
                       '--resume', finetuned / 'checkpoint-last.pth')
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats['test_acc1'] == log[-1]['test_acc1'] and stats['test_acc5'] == log[-1]['test_acc5']
    assert stats['test_mean_class_acc'] == log[-1]['test_mean_class_acc']
    assert stats['test_loss'] == pytest.approx(log[-1]['test_loss'], rel=1e-6)
    assert len(log_entries(finetuned)) == 1  # evaluating wrote nothing
    assert '"lr"' not in result.stdout and ' lr ' not in result.stdout  # an evaluation has no optimiser settings


def test_eval_with_save_scores_reads_the_test_set_once(work, finetuned, tmp_path, monkeypatch):
    """--eval --save_scores: one pass over the test loader gives the stats, scores.npz and per_class.csv, with
    the numbers of --eval alone."""
    reads = []
    for method, count in (('__getitem__', lambda index: 1), ('__getitems__', len)):
        real = getattr(Feeder, method)

        def counted(self, indices, real=real, count=count):
            if self.split == 'test':
                reads.append(count(indices))
            return real(self, indices)
        monkeypatch.setattr(Feeder, method, counted)
    common = ['--config', str(work['finetune']), '--device', 'cpu', '--eval', '--resume',
              str(finetuned / 'checkpoint-last.pth')]
    with one_thread():
        alone = main_finetune.main(config.parse_args('finetune', [*common, '--output_dir', str(tmp_path / 'a')]))
        assert sum(reads) == 11
        reads.clear()
        out = tmp_path / 'scores'
        saved = main_finetune.main(config.parse_args('finetune', [*common, '--output_dir', str(out),
                                                                  '--save_scores']))
    assert sum(reads) == 11  # every test sample read once: one pass
    assert not (tmp_path / 'a').exists()  # --eval alone writes nothing
    assert {k: saved[k] for k in ('acc1', 'acc5', 'mean_class_acc', 'num_samples')} == {
        k: alone[k] for k in ('acc1', 'acc5', 'mean_class_acc', 'num_samples')}
    assert saved['loss'] == pytest.approx(alone['loss'], rel=1e-6)
    _, logits, labels = load_scores(out / 'scores.npz')
    assert saved['mean_class_acc'] == pytest.approx(mean_class_accuracy(logits, labels), abs=1e-9)
    per_class = read_per_class(out / 'per_class.csv')
    assert np.mean([v[3] for v in per_class.values()]) == pytest.approx(saved['mean_class_acc'], abs=0.01)


@pytest.fixture(scope='module')
def reference(work):
    """Two uninterrupted pre-training epochs."""
    out = work['root'] / 'reference'
    pretrain_in_process(work, out)
    return out


def test_resume_gives_the_uninterrupted_weights(work, reference):
    out = work['root'] / 'resumed'
    pretrain_in_process(work, out, '--resume', reference / 'checkpoint-0.pth')
    assert_same_training_state(out / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')
    assert [r['train_loss'] for r in log_entries(out)] == [log_entries(reference)[1]['train_loss']]


def test_numbered_checkpoints_follow_the_published_layout_and_resume(work):
    """checkpoint-<epoch>.pth at epochs 0, N, 2N, ... and the last; --resume and --auto_resume find them."""
    schedule = ('--epochs', '5', '--save_every', '2')
    full = work['root'] / 'five_epochs'
    pretrain_in_process(work, full, *schedule)
    assert sorted(p.name for p in full.glob('*.pth')) == [
        'checkpoint-0.pth', 'checkpoint-2.pth', 'checkpoint-4.pth', 'checkpoint-last.pth']
    assert [load_checkpoint(full / f'checkpoint-{e}.pth')['epoch'] for e in (0, 2, 4)] == [0, 2, 4]
    resumed = work['root'] / 'five_epochs_resumed'
    pretrain_in_process(work, resumed, *schedule, '--resume', full / 'checkpoint-2.pth')
    assert [r['epoch'] for r in log_entries(resumed)] == [3, 4]
    assert_same_training_state(resumed / 'checkpoint-4.pth', full / 'checkpoint-4.pth')
    auto = work['root'] / 'five_epochs_auto'
    auto.mkdir()
    for epoch in (0, 2):  # no checkpoint-last.pth: the newest numbered checkpoint is the one to continue
        shutil.copyfile(full / f'checkpoint-{epoch}.pth', auto / f'checkpoint-{epoch}.pth')
    pretrain_in_process(work, auto, *schedule, '--auto_resume')
    assert [r['epoch'] for r in log_entries(auto)] == [3, 4]
    assert_same_training_state(auto / 'checkpoint-last.pth', full / 'checkpoint-last.pth')


class SimulatedCrash(Exception):
    pass


@pytest.mark.parametrize('crash', ['while writing a checkpoint', 'between the two checkpoint files',
                                   'in the middle of the epoch'])
def test_crash_then_auto_resume_loses_at_most_that_epoch(work, reference, monkeypatch, crash):
    """A crash in epoch 1 leaves only complete checkpoints and checkpoint-last.pth at epoch 0; --auto_resume
    redoes epoch 1 and ends with the weights and log of the uninterrupted run."""
    out = work['root'] / crash.replace(' ', '_')
    if crash == 'while writing a checkpoint':
        real_save, calls = torch.save, []

        def save(obj, path, *args, **kwargs):
            calls.append(path)
            if len(calls) == 2:  # epoch 1: half a file, then the process dies
                Path(path).write_bytes(b'PK\x03\x04 half a checkpoint')
                raise SimulatedCrash
            return real_save(obj, path, *args, **kwargs)
        monkeypatch.setattr(torch, 'save', save)
    elif crash == 'between the two checkpoint files':
        real_copy, calls = shutil.copyfile, []

        def copyfile(src, dst):
            calls.append(dst)
            if len(calls) == 2:  # epoch 1: checkpoint-1.pth is written, checkpoint-last.pth not yet
                raise SimulatedCrash
            return real_copy(src, dst)
        monkeypatch.setattr(shutil, 'copyfile', copyfile)
    else:
        real_adjust = util.lr_sched.adjust_learning_rate

        def adjust(optimizer, epoch, args):
            if epoch >= 1.5:
                raise SimulatedCrash
            return real_adjust(optimizer, epoch, args)
        monkeypatch.setattr(util.lr_sched, 'adjust_learning_rate', adjust)
    with pytest.raises(SimulatedCrash):
        pretrain_in_process(work, out)
    monkeypatch.undo()
    assert load_checkpoint(out / 'checkpoint-last.pth')['epoch'] == 0
    for path in out.glob('*.pth'):
        load_checkpoint(path)  # complete
    pretrain_in_process(work, out, '--auto_resume')
    assert_same_training_state(out / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')
    assert_same_training_state(out / 'checkpoint-1.pth', reference / 'checkpoint-1.pth')
    assert_same_training_state(out / 'checkpoint-0.pth', reference / 'checkpoint-0.pth')
    timing = ('train_samples_per_s', 'train_epoch_time')
    assert [{k: v for k, v in r.items() if k not in timing} for r in log_entries(out)] == [
        {k: v for k, v in r.items() if k not in timing} for r in log_entries(reference)]


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_mixed_precision_runs(work, reference, amp):
    """Autocast on CPU: the first step's loss is close to the float32 run's but not equal. bf16 stays close
    over the epoch; fp16 keeps a loss scale, whose first steps may be skipped (overflow), so only the first
    step compares."""
    out = work['root'] / amp
    pretrain_in_process(work, out, '--amp', amp, '--epochs', '1')
    first, reference_first = (scalar_tags(d)[0].Scalars('train_step/loss')[0].value for d in (out, reference))
    assert first != reference_first and first == pytest.approx(reference_first, rel=0.02)
    if amp == 'bf16':
        assert log_entries(out)[0]['train_loss'] == pytest.approx(log_entries(reference)[0]['train_loss'], rel=0.05)
    checkpoint = load_checkpoint(out / 'checkpoint-last.pth')
    assert checkpoint['model']['blocks.0.attn.qkv.weight'].dtype == torch.float32
    assert (0 < checkpoint['scaler'].get('scale', 0) <= 2 ** 16) == (amp == 'fp16')


def test_linprobe_from_an_official_checkpoint(work, tmp_path):
    """--finetune with the official pre-training weights (official parameter names, {'model': ...} wrapper)."""
    official = torch.load(shared_path('vectors', 'mamp_motion.pt'), weights_only=True)
    torch.save({'model': official['state_dict']}, tmp_path / 'official.pth')
    encoder = {k: official['config'][k] for k in ('dim_feat', 'depth', 'num_heads', 'num_frames')}
    cfg = write_config(tmp_path / 'linear.yaml', 'ntu60_xsub/linear.yaml', work['npz'], model_args=encoder)
    argv = ['--config', str(cfg), '--output_dir', str(tmp_path / 'out'), '--device', 'cpu',
            '--finetune', str(tmp_path / 'official.pth')]
    with one_thread():
        main_linprobe.main(config.parse_args('linprobe', argv))
    probe = load_checkpoint(tmp_path / 'out' / 'checkpoint-last.pth')['model']
    encoder_keys = [k for k in probe if not k.startswith('head.')]
    assert len(encoder_keys) == len([k for k in official['state_dict'] if not k.startswith(('decoder', 'mask'))])
    for key in encoder_keys:
        assert torch.equal(probe[key], official['state_dict'][key]), key


def first_step_gradients(checkpoint):
    """Parameter name -> the gradient of the first AdamW step, from its first moment (1 - beta1) * grad."""
    args = argparse.Namespace(**checkpoint['args'])
    model = config.resolve_class('model', args.model, '')(**args.model_args)
    optimizer = main_finetune.make_optimizer(model, args)
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group['params']]
    indices = [i for group in checkpoint['optimizer']['param_groups'] for i in group['params']]
    beta1 = checkpoint['optimizer']['param_groups'][0]['betas'][0]
    return {name: checkpoint['optimizer']['state'][i]['exp_avg'] / (1 - beta1) for name, i in zip(order, indices)}


def test_two_processes_match_one_process_on_the_same_global_batch(work):
    """torchrun (gloo) with 2 x 8 samples vs one process with 16 (of 24, shuffled): the same gradients and
    weights after the one step, and --dist_eval counts each of the 11 test samples once.

    AdamW's first step moves each weight by lr * g / (|g| + eps): where g is at round-off level (e.g. the
    key biases, whose gradient is zero in exact arithmetic) that ratio is noise, so weights are compared
    where |g| > 1e-6.
    """
    cfg = write_config(work['root'] / 'ddp.yaml', 'ntu60_xsub/finetune.yaml', work['npz'],
                       model_args={'protocol': 'linprobe', 'drop_path_rate': 0.0})
    one, two = work['root'] / 'one_process', work['root'] / 'two_processes'
    common = ['--config', cfg, '--lr', '0.01', '--warmup_epochs', '0']
    run_entry('main_finetune.py', *common, '--output_dir', one, '--batch_size', '16')
    run_entry('main_finetune.py', *common, '--output_dir', two, '--batch_size', '8', '--dist_eval', nproc=2)
    a, b = load_checkpoint(one / 'checkpoint-last.pth'), load_checkpoint(two / 'checkpoint-last.pth')
    grads_a, grads_b = first_step_gradients(a), first_step_gradients(b)
    assert grads_a.keys() == set(a['model'])
    for name, grad in grads_a.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item(), msg=name)
        significant = grad.abs() > 1e-6
        torch.testing.assert_close(b['model'][name][significant], a['model'][name][significant], rtol=1e-5,
                                   atol=1e-7, msg=name)
    log_one, log_two = log_entries(one)[0], log_entries(two)[0]
    assert log_one['test_num_samples'] == log_two['test_num_samples'] == 11
    assert log_two['test_acc1'] == log_one['test_acc1']
    assert log_two['test_loss'] == pytest.approx(log_one['test_loss'], rel=1e-4)
    assert log_two['train_loss'] == pytest.approx(log_one['train_loss'], rel=1e-5)


def test_class_count_mismatch_fails_at_start_up_with_one_line(work):
    result = run_entry('main_finetune.py', '--config', work['finetune'], '--output_dir', work['root'] / 'bad',
                       '--opts', 'model_args.num_classes=120', check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {work['finetune']}: model_args.num_classes is 120 but {work['npz']} has 60 classes "
        f"(set model_args.num_classes: 60)"]
