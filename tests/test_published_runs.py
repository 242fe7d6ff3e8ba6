"""The published runs, setting by setting: configs, script defaults and the docs/training.md table agree."""
import argparse
import os
import subprocess

import pytest

from train_fixtures import ROOT, TINY_ENCODER, log_entries, write_config, write_npz
from util import config, runner, summary

NTU = ('ntu60_xsub', 'ntu60_xview', 'ntu120_xsub', 'ntu120_xset')


def start(dataset, epoch=399):
    return f'output/{dataset}/pretrain_mamp/checkpoint-{epoch}.pth'


# The published runs (the published scripts, whose flags win over their YAML files): dataset, protocol,
# processes, batch per process, lr, epochs, start checkpoint ('' for none), command here, config it runs.
PUBLISHED_RUNS = [
    *[(d, 'pre-training', 4, 32, 1e-3, 400, '', f'DATASET={d} bash scripts/pretrain.sh',
       f'config/{d}/pretrain_mamp.yaml') for d in (*NTU, 'pku_v1', 'pku_v2')],
    *[(d, 'linear probe', 2, 128, 0.1, 100, start(d), f'DATASET={d} bash scripts/linprobe.sh',
       f'config/{d}/linear.yaml') for d in NTU],
    ('pku_v1', 'linear probe', 2, 64, 0.1, 100, start('pku_v1', 300), 'DATASET=pku_v1 bash scripts/linprobe.sh',
     'config/pku_v1/linear.yaml'),
    ('pku_v2', 'linear probe', 2, 16, 0.01, 100, start('pku_v2', 300), 'DATASET=pku_v2 bash scripts/linprobe.sh',
     'config/pku_v2/linear.yaml'),
    *[(d, 'fine-tune', 2, 24, 3e-4, 100, start(d), f'DATASET={d} bash scripts/finetune.sh',
       f'config/{d}/finetune.yaml') for d in NTU],
    *[(d, 'from scratch', 2, 24, 3e-4, 100, '', f'DATASET={d} bash scripts/scratch.sh',
       f'config/{d}/scratch.yaml') for d in NTU],
    *[(d, f'semi-supervised {r}%, mean of 5', 2, 24, 3e-4, 100, start(d),
       f'DATASET={d} RATIO={r} bash scripts/semi.sh', f'config/{d}/semi_{r}.yaml')
      for d in NTU[:2] for r in (1, 10)],
    *[(d, f'semi-supervised {r}% from scratch, mean of 5', 2, 24, 3e-4, 100, '',
       f'DATASET={d} RATIO={r} SCRATCH=1 bash scripts/semi.sh', f'config/{d}/semi_{r}_scratch.yaml')
      for d in NTU[:2] for r in (1, 10)],
    *[(f'{s} -> pku_v2', 'transfer', 2, 24, 3e-4, 100, start(s, 300 if s == 'pku_v1' else 399),
       f'SOURCE={s} bash scripts/transfer.sh', f'config/transfer/{s}_to_pku_v2.yaml')
      for s in ('ntu60_xsub', 'ntu120_xsub', 'pku_v1')],
]
IDS = [f'{run[0]}/{run[1]}' for run in PUBLISHED_RUNS]


def docs_rows():
    """The rows of the "Published runs" table of docs/training.md, as lists of cell texts."""
    text = (ROOT / 'docs' / 'training.md').read_text()
    table = text.split('### Published runs', 1)[1].split('\n\n| ', 1)[1].split('\n\n', 1)[0]
    return [[cell.strip().strip('`') for cell in line.strip('|').split('|')] for line in table.splitlines()[2:]]


def test_docs_table_is_the_published_runs():
    expected = [[dataset, protocol, str(processes), str(batch), str(processes * batch), f'{lr:g}', str(epochs),
                 checkpoint or 'none', command]
                for dataset, protocol, processes, batch, lr, epochs, checkpoint, command, _ in PUBLISHED_RUNS]
    assert docs_rows() == expected


@pytest.mark.parametrize('run', PUBLISHED_RUNS, ids=IDS)
def test_config_resolves_to_the_published_run(run):
    _, protocol, processes, batch, lr, epochs, checkpoint, _, path = run
    entry = 'pretrain' if protocol == 'pre-training' else 'linprobe' if protocol == 'linear probe' else 'finetune'
    args = config.parse_args(entry, ['--config', str(ROOT / path)])
    assert (args.batch_size, args.accum_iter, args.lr, args.epochs) == (batch, 1, lr, epochs)
    assert args.published_batch == processes * batch
    assert getattr(args, 'finetune', '') == checkpoint
    if protocol == 'pre-training':  # the MAE baseline: the same recipe
        mae = config.parse_args('pretrain', ['--config', str(ROOT / path.replace('mamp', 'mae'))])
        assert (mae.batch_size, mae.lr, mae.epochs, mae.published_batch) == (batch, lr, epochs, processes * batch)


