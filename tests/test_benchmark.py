"""benchmark.py: a quick run measures every section; the analytic FLOP count equals torch's FLOP counter."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import benchmark
from bench.feeder_rows import interleaved_feeder_rows, write_npz
from bench.flops import model_flops
from bench.published import PublishedFeeder, default_kernel, published_item, use_explicit_attention
from bench.report import slow_precisions, write_json
from bench.settings import CROP, FULL, QUICK, SECTIONS
from bench.steps import build, skeleton_batch
from conftest import ROOT


def run_benchmark(tmp_path, *flags):
    out = tmp_path / 'bench.json'
    proc = subprocess.run([sys.executable, 'benchmark.py', '--quick', '--device', 'cpu', '--out', str(out), *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_quick_run_reports_every_section(tmp_path):
    report, stdout = run_benchmark(tmp_path, '--amp', 'fp32,bf16')
    rows = report['rows']
    assert {r['section'] for r in rows} == set(SECTIONS)
    assert report['device'] == 'cpu' and report['batch'] == 2 and report['threads'] >= 1
    assert report['keep_memory']  # as the training entry points do on CPU (glibc)
    assert set(report['matmul_gflop_per_s']) == {'fp32', 'bf16'}
    assert [(r['precision'], r['variant']) for r in rows if r['section'] == 'pretrain'] == [('fp32', 'decoder 1'),
                                                                                        ('bf16', 'decoder 1')]
    model_rows = [r for r in rows if r['section'] in ('pretrain', 'tune', 'linprobe', 'finetune', 'eval')]
    for r in rows:
        # the matmul reference: 10 calls at the start and 3 before each model row
        calls = 10 + 3 * len(model_rows) if r['section'] == 'matmul' else 2
        assert len(r['step_ms']) == len(r['cpu_ms']) == calls, r
        assert min(r['step_ms']) > 0 and min(r['cpu_ms']) > 0 and r['load_average'] >= 0, r
        if r['section'] == 'feeder':
            assert r['workers'] == 1 and r['ms_per_sample'] > 0
            assert r['samples_per_s'] == pytest.approx(1e3 / r['ms_per_sample'])
            continue
        if r['section'] == 'dense':  # a recording of r['frames'] frames detected per call
            assert r['windows'] == len(range(0, r['frames'], r['hop'])) and r['peak_memory_mb'] > 0
            assert r['frames_per_s'] == pytest.approx(r['frames'] / r['ms_per_step'] * 1e3)
            assert r['seconds_per_9000_frames'] == pytest.approx(9000 / r['frames_per_s'])
            continue
        assert r['ms_per_step'] > 0
        if r['section'] != 'matmul':
            assert r['peak_memory_mb'] > 0 and r['memory_kind'] == 'peak_rss'
            assert r['samples_per_s'] == pytest.approx(2e3 / r['ms_per_step'])
        if r['section'] in ('matmul', 'augment'):
            continue
        depth = int(r['variant'].split()[1]) if r['variant'] else None
        forward, train = model_flops(r['section'], 2, QUICK, depth)
        assert r['flops_per_step'] == (forward if r['section'] == 'eval' else train)
        assert r['gflop_per_s'] == pytest.approx(r['flops_per_step'] / r['ms_per_step'] / 1e6)
        peak = report['matmul_gflop_per_s'][r['precision']]
        assert r['matmul_fraction'] == pytest.approx(r['gflop_per_s'] / peak)
    assert 'pretrain  decoder 1' in stdout and '% matmul' in stdout


@pytest.mark.slow
def test_only_selects_sections_and_return_memory(tmp_path):
    report, stdout = run_benchmark(tmp_path, '--only', 'feeder,augment', '--return_memory')
    assert [(r['section'], r.get('batch')) for r in report['rows']] == [('feeder', None), ('feeder', 2), ('augment', 2)]
    assert report['matmul_gflop_per_s'] == {}
    assert not report['keep_memory'] and 'malloc keeps freed memory' not in stdout
    # by default the precisions without a fast matmul kernel on this device are left out, with a note
    slow = slow_precisions(torch.device('cpu'))
    assert [n.split(':')[0] for n in report['notes']] == [p for p in slow if p == 'bf16']
    assert all('left out' in n for n in report['notes'])


def test_out_is_written_whole_or_not_at_all(tmp_path):
    """--out: the JSON read back equals the report; a folder that does not exist ends in one line, no file."""
    report = {'rows': [{'section': 'matmul', 'ms_per_step': 1.5}], 'notes': []}
    write_json(tmp_path / 'bench.json', report)
    assert json.loads((tmp_path / 'bench.json').read_text()) == report
    with pytest.raises(SystemExit) as exit:
        write_json(tmp_path / 'missing' / 'bench.json', report)
    assert str(exit.value).startswith(f"error: cannot write {tmp_path / 'missing' / 'bench.json'}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bench.json']


@pytest.mark.parametrize('args, message', [
    (['--only', 'pretrain,training'],
     "--only: 'pretrain,training': expected a comma-separated list of matmul, pretrain"),
    (['--steps', '0'], "--steps: '0': expected a whole number of at least 1"),
    (['--warmup', '-1'], "--warmup: '-1': expected a whole number of at least 0"),
    (['--feeder_samples', 'many'], "--feeder_samples: 'many': expected a whole number of at least 1")])
def test_bad_argument_is_named(capsys, args, message):
    with pytest.raises(SystemExit) as exit:
        benchmark.get_args_parser().parse_args(args)
    assert exit.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize('section, decoder_depth', [('pretrain', 1), ('pretrain', 5), ('pretrain', 3),
                                                    ('tune', None), ('linprobe', None), ('finetune', None), ('eval', None)])
@pytest.mark.parametrize('scale', ['quick', 'full'])
def test_flop_count_matches_flop_counter(section, decoder_depth, scale):
    """model_flops against FlopCounterMode over the forward (+ backward) of the benchmarked models: the tiny
    ones on CPU, the full-size ones on the meta device (shapes only, no arithmetic).

    The math SDPA kernel computes attention as two batched matmuls that the counter sees (it does not count
    the CPU flash kernel), and their backward as four: the same convention as model_flops.
    """
    size, batch = (QUICK, 3) if scale == 'quick' else (FULL, 16)
    device = torch.device('cpu' if scale == 'quick' else 'meta')
    torch.manual_seed(0)
    model, _, loss_fn = build(section, size, device, 'fp32', device.type == 'cpu', decoder_depth)
    x, y = skeleton_batch(batch, size['num_frames'], size, device)
    forward, train = model_flops(section, batch, size, decoder_depth)
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as counter:
            with torch.no_grad():
                model(x) if loss_fn is None else loss_fn(model, x, y)
        assert counter.get_total_flops() == forward
        if loss_fn is not None:
            with FlopCounterMode(display=False) as counter:
                loss_fn(model, x, y).backward()
            assert counter.get_total_flops() == train


class OpNames(TorchDispatchMode):
    """Collects the names of the aten ops that run."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('section', ['pretrain', 'finetune'])
