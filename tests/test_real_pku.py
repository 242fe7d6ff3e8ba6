"""scripts/real_pku.sh and config/real_pku: the study's runs differ only where the study says they do, the
pre-trained encoder loads into the linear probe and the fine-tune models weight for weight, and the table
pools the runs of every seed."""
import json
import os
import re
import subprocess

import pytest
import torch

from conftest import ROOT, shared_path
from model_mamp import MAMP
from model_transformer import SkeletonTransformer, load_pretrained
from util import config

CONFIGS = ROOT / 'config' / 'real_pku'
ENCODER = ('dim_in', 'dim_feat', 'depth', 'num_heads', 'mlp_ratio', 'num_frames', 'num_joints', 'patch_size',
           't_patch_size', 'qkv_bias')


def resolved(protocol, name):
    return vars(config.parse_args(protocol, ['--config', str(CONFIGS / f'{name}.yaml'),
                                             '--data_path', 'PKUv1_XSub.npz']))


def differences(a, b):
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


def test_mae_and_scratch_change_only_the_compared_setting():
    mamp, mae = resolved('pretrain', 'pretrain_mamp'), resolved('pretrain', 'pretrain_mae')
    assert differences(mamp, mae) == {'config', 'model_args', 'motion_aware_tau'}
    assert differences(mamp['model_args'], mae['model_args']) == {'target'}
    assert (mamp['model_args']['target'], mamp['motion_aware_tau']) == ('motion', 0.8)
    assert (mae['model_args']['target'], mae['motion_aware_tau']) == ('joints', 0.0)
    finetune, scratch = resolved('finetune', 'finetune'), resolved('finetune', 'scratch')
    assert differences(finetune, scratch) == {'config', 'layer_decay'}
    assert (finetune['layer_decay'], scratch['layer_decay']) == (0.8, 1.0)


def test_tuning_study_changes_only_the_compared_setting():
    """MAMP for 25 epochs differs from the 20 of the tuned encoder's start in its epochs alone; the few-shot
    runs leave out exactly the actions fewshot.yaml evaluates on, and nothing else changes."""
    mamp, long = resolved('pretrain', 'pretrain_mamp'), resolved('pretrain', 'pretrain_mamp_long')
    tune = resolved('tune', 'tune')
    assert differences(mamp, long) == {'config', 'epochs'}
    assert (mamp['epochs'], long['epochs']) == (20, mamp['epochs'] + tune['epochs']) == (20, 25)
    held_out = resolved('fewshot', 'fewshot')['held_out_actions']
    assert sorted(held_out) == [14, 16, 24, 27]
    for protocol, name, base in (('pretrain', 'pretrain_mamp_heldout', mamp),
                                 ('pretrain', 'pretrain_mamp_heldout_long', long), ('tune', 'tune_heldout', tune)):
        heldout = resolved(protocol, name)
        assert differences(base, heldout) == {'config', 'train_feeder_args'}, name
        assert differences(base['train_feeder_args'], heldout['train_feeder_args']) == {'exclude_actions'}, name
        assert heldout['train_feeder_args']['exclude_actions'] == held_out, name


def test_unknown_part_is_one_line_and_no_run_folder(tmp_path):
    result = subprocess.run(['bash', str(ROOT / 'scripts' / 'real_pku.sh')], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={**os.environ, 'OUTPUT_ROOT': 'out', 'PARTS': 'mamp tunign'})
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr == "error: PARTS: unknown part 'tunign' (expected some of: mamp mae finetune tuning detect)\n"
    assert not (tmp_path / 'out').exists()


def test_pretrained_encoder_loads_unchanged_into_probe_and_fine_tune():
    pretrain = resolved('pretrain', 'pretrain_mamp')
    torch.manual_seed(0)
    mamp = MAMP(**pretrain['model_args'])
    frames = pretrain['train_feeder_args']['window_size']
    for protocol, name in (('linprobe', 'linear'), ('finetune', 'finetune')):
        args = resolved(protocol, name)
        assert {k: args['model_args'][k] for k in ENCODER} == {k: pretrain['model_args'][k] for k in ENCODER}
        assert args['train_feeder_args']['window_size'] == args['val_feeder_args']['window_size'] == frames
        model = SkeletonTransformer(**args['model_args'])
        load_pretrained(model, {'model': mamp.state_dict()})
        own = model.state_dict()
        encoder = [k for k in own if not k.startswith(('head', 'fc_norm'))]
        assert 'temp_embed' in encoder and len(encoder) > 10
        for key in encoder:
            assert torch.equal(own[key], mamp.state_dict()[key]), key