def fake_torchrun(directory):
    """A torchrun on PATH that prints its arguments and writes a one-epoch log.txt into --output_dir."""
    fake = directory / 'torchrun'
    fake.write_text('#!/usr/bin/env bash\necho "$@"\nwhile [ $# -gt 0 ]; do\n'
                    '  if [ "$1" = --output_dir ]; then mkdir -p "$2"; '
                    'echo \'{"epoch": 0, "test_acc1": 50.0}\' > "$2/log.txt"; fi\n  shift\ndone\n')
    fake.chmod(0o755)
    return {**{k: v for k, v in os.environ.items() if k != 'GPUS'}, 'PATH': f"{directory}:{os.environ['PATH']}"}


@pytest.mark.parametrize('run', PUBLISHED_RUNS, ids=IDS)
def test_script_defaults_launch_the_published_run(run, tmp_path):
    """The command of the table, without GPUS, starts the published process count on the config; semi.sh runs
    5 repeats with seeds 0..4 into their own folders."""
    processes, command, path = run[2], run[7], run[8]
    *assignments, _, script = command.split()
    env = {**fake_torchrun(tmp_path), **dict(a.split('=') for a in assignments), 'OUTPUT_DIR': str(tmp_path / 'out')}
    result = subprocess.run(['bash', script], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    launches = [line for line in result.stdout.splitlines() if line.startswith('--standalone')]
    repeats = 5 if script.endswith('semi.sh') else 1
    assert len(launches) == repeats
    for seed, line in enumerate(launches):
        assert line.startswith(f'--standalone --nproc_per_node={processes} ')
        assert f'--config {path} ' in line and '--finetune' not in line  # the start checkpoint: the config's
        if repeats > 1:
            assert line.endswith(f'--output_dir {tmp_path}/out/seed{seed} --dist_eval --auto_resume --seed {seed}')


def note(published, batch, processes, accum_iter=1):
    args = argparse.Namespace(published_batch=published, batch_size=batch, accum_iter=accum_iter, lr=0.1,
                              config='config/ntu60_xsub/linear.yaml')
    return runner.published_batch_note(args, processes)


def test_effective_batch_note_only_when_it_differs():
    assert note(256, 128, 2) is None and note(256, 64, 2, accum_iter=2) is None
    assert note(None, 128, 1) is None  # a config without a published run (the demo, a custom one)
    assert note(256, 128, 4) == (
        'note: effective batch 512 (4 process(es) x batch_size 128 x accum_iter 1) differs from the published 256 '
        'of config/ntu60_xsub/linear.yaml at lr 0.1; to reproduce it, make GPUS x --batch_size x --accum_iter = 256')
    assert note(256, 128, 1).endswith('= 256 (here: --accum_iter 2)')


@pytest.mark.slow
def test_semi_repeats_end_to_end(tmp_path):
    """REPEATS=2 tiny runs from scratch on the same labelled subset with seeds 0 and 1, then their mean."""
    npz = write_npz(tmp_path / 'NTU60_XSub.npz')
    cfg = write_config(tmp_path / 'semi.yaml', 'ntu60_xsub/semi_1_scratch.yaml', npz,
                       train_feeder_args={'data_ratio': 0.5})
    env = {**os.environ, 'GPUS': '1', 'REPEATS': '2', 'CONFIG': str(cfg), 'OUTPUT_DIR': str(tmp_path / 'semi'),
           'OMP_NUM_THREADS': '1'}
    result = subprocess.run(['bash', 'scripts/semi.sh', '--device', 'cpu'], env=env, capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [tmp_path / 'semi' / f'seed{k}' for k in (0, 1)]
    resolved = [config.parse_args('finetune', ['--config', str(run / 'config.yaml')]) for run in runs]
    assert [a.seed for a in resolved] == [0, 1] and resolved[0].model_args['dim_feat'] == TINY_ENCODER['dim_feat']
    assert resolved[0].train_feeder_args == resolved[1].train_feeder_args  # the same subset_seed and data_ratio
    assert log_entries(runs[0])[0]['train_loss'] != log_entries(runs[1])[0]['train_loss']
    assert result.stdout.count('note: effective batch 4 (1 process(es)') == 2  # published 48
    assert result.stdout.strip().splitlines()[-1] == summary.format_mean(
        [(f'seed {k}', summary.summarize(run)) for k, run in enumerate(runs)])


@pytest.mark.parametrize('env, args, message', [
    ({'SCRATCH': '1', 'PRETRAIN': 'x.pth'}, [],
     'semi.sh: SCRATCH=1 starts from random weights; unset PRETRAIN (or drop SCRATCH=1 to fine-tune it)'),
    ({}, ['--seed', '3'], 'semi.sh: the repeats set --seed 0..REPEATS-1 themselves; drop --seed'),
    ({'REPEATS': '0'}, [], 'semi.sh: REPEATS=0: expected a whole number of at least 1')])
def test_semi_settings_that_would_silently_change_the_repeats_are_refused(env, args, message):
    result = subprocess.run(['bash', 'scripts/semi.sh', *args], env={**os.environ, **env}, capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and result.stderr.splitlines() == [message] and result.stdout == ''
