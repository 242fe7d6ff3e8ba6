"""Ctrl-C in training: one line saying what checkpoint-last.pth holds, exit status 130, no traceback."""
import pytest

import util.lr_sched
from train_fixtures import pretrain_in_process, run_entry
from util.checkpoint import load_checkpoint


def interrupt_at(monkeypatch, fraction):
    """Raise KeyboardInterrupt (what Ctrl-C raises) when the schedule reaches fractional epoch `fraction`."""
    adjust = util.lr_sched.adjust_learning_rate

    def adjust_or_interrupt(optimizer, epoch, args):
        if epoch >= fraction:
            raise KeyboardInterrupt
        return adjust(optimizer, epoch, args)
    monkeypatch.setattr(util.lr_sched, 'adjust_learning_rate', adjust_or_interrupt)


@pytest.mark.parametrize('fraction', [0.4, 1.4])
def test_interrupt_names_the_epoch_to_resume(work, tmp_path, monkeypatch, capsys, fraction):
    out = tmp_path / 'run'
    interrupt_at(monkeypatch, fraction)
    with pytest.raises(SystemExit) as stop:
        pretrain_in_process(work, out)
    assert stop.value.code == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    if fraction < 1:
        assert line == f"interrupted before any checkpoint in {out}" and not (out / 'checkpoint-last.pth').exists()
    else:
        assert load_checkpoint(out / 'checkpoint-last.pth')['epoch'] == 0
        assert line == (f"interrupted; {out / 'checkpoint-last.pth'} holds epoch 0; rerun with --auto_resume to "
                        f"continue")
    monkeypatch.undo()
    pretrain_in_process(work, out, '--auto_resume')  # the folder's lock was given up; the run goes on
    assert load_checkpoint(out / 'checkpoint-last.pth')['epoch'] == 1


@pytest.mark.slow
def test_sigint_ends_a_training_process_without_traceback(work, tmp_path):
    """SIGINT (Ctrl-C in the terminal) to a real training process in its second epoch."""
    out = tmp_path / 'run'
    result = run_entry('tests/fault_worker.py', '--config', work['pretrain'], '--output_dir', out, '--epochs', '2',
                       check=False, env={'FAULT_SIGNAL': 'SIGINT', 'FAULT_AT': '1.3'})
    assert result.returncode == 130, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted; {out / 'checkpoint-last.pth'} holds epoch 0; rerun with --auto_resume to continue")
