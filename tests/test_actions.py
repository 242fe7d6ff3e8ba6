"""Action names: one per class of each dataset, and the dataset told from a data file or a class count."""
import pytest

from util.actions import action_names, dataset_of, sample_title


def test_names_per_class():
    ntu60, ntu120, pku = action_names('ntu60'), action_names('ntu120'), action_names('pku')
    assert (len(ntu60), len(ntu120), len(pku)) == (60, 120, 51)
    assert len(set(ntu120)) == 120 and len(set(pku)) == 51
    assert ntu120[:60] == ntu60  # NTU-120 extends NTU-60, numbers kept
    # A few by their published action numbers (A001, A023, A060, A061, A120; PKU-MMD 1 and 51)
    assert (ntu60[0], ntu60[22], ntu60[59]) == ('drink water', 'hand waving', 'walking apart from each other')
    assert (ntu120[60], ntu120[119]) == ('put on headphone', 'finger-guessing game (rock-paper-scissors)')
    assert (pku[0], pku[50]) == ('bow', 'writing')
    # PKU-MMD's actions are NTU-60 actions: most keep NTU-60's wording
    assert sum(name in ntu60 for name in pku) >= 44


@pytest.mark.parametrize('path, classes, expected', [
    ('data/ntu/NTU60_XSub.npz', None, 'ntu60'), ('data/ntu120/NTU120_XSet.npz', 60, 'ntu120'),
    ('data/pku_v2/PKUv2_XView.npz', None, 'pku'), ('elsewhere/mine.npz', 51, 'pku'), (None, 120, 'ntu120')])
def test_dataset_of(path, classes, expected):
    assert dataset_of(path, classes) == expected


def test_unknown_dataset_is_one_line():
    with pytest.raises(SystemExit, match="unknown dataset 'kinetics'.*ntu60, ntu120, pku"):
        action_names('kinetics')
    with pytest.raises(SystemExit, match='cannot tell the dataset of mine.npz with 13 classes'):
        dataset_of('mine.npz', 13)


@pytest.mark.parametrize('name, dataset, expected', [
    ('S001C001P001R001A001', None, 'S001C001P001R001A001: drink water'),
    ('S018C001P008R002A120', None, 'S018C001P008R002A120: finger-guessing game (rock-paper-scissors)'),
    ('S018C001P008R002A120', 'ntu60', 'S018C001P008R002A120'),  # no such action in NTU-60
    ('recording_03', None, 'recording_03')])
def test_sample_title_names_the_action_of_an_ntu_sample(name, dataset, expected):
    assert sample_title(name, dataset) == expected
