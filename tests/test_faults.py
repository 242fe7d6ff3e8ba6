"""Faults and bad input: preemption and elastic restarts continue exactly; mistakes end in one line."""
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from train_fixtures import (ROOT, assert_same_training_state, log_entries, pretrain_in_process, run_entry,
                            scalar_tags, write_config)
from util.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
TWO_EPOCHS = ['--epochs', '2', '--save_every', '1', '--print_freq', '1']
TIMING = ('train_samples_per_s', 'train_epoch_time')


def pretrain(work, out, *flags, nproc=None, fault=None, **kwargs):
    """Two epochs of pre-training in a subprocess (torchrun with `nproc`); `fault` = (signal name, epoch)
    sends that signal to the last rank at that fractional epoch (tests/fault_worker.py)."""
    script, env = 'main_pretrain.py', None
    if fault is not None:
        script = 'tests/fault_worker.py'
        env = {'FAULT_SIGNAL': fault[0], 'FAULT_AT': str(fault[1]), 'FAULT_RANK': str((nproc or 1) - 1)}
    return run_entry(script, '--config', work['pretrain'], '--output_dir', out, *TWO_EPOCHS, *flags, nproc=nproc,
                     env=env, **kwargs)


def assert_same_run(out, reference):
    """The weights, optimiser state, log.txt lines (but timing) and TensorBoard losses of an uninterrupted run."""
    assert_same_training_state(out / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')
    assert_same_training_state(out / 'checkpoint-1.pth', reference / 'checkpoint-1.pth')
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in log_entries(out)] == [
        {k: v for k, v in r.items() if k not in TIMING} for r in log_entries(reference)]
    losses = [[(e.step, e.value) for e in scalar_tags(d)[0].Scalars('train_step/loss')] for d in (out, reference)]
    assert losses[0] == losses[1]


@pytest.mark.parametrize('nproc', [None, 2])
def test_sigterm_mid_epoch_then_auto_resume_is_bit_identical(work, nproc):
    """SIGTERM to the last rank inside epoch 1: every rank stops after the same step, checkpoint-last.pth holds
    the position, the status is 3; --auto_resume continues there and ends as the uninterrupted run."""
    root = work['root'] / f'preempt_{nproc}'
    reference, out = root / 'reference', root / 'preempted'
    pretrain(work, reference, nproc=nproc)
    result = pretrain(work, out, nproc=nproc, fault=('SIGTERM', 1.3), check=False)
    if nproc is None:
        assert result.returncode == 3, result.stderr[-2000:]
    else:  # torchrun reports the workers' status
        assert result.returncode != 0 and 'exitcode  : 3' in result.stderr, result.stderr[-2000:]
    assert "received SIGTERM: stopping after the current step" in result.stderr
    checkpoint = load_checkpoint(out / 'checkpoint-last.pth')
    steps_done = 3 if nproc is None else 2  # 6 steps per epoch in one process, 3 per rank in two
    assert checkpoint['epoch'] == 0 and checkpoint['position']['step'] == steps_done
    assert not (out / 'checkpoint-1.pth').exists() and [r['epoch'] for r in log_entries(out)] == [0]
    resumed = pretrain(work, out, '--auto_resume', nproc=nproc)
    assert f"continuing at epoch 1 step {steps_done}" in resumed.stdout
    assert_same_run(out, reference)


def test_worker_killed_mid_epoch_restarts_and_continues(work):
    """torchrun --max-restarts 1: rank 1 killed (SIGKILL) in epoch 1 on the first attempt; the group restarts
    from checkpoint-last.pth (epoch 0) and ends as the uninterrupted two-process run, each epoch logged once."""
    root = work['root'] / 'elastic'
    reference, out = root / 'reference', root / 'killed'
    pretrain(work, reference, nproc=2)
    result = pretrain(work, out, '--auto_resume', nproc=2, fault=('SIGKILL', 1.3), torchrun=['--max-restarts', '1'])
    assert 'Resume checkpoint' in result.stdout
    assert [r['epoch'] for r in log_entries(out)] == [0, 1]
    assert_same_training_state(out / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')


def one_line_error(result):
    """The single stderr line of a failed run (status 1)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith('error: ')
    return lines[0]


@pytest.fixture(scope='module')
def finished(work):
    """A finished one-epoch pre-training run, whose files the failing runs below must leave as they are."""
    out = work['root'] / 'finished'
    run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir', out)
    return out


def snapshot(folder):
    """The files of `folder` and their bytes (but the lock file, which holds the pid of the last run)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != '.lock'}


