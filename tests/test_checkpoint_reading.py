"""A damaged or unreadable checkpoint, given to any tool, ends in one line naming the file and what to do; with
--auto_resume a damaged checkpoint-last.pth falls back to the newest readable checkpoint, whatever the damage."""
import shutil

import pytest
import torch

import util.checkpoint
from train_fixtures import (CHECKPOINT_READERS, one_line_exit, pretrain_in_process, write_classifier_checkpoint)
from util.checkpoint import load_checkpoint

CUTS = [100, 5000, 50000, 'half']


def cut(source, path, size):
    """`path`: the first `size` bytes of `source` (as a full disk or an unfinished copy leaves it)."""
    data = source.read_bytes()
    path.write_bytes(data[:len(data) // 2 if size == 'half' else size])
    return path


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    path = tmp_path_factory.mktemp('classifier') / 'checkpoint.pth'
    write_classifier_checkpoint(path, 'finetune')
    return path


def damage(kind, classifier, tmp_path, monkeypatch):
    """A checkpoint path damaged in the way `kind` names, and the start of the message expected for it."""
    path = tmp_path / 'checkpoint.pth'
    if kind == 'folder':
        path.mkdir()
        return path, f"{path}: a folder, not a checkpoint file"
    if kind == 'unreadable':  # chmod 000 does not stop root: refuse the open instead
        shutil.copyfile(classifier, path)

        def refuse(file, *args, **kwargs):
            raise PermissionError(13, 'Permission denied', str(file))
        monkeypatch.setattr(util.checkpoint, 'open', refuse, raising=False)
        return path, f"{path}: cannot be read (Permission denied); check its permissions"
    if kind == 'no weights':
        torch.save({'epoch': 3, 'notes': 'results'}, path)
        return path, f"{path}: no weights in this file"
    return cut(classifier, path, kind), f"{path}: damaged checkpoint (cut short or corrupted"


@pytest.mark.parametrize('kind', CUTS + ['folder', 'unreadable', 'no weights'])
@pytest.mark.parametrize('reader', CHECKPOINT_READERS)
def test_a_damaged_checkpoint_is_one_line_at_every_entry_point(work, classifier, tmp_path, monkeypatch, reader,
                                                               kind):
    path, expected = damage(kind, classifier, tmp_path, monkeypatch)
    message = one_line_exit(lambda: CHECKPOINT_READERS[reader](work, path, tmp_path / 'out'))
    assert expected in message
    assert not (tmp_path / 'out' / 'config.yaml').exists() and not (tmp_path / 'out' / 'knn.json').exists()


@pytest.mark.parametrize('size', CUTS)
def test_load_checkpoint_of_a_cut_file_is_one_value_error(classifier, tmp_path, size):
    path = cut(classifier, tmp_path / 'cut.pth', size)
    with pytest.raises(ValueError) as error:
        load_checkpoint(path)
    assert str(error.value) == (f"{path}: damaged checkpoint (cut short or corrupted, e.g. by a full disk or an "
                                f"unfinished copy); copy it again or use an earlier checkpoint")


@pytest.fixture(scope='module')
def two_epochs(work):
    """A finished two-epoch pre-training run: checkpoint-0.pth, checkpoint-1.pth and checkpoint-last.pth."""
    out = work['root'] / 'two_epochs'
    pretrain_in_process(work, out)
    return out


@pytest.mark.parametrize('size', CUTS)
def test_auto_resume_falls_back_whatever_the_cut(work, two_epochs, tmp_path, capsys, size):
    """checkpoint-last.pth cut to `size`: --auto_resume reports it and continues from checkpoint-1.pth (epoch 1,
    the last: nothing left to train); with checkpoint-1.pth cut too, from checkpoint-0.pth."""
    out = tmp_path / 'run'
    shutil.copytree(two_epochs, out)
    cut(two_epochs / 'checkpoint-last.pth', out / 'checkpoint-last.pth', size)
    capsys.readouterr()
    pretrain_in_process(work, out, '--auto_resume')
    printed = capsys.readouterr().out
    assert f"Skipping unreadable checkpoint: {out / 'checkpoint-last.pth'}: damaged checkpoint" in printed
    assert f"Resume checkpoint {out / 'checkpoint-1.pth'}" in printed and 'continuing at epoch 2 step 0' in printed
    if size == 'half':
        cut(two_epochs / 'checkpoint-1.pth', out / 'checkpoint-1.pth', size)
        pretrain_in_process(work, out, '--auto_resume')
        printed = capsys.readouterr().out
        assert f"Resume checkpoint {out / 'checkpoint-0.pth'}" in printed and 'continuing at epoch 1' in printed
        assert load_checkpoint(out / 'checkpoint-last.pth')['epoch'] == 1  # written again by the resumed run


def test_auto_resume_with_no_readable_checkpoint_is_one_line(work, two_epochs, tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    for name in ('checkpoint-last.pth', 'checkpoint-1.pth', 'checkpoint-0.pth'):
        cut(two_epochs / name, out / name, 5000)
    message = one_line_exit(lambda: pretrain_in_process(work, out, '--auto_resume'))
    assert message == (f"error: --auto_resume: no readable checkpoint in {out}; move the damaged ones away to "
                       f"start afresh")