def table_rows(tmp_path, benchmarks):
    """{row name: its values split at spaces} of `bash scripts/real_pku.sh table` over tmp_path/out."""
    result = subprocess.run(['bash', str(ROOT / 'scripts' / 'real_pku.sh'), 'table'], cwd=tmp_path,
                            env={**os.environ, 'OUTPUT_ROOT': 'out', 'BENCHMARKS': benchmarks}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return {name: values.split() for name, values in
            (re.split(r'\s{2,}', line, maxsplit=1) for line in result.stdout.splitlines()[1:])}


def test_table_pools_the_runs_of_every_seed(tmp_path):
    classification = ('linear_mamp', 'linear_mae', 'linear_random', 'finetune_mamp', 'scratch')
    for seed, run in enumerate(('20260101-000000', '20260101-000001')):
        for b, benchmark in enumerate(('XSub', 'XView')):
            for i, stage in enumerate(classification + ('knn_mamp', 'knn_mae', 'knn_random')):
                folder = tmp_path / 'out' / run / benchmark / stage
                folder.mkdir(parents=True)
                top1 = 10.0 * i + b + 2.0 * seed  # a different value for every stage, benchmark and seed
                mean_class = top1 / 2 + seed  # 2 apart over the seeds
                if stage in classification:
                    (folder / 'log.txt').write_text(json.dumps({'epoch': 0, 'test_acc1': top1,
                                                                'test_mean_class_acc': mean_class}) + '\n')
                else:
                    (folder / 'knn.json').write_text(json.dumps({'knn_acc1': top1,
                                                                 'knn_mean_class_acc': mean_class}) + '\n')
    rows = table_rows(tmp_path, 'XSub XView')
    assert len(rows) == 16 and not any((tmp_path / 'out').glob('*/data'))  # the table runs nothing
    # linear_mae is stage 1: XView (b = 1) gives 11 and 13 over the seeds, mean 12, sd sqrt(2); mean class
    # accuracy 5.5 and 7.5; best on test the one epoch's 11 and 13
    assert rows['XView linear probe after MAE'] == ['2', '12.00', '+-', '1.41', '(11.00-13.00)', '6.50', '+-', '1.41',
                                                    '12.00']
    # knn_random is stage 7: top-1 70 and 72, mean class 35 and 37; no best on test for kNN
    assert rows['XSub kNN from random init'] == ['2', '71.00', '+-', '1.41', '(70.00-72.00)', '36.00', '+-', '1.41',
                                                 '-']
    assert rows['XSub from scratch'][1] == '41.00'


def test_table_has_the_tuning_study_rows_of_the_runs_that_made_them(tmp_path):
    """A run of PARTS=tuning: kNN k = 1 and k = 20 from one knn.json, 1- and 5-shot from one fewshot.json, the
    fine-tune of the tuned encoder; rows of stages no run made (e.g. the MAE baseline) are left out."""
    run = tmp_path / 'out' / '20260101-000000' / 'XSub'
    (run / 'tune').mkdir(parents=True)  # the tuning run itself (its checkpoints)
    for i, encoder in enumerate(('mamp', 'tune', 'mamp_long')):
        (run / f'knn_{encoder}').mkdir()
        (run / f'knn_{encoder}' / 'knn.json').write_text(json.dumps({
            'knn_acc1': 50.0 + i, 'knn_k': 20, 'by_k': {'20': {'acc1': 50.0 + i, 'mean_class_acc': 20.0 + i},
                                                         '1': {'acc1': 40.0 + i, 'mean_class_acc': 10.0 + i}}}))
        (run / f'fewshot_heldout_{encoder}').mkdir()
        (run / f'fewshot_heldout_{encoder}' / 'fewshot.json').write_text(json.dumps({
            'by_shots': {'1': {'acc': 30.0 + i, 'ci95': 1.0}, '5': {'acc': 60.0 + i, 'ci95': 0.5}}}))
    (run / 'finetune_tune').mkdir()
    (run / 'finetune_tune' / 'log.txt').write_text(json.dumps({'epoch': 3, 'test_acc1': 77.5,
                                                               'test_mean_class_acc': 33.0}) + '\n')
    rows = table_rows(tmp_path, 'XSub')
    assert list(rows) == ['XSub kNN after MAMP'] + [
        f'XSub tuning study: {protocol}, {encoder}' for protocol in ('kNN k=1', 'kNN k=20') for encoder in
        ('MAMP 20 epochs', 'MAMP 20 + tuning 5', 'MAMP 25 epochs')] + ['XSub tuning study: fine-tune, MAMP 20 + '
        'tuning 5'] + [f'XSub tuning study: {protocol}, {encoder}' for protocol in ('4-way 1-shot', '4-way 5-shot')
                       for encoder in ('MAMP 20 epochs', 'MAMP 20 + tuning 5', 'MAMP 25 epochs')]
    assert rows['XSub kNN after MAMP'][:2] == rows['XSub tuning study: kNN k=20, MAMP 20 epochs'][:2] == ['50.00',
                                                                                                        '20.00']
    assert rows['XSub tuning study: kNN k=1, MAMP 20 + tuning 5'][:2] == ['41.00', '11.00']
    assert rows['XSub tuning study: 4-way 5-shot, MAMP 25 epochs'][:2] == ['62.00', '-']
    assert rows['XSub tuning study: fine-tune, MAMP 20 + tuning 5'] == ['77.50', '33.00', '77.50', '(3)', '4']


def test_table_has_the_detection_rows_of_every_seed(tmp_path):
    """A run of PARTS=detect: mAP_a and mAP_v at IoU 0.1, 0.3 and 0.5 of each mode and start, read from
    detection.json (not from the run's log.txt), pooled over the seeds; the MAE rows absent when no run made them."""
    for seed, run in enumerate(('20260101-000000', '20260101-000001')):
        for m, mode in enumerate(('linear', 'finetune')):
            for e, encoder in enumerate(('mamp', 'random')):
                folder = tmp_path / 'out' / run / 'XView' / f'detect_{mode}_{encoder}'
                folder.mkdir(parents=True)
                base = 20.0 * m + 5.0 * e + 2.0 * seed
                (folder / 'detection.json').write_text(json.dumps({
                    'mAP_a': {str(t): base + t for t in (0.1, 0.3, 0.5, 0.7)},
                    'mAP_v': {str(t): base + 10 + t for t in (0.1, 0.3, 0.5, 0.7)}, 'frame_acc': 60.0}))
                (folder / 'log.txt').write_text(json.dumps({'epoch': 0, 'train_loss': 1.0}) + '\n')
    rows = table_rows(tmp_path, 'XView')
    assert list(rows) == [f'XView detection ({mode}) from {start}: {kind}@{theta}' for mode in ('linear', 'finetune')
                          for start in ('MAMP', 'random init') for kind in ('mAP_a', 'mAP_v')
                          for theta in (0.1, 0.3, 0.5)]
    # fine-tuned from random init: base 25 + 2 * seed, mAP_v@0.3 = base + 10.3: 35.3 and 37.3 over the seeds
    assert rows['XView detection (finetune) from random init: mAP_v@0.3'][:5] == ['2', '36.30', '+-', '1.41',
                                                                                   '(35.30-37.30)']
    assert rows['XView detection (linear) from MAMP: mAP_a@0.5'][1] == '1.50'


def fake_clone(root, videos):
    """The folders of the public copy that scripts/pku_v1_recordings.sh reads, one short file per video."""
    for folder in ('Data/Skeleton/PKU_Skeleton_Renew', 'Label/Train_Label_PKU_final', 'Split/Split'):
        (root / folder).mkdir(parents=True)
    for video in videos:
        (root / 'Data/Skeleton/PKU_Skeleton_Renew' / f'{video}.txt').write_text(f'{video} frames\n')
        (root / 'Label/Train_Label_PKU_final' / f'{video}.txt').write_text('1,0,10,1\n')
    for name in ('cross-subject.txt', 'cross-view.txt'):
        (root / 'Split/Split' / name).write_text('Training videos:\n0002-L\n')


@pytest.mark.slow
def test_recordings_layout_copies_the_listed_videos(tmp_path):
    videos = (CONFIGS / 'videos.txt').read_text().split()
    assert len(videos) == len(set(videos)) == 218
    fake_clone(tmp_path / 'clone', videos + ['9999-L'])
    dest = tmp_path / 'v1'
    subprocess.run(['bash', str(ROOT / 'scripts/pku_v1_recordings.sh'), str(tmp_path / 'clone'), str(dest)],
                   check=True, capture_output=True)
    assert sorted(p.stem for p in (dest / 'skeleton').iterdir()) == sorted(videos)
    assert (dest / 'skeleton' / f'{videos[0]}.txt').read_text() == f'{videos[0]} frames\n'
    assert sorted(p.stem for p in (dest / 'label').iterdir()) == sorted(videos)
    assert (dest / 'cross-view.txt').is_file() and (dest / 'cross-subject.txt').is_file()


def test_recordings_layout_names_a_missing_video(tmp_path):
    videos = (CONFIGS / 'videos.txt').read_text().split()
    fake_clone(tmp_path / 'clone', videos[1:])
    result = subprocess.run(['bash', str(ROOT / 'scripts/pku_v1_recordings.sh'), str(tmp_path / 'clone'),
                             str(tmp_path / 'v1')], capture_output=True, text=True)
    assert result.returncode == 1 and not (tmp_path / 'v1').exists()
    assert result.stderr.strip() == (f"error: {tmp_path}/clone/Data/Skeleton/PKU_Skeleton_Renew/{videos[0]}.txt "
                                     f"is missing or empty (a clone without Git LFS content?); the study needs "
                                     f"all 218 videos")


def test_study_video_list_names_phase_1_videos():
    """config/real_pku/videos.txt (the README's link commands read it): 218 distinct Phase I videos, each named
    in the real cross-subject split file."""
    videos = (CONFIGS / 'videos.txt').read_text().split()
    lines = shared_path('realdata', 'pku', 'cross-subject.txt').read_text().splitlines()
    split = {v.strip() for line in (lines[1], lines[3]) for v in line.split(',') if v.strip()}
    assert len(videos) == len(set(videos)) == 218 and len(split) == 1076
    assert set(videos) <= split