def test_checkpoint_of_another_model_fails_in_one_line(work, finished, tmp_path):
    """--resume / --finetune with another dim_feat, and --eval --resume of a pre-training checkpoint in a
    classifier: one line naming the flag and the file, the existing run's files (config.yaml too) untouched."""
    before = snapshot(finished)
    wide = tmp_path / 'wide.pth'
    run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir', tmp_path / 'wide', '--opts',
              'model_args.dim_feat=64')
    (tmp_path / 'wide' / 'checkpoint-last.pth').rename(wide)
    line = one_line_error(run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir', finished,
                                    '--resume', wide, '--epochs', '3', check=False))
    assert line.startswith(f"error: --resume {wide}: does not fit the model of {work['pretrain']} (size mismatch")
    line = one_line_error(run_entry('main_linprobe.py', '--config', work['linear'], '--output_dir',
                                    tmp_path / 'probe', '--finetune', wide, check=False))
    assert line.startswith(f"error: --finetune {wide}: an encoder of width 64, the model's is 32 (model_args.dim_feat)")
    line = one_line_error(run_entry('main_finetune.py', '--config', work['finetune'], '--output_dir', finished,
                                    '--eval', '--resume', finished / 'checkpoint-last.pth', check=False))
    assert f"--resume {finished / 'checkpoint-last.pth'}: does not fit the model" in line
    assert snapshot(finished) == before


def test_a_finished_run_is_replaced_only_with_overwrite(work, finished, tmp_path):
    """A fresh run into a folder that holds an earlier run stops in one line and changes nothing; --overwrite
    starts afresh (the same seed gives the earlier run's weights again) with none of the earlier files left."""
    earlier = tmp_path / 'earlier'
    shutil.copytree(finished, earlier)
    before = snapshot(earlier)
    line = one_line_error(run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir', earlier,
                                    check=False))
    assert line == (f"error: --output_dir {earlier}: holds an earlier run (checkpoint-last.pth, checkpoint-0.pth); "
                    f"--auto_resume continues it, --overwrite starts afresh and replaces it, or give another folder")
    assert snapshot(earlier) == before
    (earlier / 'checkpoint-7.pth').write_bytes(before['checkpoint-0.pth'])  # as if the earlier run went further
    (earlier / 'scores.npz').write_bytes(b'the earlier run\'s scores')
    users = {'checkpoint-7-keep.pth': b'a checkpoint the user named', 'thesis.tmp999999.tex': b'\\begin{document}',
             'notes.txt': b'mine'}
    for name, data in users.items():
        (earlier / name).write_bytes(data)
    (earlier / 'per_class.csv').mkdir()  # a run's file name, but a folder: --overwrite must not start removing
    line = one_line_error(run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir', earlier,
                                    '--overwrite', check=False))
    assert line == (f"error: --overwrite: {earlier / 'per_class.csv'} is not a file (a folder?) although a run names "
                    f"its files so; nothing removed: remove the earlier run by hand or give another --output_dir")
    assert {k: v for k, v in snapshot(earlier).items() if k in before} == before
    (earlier / 'per_class.csv').rmdir()
    result = run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir', earlier, '--overwrite')
    assert (f"removed the earlier run's 3 checkpoint(s), 1 TensorBoard event file(s) and 3 other file(s) from "
            f"{earlier}") in result.stdout  # log.txt, config.yaml, scores.npz
    assert sorted(p.name for p in earlier.glob('checkpoint-*')) == ['checkpoint-0.pth', 'checkpoint-7-keep.pth',
                                                                      'checkpoint-last.pth']
    assert {name: (earlier / name).read_bytes() for name in users} == users
    assert not (earlier / 'scores.npz').exists() and not (earlier / '.lock').exists()
    assert_same_training_state(earlier / 'checkpoint-last.pth', finished / 'checkpoint-last.pth')
    assert [e['epoch'] for e in log_entries(earlier)] == [e['epoch'] for e in log_entries(finished)] == [0]
    events = list(earlier.glob('events.out.tfevents.*'))
    assert len(events) == 1 and events[0].name not in before


def test_a_data_command_removes_only_what_a_killed_run_of_its_own_left(tmp_path):
    """data.ntu into an --out-dir and --cache-dir holding the user's files named like temporaries (a file, a folder)
    and a killed run's lock file and temporary file: the run removes that temporary file only, and every other file
    is as it was; the finished run leaves no lock."""
    from data import ntu, synthetic
    from data.pipeline import run_command
    from util import lock
    raw, out, cache = tmp_path / 'synthetic' / 'raw', tmp_path / 'out', tmp_path / 'cache'
    synthetic.main(['--out-dir', str(tmp_path / 'synthetic'), '--format', 'skeleton', '--num-train', '2',
                    '--num-test', '1'])
    lock.release()
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                          text=True).stdout.strip()
    for folder in (out, cache):
        (folder / 'notes.tmp999999').mkdir(parents=True)
        (folder / 'notes.tmp999999' / 'draft.txt').write_text('mine')
        (folder / 'thesis.tmp999999.tex').write_text('\\begin{document}')
        (folder / f'NTU60_XSub.npz.tmp{dead}').write_bytes(b'PK not ours')
    (out / '.lock').write_text(f'{dead}\n')
    killed = out / f'.NTU60_XSub.npz.tmp{dead}.abcd1234.mamp.npz'
    killed.write_bytes(b'PK cut short')
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob('*')) if p.is_file() and p not in (killed, out / '.lock')}
    run_command(lambda: ntu.main(['--dataset', 'ntu60', '--raw-dir', str(raw), '--out-dir', str(out), '--cache-dir',
                                  str(cache), '--workers', '1']))
    lock.release()
    assert {p: p.read_bytes() for p in before} == before
    assert not killed.exists() and not (out / '.lock').exists() and (out / 'NTU60_XSub.npz').is_file()