def test_attention_runs_in_the_fused_kernel(section):
    """The timm blocks call scaled_dot_product_attention (flash kernel on CPU), not matmul + softmax, which
    materialises every (L, L) attention matrix and makes the full-size steps about twice as slow."""
    size = QUICK
    model, _, loss_fn = build(section, size, torch.device('cpu'), 'fp32', True, 1)
    x, y = skeleton_batch(2, size['num_frames'], size, torch.device('cpu'))
    with OpNames() as ops:
        loss_fn(model, x, y).backward()
    assert {'_scaled_dot_product_flash_attention_for_cpu',
            '_scaled_dot_product_flash_attention_for_cpu_backward'} <= ops.names
    assert not {'softmax', '_softmax', 'bmm'} & ops.names


@pytest.mark.parametrize('section', ['pretrain', 'finetune'])
def test_published_step_has_the_same_math_in_explicit_attention(section):
    """The --published rows: softmax + bmm instead of the fused kernel, the same loss and gradients."""
    size, cpu = QUICK, torch.device('cpu')
    x, y = skeleton_batch(3, size['num_frames'], size, cpu)
    results = []
    for published in (False, True):
        torch.manual_seed(0)
        model, _, loss_fn = build(section, size, cpu, 'fp32', True, 1)
        if published:
            use_explicit_attention(model)
        torch.manual_seed(1)
        with OpNames() as ops:
            loss = loss_fn(model, x, y)
            loss.backward()
        assert ('_softmax' in ops.names) == published
        assert ('_scaled_dot_product_flash_attention_for_cpu' in ops.names) != published
        results.append((loss, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (loss, grads), (loss_published, grads_published) = results
    torch.testing.assert_close(loss_published, loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == grads_published.keys()
    for name in grads:  # float rounding only: within 1e-4 of max(largest entry, 1)
        assert (grads_published[name] - grads[name]).abs().max() <= 1e-4 * max(grads[name].abs().max(), 1), name


@pytest.mark.slow
def test_published_rows_follow_ours_with_the_speed_ratio(tmp_path):
    report, stdout = run_benchmark(tmp_path, '--only', 'pretrain,finetune,feeder', '--published', '--amp', 'fp32')
    rows = report['rows'][1:]  # after the matmul row
    assert [(r['section'], r['variant'], r['published']) for r in rows] == [
        ('pretrain', 'decoder 1', False), ('pretrain', 'decoder 1, published', True),
        ('finetune', '', False), ('finetune', 'published', True),
        ('feeder', '60 frames -> 24', False), ('feeder', '60 frames -> 24, batches of 2', False),
        ('feeder', '60 frames -> 24, published', True)]
    for ours, published in (rows[:2], rows[2:4], rows[4:7:2], rows[5:]):
        assert ours['speedup_vs_published'] == pytest.approx(ours['samples_per_s'] / published['samples_per_s'])
        name = ' '.join(v for v in (ours['section'], ours['variant'], 'fp32') if v)
        what = 'feeder' if ours['section'] == 'feeder' else 'step'
        assert f"{name}: {ours['speedup_vs_published']:.2f}x the published {what}\n" in stdout
    assert 'x published' in stdout


def test_published_feeder_gives_our_samples(tmp_path):
    """The --published feeder (the official __getitem__: F.interpolate, a rotation matrix per frame) and ours
    give the same arrays, bit for bit, from the same seeds."""
    from feeder.feeder_ntu import Feeder

    path = tmp_path / 'x.npz'
    write_npz(path, 12, 300, 60)
    ours = Feeder(path, split='train', p_interval=CROP, window_size=120, random_rot=True)
    published = PublishedFeeder(path, 120)
    samples = []
    for get in (lambda i: ours[i][0], lambda i: published_item(published, i)[0].numpy()):
        np.random.seed(3)
        torch.manual_seed(3)
        samples.append([get(i) for i in range(12)])
    assert samples[0][0].shape == (3, 120, 25, 2)
    for a, b in zip(*samples):
        np.testing.assert_array_equal(b, a)
    assert not np.array_equal(samples[0][0], samples[0][1])


@pytest.mark.parametrize('section', ['pretrain', 'finetune'])
def test_published_optimizer_is_torch_default_with_the_same_groups(section):
    """The official code builds AdamW without kernel options: on CPU that is the per-tensor loop. Same groups and
    the same update as our fused kernel, within float rounding."""
    size, cpu = QUICK, torch.device('cpu')
    model, fused, _ = build(section, size, cpu, 'fp32', True, 1)
    default = default_kernel(fused)
    assert fused.defaults['fused'] and not default.defaults['fused'] and default.defaults['foreach'] is None
    assert len(default.param_groups) == len(fused.param_groups) > 1
    def options(group):
        return {k: v for k, v in group.items() if k not in ('fused', 'foreach')}
    assert [options(g) for g in default.param_groups] == [options(g) for g in fused.param_groups]
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    torch.manual_seed(2)
    grads = [torch.randn_like(p) for p in params]
    updates = []
    for optimizer in (fused, default):
        with torch.no_grad():
            for p, s, g in zip(params, start, grads):
                p.copy_(s)
                p.grad = g.clone()
        optimizer.step()
        updates.append([p.detach().clone() for p in params])
    assert any(not torch.equal(u, s) for u, s in zip(updates[0], start))
    for a, b in zip(*updates):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


class LoggingFeeder:
    """Writes its name to a log file at every pass (item 0)."""

    def __init__(self, name, log):
        self.name, self.log = name, log


def log_pass(feeder, index):
    if index == 0:
        with open(feeder.log, 'a') as f:
            f.write(feeder.name + '\n')
    return index


@pytest.mark.slow
def test_feeder_passes_alternate_between_processes(tmp_path):
    """Ours and the published feeder are timed in turn, one pass each per round, each in its own process."""
    log = tmp_path / 'passes.txt'
    processes = [({'ours': (LoggingFeeder('ours', log), None, log_pass)}, True),
                 ({'published': (LoggingFeeder('published', log), None, log_pass)}, False)]
    rows = interleaved_feeder_rows(processes, samples=3, warmup=1, steps=2)
    assert log.read_text().split() == ['ours', 'published'] * 3
    assert [r['variant'] for r in rows] == ['ours', 'published']
    for r in rows:
        assert len(r['step_ms']) == len(r['cpu_ms']) == 2 and r['peak_memory_mb'] > 0
        assert r['ms_per_sample'] == pytest.approx(np.median(r['step_ms']) / 3)