def test_a_link_at_a_temporary_name_is_never_written_through(work, tmp_path):
    """Links planted at the names a checkpoint's temporary file had (checkpoint-0.tmp<pid>.pth, ...): the run
    writes its own new files, the links and their targets outside the folder stay as they were; the finished
    run's folder holds no .lock."""
    out, outside = tmp_path / 'out', tmp_path / 'precious.txt'
    out.mkdir()
    outside.write_text('not the run\'s')
    links = [out / f'checkpoint-{e}.tmp{os.getpid()}.pth' for e in (0, 1)] + [out / f'checkpoint-last.tmp{os.getpid()}.pth']
    for link in links:
        link.symlink_to(outside)
    pretrain_in_process(work, out)
    assert outside.read_text() == 'not the run\'s' and all(link.is_symlink() for link in links)
    assert load_checkpoint(out / 'checkpoint-last.pth')['epoch'] == 1
    assert not (out / '.lock').exists() and not list(out.glob('.*.mamp*'))


def test_unwritable_output_folder_and_missing_device_fail_in_one_line(work, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    line = one_line_error(run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir',
                                    blocker / 'out', check=False))
    assert line.startswith(f"error: --output_dir {blocker / 'out'}: cannot create the folder")
    assert blocker.read_text() == 'not a folder'
    if torch.backends.mps.is_available():
        pytest.skip('this machine has MPS')
    result = subprocess.run([sys.executable, str(ROOT / 'main_pretrain.py'), '--config', str(work['pretrain']),
                             '--output_dir', str(tmp_path / 'mps'), '--device', 'mps'], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert one_line_error(result).startswith("error: --device mps: MPS is not available on this machine")


def test_full_disk_keeps_the_previous_checkpoint(work, tmp_path, monkeypatch):
    """A write that fails (ENOSPC) in epoch 1 stops with one line; checkpoint-last.pth still holds epoch 0 and
    no temporary file is left."""
    out = tmp_path / 'full'
    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # epoch 1's numbered checkpoint: a few bytes, then the disk is full
            with open(path, 'wb') as f:
                f.write(b'PK\x03\x04')
            raise OSError(28, 'No space left on device')
        return real_save(obj, path, *args, **kwargs)
    monkeypatch.setattr(torch, 'save', save)
    with pytest.raises(SystemExit) as stop:
        pretrain_in_process(work, out)
    assert str(stop.value) == (f"error: cannot write {out / 'checkpoint-1.pth'}: [Errno 28] No space left on "
                               f"device (free space, or write to another folder)")
    assert load_checkpoint(out / 'checkpoint-last.pth')['epoch'] == 0
    assert sorted(p.name for p in out.glob('*.pth*')) == ['checkpoint-0.pth', 'checkpoint-last.pth']


def test_second_run_into_a_live_output_folder_is_refused(work, finished):
    """A live run holds the folder's lock: a second run stops in one line naming its pid; once the holder is
    killed the lock is gone and a run proceeds."""
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from util import output; '
                               'output.lock_output_dir(sys.argv[1]); print("locked", flush=True); time.sleep(120)',
                               str(finished)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = snapshot(finished)
        line = one_line_error(run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir', finished,
                                        '--auto_resume', check=False))
        assert line == (f"error: --output_dir {finished}: in use by a running training process (pid {holder.pid}); "
                        f"wait for it, stop it, or choose another --output_dir")
        assert snapshot(finished) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    result = run_entry('main_pretrain.py', '--config', work['pretrain'], '--output_dir', finished, '--auto_resume',
                       '--epochs', '2')
    assert 'continuing at epoch 1' in result.stdout


def test_auto_resume_skips_an_unreadable_last_checkpoint(work, tmp_path):
    """checkpoint-last.pth cut short: --auto_resume says so and continues from the newest readable one."""
    reference, out = tmp_path / 'reference', tmp_path / 'damaged'
    pretrain_in_process(work, reference)
    out.mkdir()
    (out / 'checkpoint-0.pth').write_bytes((reference / 'checkpoint-0.pth').read_bytes())
    (out / 'checkpoint-last.pth').write_bytes((reference / 'checkpoint-last.pth').read_bytes()[:100])
    pretrain_in_process(work, out, '--auto_resume')
    assert_same_training_state(out / 'checkpoint-last.pth', reference / 'checkpoint-last.pth')


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / 'noise.pth'
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r'noise.pth: not a PyTorch checkpoint \(UnpicklingError: \w') as error:
        load_checkpoint(path)
    assert 'weights_only' not in str(error.value)  # torch's advice to load unsafely is not passed on
