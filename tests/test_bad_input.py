"""Bad input to the entry points, one row each: the tool stops with status 1 and exactly one line on stderr
starting with 'error:' (short, no traceback), and leaves no output file behind and every input as it was.

A row is (tool, kind, command builder, expected fragment of the error line). The builder gets the workspace
`w` (w.ins: shared input files, w.out: an empty folder of this row; w.held(lock, path) holds `lock` from another
process and returns `path`) and returns the tool's arguments; '{holder}' in the fragment is that process's pid.
Tools run in this process (their stderr captured), except for the 'full disk' rows, which run in a subprocess
whose file size limit (RLIMIT_FSIZE) fails every write past FULL_DISK bytes, as a full disk does. To cover a
new tool, add it to TOOLS and give it rows.
"""
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ensemble
import export
import main_finetune
import main_knn
import predict
import visualize
from conftest import ROOT
from data import ntu, pku, synthetic
from data.kinect import write_skeleton
from data.pipeline import run_command
from test_data_pku import write_splits, write_video
from model_mamp import MAMP
from train_fixtures import TINY_ENCODER, write_classifier_checkpoint, write_config, write_npz
from util import config, lock
from util.scores import save_scores

FULL_DISK = 512  # bytes a file may grow to in the 'full disk' rows (0 in the 'full disk at start' rows)
MAX_LINE = 400  # characters of an error line

# tool -> (run in this process with the arguments, how a subprocess runs it: ('path', script) or ('module', name))
TOOLS = {
    'predict.py': (predict.main, ('path', 'predict.py')),
    'ensemble.py': (ensemble.main, ('path', 'ensemble.py')),
    'export.py': (export.main, ('path', 'export.py')),
    'data.ntu': (lambda argv: run_command(lambda: ntu.main(argv)), ('module', 'data.ntu')),
    'data.pku': (lambda argv: run_command(lambda: pku.main(argv)), ('module', 'data.pku')),
    'main_finetune.py': (lambda argv: main_finetune.main(config.parse_args('finetune', argv)),
                         ('path', 'main_finetune.py')),
    'main_knn.py': (lambda argv: main_knn.main(config.parse_args('knn', argv)), ('path', 'main_knn.py')),
    'visualize.py': (visualize.main, ('path', 'visualize.py')),
}

P, NTU, OUT, CK = '--checkpoint', ['--dataset', 'ntu60', '--workers', '1'], '--out-dir', 'ckpt.pth'


def finetune_args(w):
    """A tiny fine-tuning run into the row's folder."""
    return ['--config', w.ins / 'finetune.yaml', '--output_dir', w.out, '--device', 'cpu']


def earlier_run_args(w):
    """A fine-tuning run into a folder that holds an earlier run's checkpoint, without --auto_resume."""
    shutil.copy(w.ins / CK, w.out / 'checkpoint-last.pth')
    return finetune_args(w)


def knn_args(w):
    return ['--config', w.ins / 'linear.yaml', '--output_dir', w.out, '--device', 'cpu']


def confusion_args(w):
    return ['confusion', '--config', w.ins / 'finetune.yaml', '--device', 'cpu', '--out', w.out / 'c.png']


def masking_args(w):
    return ['masking', '--config', w.ins / 'pretrain.yaml', '--device', 'cpu', '--out', w.out / 'm.png']


ROWS = [
    ('predict.py', 'missing', lambda w: [P, w.ins / CK, w.ins / 'nope.skeleton'], 'nope.skeleton: no such file'),
    ('predict.py', 'missing', lambda w: [P, w.ins / 'nope.pth', w.ins / 'ntu'], 'nope.pth'),
    ('predict.py', 'empty', lambda w: [P, w.ins / CK, w.ins / 'empty' / 'S001C001P001R001A001.skeleton'],
     'S001C001P001R001A001.skeleton:1: file ends early'),
    ('predict.py', 'empty', lambda w: [P, w.ins / CK, w.ins / 'empty.npz'], 'empty.npz: not an .npz archive'),
    ('predict.py', 'truncated', lambda w: [P, w.ins / CK, w.ins / 'cut' / 'S001C001P001R001A001.skeleton'],
     'S001C001P001R001A001.skeleton:'),
    ('predict.py', 'truncated', lambda w: [P, w.ins / CK, w.ins / 'cut.npz'], 'cut.npz: not an .npz archive'),
    ('predict.py', 'truncated', lambda w: [P, w.ins / 'cut.pth', w.ins / 'ntu'], 'cut.pth: damaged checkpoint'),
    ('predict.py', 'unreadable', lambda w: [P, w.ins / CK, w.ins / 'fifo.skeleton'], 'fifo.skeleton: not a regular'),
    ('predict.py', 'unreadable', lambda w: [P, w.ins / CK, w.ins / 'odd'], 'dir.skeleton: not a regular file'),
    ('predict.py', 'wrong kind', lambda w: [P, w.ins / CK, w.ins / 'a.csv'], 'a.csv: not an NTU .skeleton'),
    ('predict.py', 'wrong kind', lambda w: [P, w.ins / CK, w.ins / 'binary' / 'S001C001P001R001A001.skeleton'],
     'expected the number of frames'),
    ('predict.py', 'wrong kind', lambda w: [P, w.ins / 'pku' / 'label' / '0002-L.txt', w.ins / 'ntu'],
     '0002-L.txt: not a PyTorch checkpoint'),
    ('predict.py', 'out of range', lambda w: [P, w.ins / CK, w.ins / 'pku' / 'skeleton' / '0002-L.txt', '--start',
                                              '40', '--end', '50'], '0002-L.txt: --start 40 is past its 40 frames'),
    ('predict.py', 'out of range', lambda w: [P, w.ins / CK, w.ins / 'ntu', '--workers', '0'], '--workers'),
    ('predict.py', 'out of range', lambda w: [P, w.ins / CK, w.ins / 'ntu', '--out', w.out / 'no' / 'p.csv'],
     'p.csv: no folder'),
    ('predict.py', 'full disk', lambda w: [P, w.ins / CK, w.ins / 'NTU60_XSub.npz', '--scores', w.out / 's.npz'],
     's.npz: [Errno 27] File too large'),
    ('predict.py', 'out of range', lambda w: [P, w.ins / 'window_huge.pth', w.ins / 'ntu'],
     'window_huge.pth: args.val_feeder_args.window_size: expected -1 (keep the frames) or an integer in [1, 1000], '
     'got 100000000'),
    ('predict.py', 'out of range', lambda w: [P, w.ins / 'window_zero.pth', w.ins / 'ntu'],
     'window_zero.pth: args.val_feeder_args.window_size: expected -1 (keep the frames) or an integer in [1, 1000], '
     'got 0'),
    ('predict.py', 'wrong kind', lambda w: [P, w.ins / 'unknown_key.pth', w.ins / 'ntu'],
     "unknown_key.pth: unknown key 'shuffle_joints' in args.val_feeder_args (feeder.feeder_ntu.Feeder takes: "),
    ('predict.py', 'wrong kind', lambda w: [P, w.ins / 'bad_exclude.pth', w.ins / 'ntu'],
     'bad_exclude.pth: args.val_feeder_args.exclude_actions: expected an integer >= 1, got abc'),
    ('predict.py', 'wrong kind', lambda w: [P, w.ins / 'other_shapes.pth', w.ins / 'ntu'],
     'other_shapes.pth: the stored model_args do not fit its weights: depth is 40, the weights have 1'),
    ('predict.py', 'wrong kind', lambda w: [P, w.ins / CK, w.ins / 'mixed'],
     'give either NTU .skeleton files, PKU-MMD .txt files or one .npz, not a mix'),
    ('predict.py', 'wrong kind', lambda w: [P, w.ins / CK, *sorted((w.ins / 'mixed').iterdir())],
     'give either NTU .skeleton files, PKU-MMD .txt files or one .npz, not a mix'),
    ('predict.py', 'out of range', lambda w: [P, w.ins / CK, w.ins / 'nan' / 'NTU60_XSub.npz'],
     'nan/NTU60_XSub.npz: x_test[2, 5, 7] is nan, not a finite number'),
    ('ensemble.py', 'missing', lambda w: [w.ins / 'a.npz', w.ins / 'nope.npz'], 'nope.npz: no such file'),
    ('ensemble.py', 'empty', lambda w: [w.ins / 'none.npz', w.ins / 'none.npz'], 'none.npz: no samples'),
    ('ensemble.py', 'truncated', lambda w: [w.ins / 'a.npz', w.ins / 'cut_scores.npz'], 'cut_scores.npz: not a score'),
    ('ensemble.py', 'unreadable', lambda w: [w.ins / 'a.npz', w.ins / 'odd'], 'odd: a folder'),
    ('ensemble.py', 'wrong kind', lambda w: [w.ins / 'a.npz', w.ins / 'NTU60_XSub.npz'], 'no names, logits, labels'),
    ('ensemble.py', 'wrong kind', lambda w: [w.ins / 'a.npz', w.ins / 'a.csv'],
     'a.csv: not a score file (not an .npz archive); give a file written by --save_scores or predict.py --scores'),
    ('ensemble.py', 'out of range', lambda w: [w.ins / 'a.npz', w.ins / 'label9.npz'], 'has label 9, outside 0 .. 2'),
    ('ensemble.py', 'out of range', lambda w: [w.ins / 'a.npz', w.ins / 'nan.npz'], 'has a non-finite logit'),
    ('ensemble.py', 'out of range', lambda w: [w.ins / 'a.npz', w.ins / 'a.npz', '--weights', 'nan', '1'],
     '--weights nan 1.0: expected finite'),
    ('ensemble.py', 'out of range', lambda w: [w.ins / 'a.npz', w.ins / 'a.npz', '--weights', '0', '0'],
     '--weights 0.0 0.0: expected finite, non-negative numbers, at least one above 0'),
    ('ensemble.py', 'missing', lambda w: [w.ins / 'a.npz', '--out', w.out / 'no' / 'f.npz'], 'f.npz: no folder'),
    ('ensemble.py', 'full disk', lambda w: [w.ins / 'a.npz', '--out', w.out / 'f.npz'],
     'f.npz: [Errno 27] File too large'),
    ('export.py', 'missing', lambda w: [w.ins / 'nope.pth', '--out', w.out / 'm'], 'nope.pth'),
    ('export.py', 'truncated', lambda w: [w.ins / 'cut.pth', '--out', w.out / 'm'], 'cut.pth: damaged checkpoint'),
    ('export.py', 'unreadable', lambda w: [w.ins / CK, '--out', w.ins / 'a.csv' / 'm'], 'cannot create the folder'),
    ('export.py', 'wrong kind', lambda w: [w.ins / CK, '--out', w.ins / 'a.csv'], 'a.csv: is a file; give a folder'),
    ('export.py', 'wrong kind', lambda w: [w.ins / CK, '--out', w.ins / 'pku'], 'holds cross-subject.txt, which is'),
    ('export.py', 'concurrent', lambda w: [w.ins / CK, '--out', w.held(w.out / '.m.lock', w.out / 'm')],
     'in use by another export (pid {holder})'),
    ('export.py', 'full disk', lambda w: [w.ins / CK, '--out', w.out / 'm'], 'model.safetensors: File too large'),
    ('export.py', 'full disk at start', lambda w: [w.ins / CK, '--out', w.out / 'm'],
     '--out {out}/m: cannot write its lock file .m.lock (File too large)'),
    ('export.py', 'out of range', lambda w: [w.ins / 'window_huge.pth', '--out', w.out / 'm'],
     'window_huge.pth: args.val_feeder_args.window_size: expected -1 (keep the frames) or an integer in [1, 1000]'),
    ('export.py', 'out of range', lambda w: [w.ins / 'window_zero.pth', '--out', w.out / 'm'],
     'window_zero.pth: args.val_feeder_args.window_size: expected -1 (keep the frames) or an integer in [1, 1000], '
     'got 0'),
    ('export.py', 'wrong kind', lambda w: [w.ins / 'unknown_key.pth', '--out', w.out / 'm'],
     "unknown_key.pth: unknown key 'shuffle_joints' in args.val_feeder_args"),
    ('export.py', 'wrong kind', lambda w: [w.ins / 'other_shapes.pth', '--out', w.out / 'm'],
     'other_shapes.pth: the stored model_args do not fit its weights: depth is 40, the weights have 1'),
    ('data.ntu', 'missing', lambda w: [*NTU, '--raw-dir', w.ins / 'nope', OUT, w.out], 'nope: no such folder'),
    ('data.ntu', 'empty', lambda w: [*NTU, '--raw-dir', w.ins / 'odd' / 'empty', OUT, w.out], 'no .skeleton files'),
    ('data.ntu', 'truncated', lambda w: [*NTU, '--raw-dir', w.ins / 'cut', OUT, w.out], '.skeleton:'),
    ('data.ntu', 'unreadable', lambda w: [*NTU, '--raw-dir', w.ins / 'odd', OUT, w.out], 'dir.skeleton: not a regular'),
    ('data.ntu', 'wrong kind', lambda w: [*NTU, '--raw-dir', w.ins / 'binary', OUT, w.out], 'expected the number of'),
    ('data.ntu', 'wrong kind', lambda w: [*NTU, '--raw-dir', w.ins / 'ntu', OUT, w.ins / 'a.csv'],
     'a.csv: cannot create the folder'),
    ('data.ntu', 'out of range', lambda w: [*NTU, '--raw-dir', w.ins / 'a61', OUT, w.out], 'outside 1..60'),
    ('data.ntu', 'concurrent', lambda w: [*NTU, '--raw-dir', w.ins / 'ntu', OUT, w.held(w.out / '.lock', w.out)],
     'in use by another data.ntu / data.pku / data.synthetic run (pid {holder})'),
    ('data.ntu', 'full disk', lambda w: [*NTU, '--raw-dir', w.ins / 'ntu', OUT, w.out], 'File too large'),
    ('data.ntu', 'full disk at start', lambda w: [*NTU, '--raw-dir', w.ins / 'ntu', OUT, w.out],
     '--out-dir {out}: cannot write its lock file .lock (File too large)'),
    ('data.pku', 'missing', lambda w: ['--phase', '1', '--raw-dir', w.ins / 'nope', OUT, w.out], 'no split file'),
    ('data.pku', 'empty', lambda w: ['--phase', '1', '--raw-dir', w.ins / 'pku_empty', OUT, w.out],
     'no skeleton .txt files'),
    ('data.pku', 'truncated', lambda w: ['--phase', '1', '--raw-dir', w.ins / 'pku_cut', OUT, w.out],
     '0002-L.txt:2: expected label,start,end,confidence'),
    ('data.pku', 'unreadable', lambda w: ['--phase', '1', '--raw-dir', w.ins / 'pku_fifo', OUT, w.out],
     '0003-L.txt: not a regular file'),
    ('data.pku', 'out of range', lambda w: ['--phase', '1', '--raw-dir', w.ins / 'pku_late', OUT, w.out],
     'frames 50 to 60 are not within the 40 frames'),
    ('data.pku', 'concurrent', lambda w: ['--phase', '1', '--raw-dir', w.ins / 'pku', OUT,
                                          w.held(w.out / '.lock', w.out)], 'in use by another data.ntu'),
    ('data.pku', 'full disk', lambda w: ['--phase', '1', '--raw-dir', w.ins / 'pku', OUT, w.out], 'File too large'),
    ('main_finetune.py', 'missing', lambda w: [*finetune_args(w), '--finetune', w.ins / 'nope.pth'], 'nope.pth'),
    ('main_finetune.py', 'empty', lambda w: [*finetune_args(w), '--resume', w.ins / 'empty.npz'], 'empty.npz'),
    ('main_finetune.py', 'truncated', lambda w: [*finetune_args(w), '--finetune', w.ins / 'cut.pth'],
     'cut.pth: damaged'),
    ('main_finetune.py', 'unreadable', lambda w: [*finetune_args(w), '--finetune', w.ins / 'odd'], 'odd: a folder'),
    ('main_finetune.py', 'wrong kind', lambda w: [*finetune_args(w), '--finetune', w.ins / 'a.csv'],
     'a.csv: not a PyTorch'),
    ('main_finetune.py', 'out of range', lambda w: [*finetune_args(w), '--batch_size', '0'],
     'argument --batch_size: expected an integer >= 1, got 0'),
    ('main_finetune.py', 'concurrent', lambda w: ['--config', w.ins / 'finetune.yaml', '--output_dir',
                                                  w.held(w.out / '.lock', w.out)], 'in use by a running training'),
    ('main_finetune.py', 'full disk', lambda w: finetune_args(w), 'File too large'),
    ('main_finetune.py', 'full disk at start', lambda w: finetune_args(w),
     '--output_dir {out}: cannot write its lock file .lock (File too large)'),
    ('main_finetune.py', 'out of range', lambda w: ['--config', w.ins / 'nan.yaml', '--output_dir', w.out, '--device',
                                                    'cpu'], 'nan/NTU60_XSub.npz: x_train[1, 3, 0] is nan, not a finite'),
    ('main_finetune.py', 'earlier run', earlier_run_args,
     'holds an earlier run (checkpoint-last.pth); --auto_resume continues it, --overwrite starts afresh'),
    ('main_knn.py', 'missing', lambda w: [*knn_args(w), '--finetune', w.ins / 'nope.pth'], 'nope.pth'),
    ('main_knn.py', 'empty', lambda w: ['--config', w.ins / 'no_test.yaml', '--output_dir', w.out, '--device', 'cpu'],
     'NTU60_XSub.npz: the test split has no sample'),
    ('main_knn.py', 'truncated', lambda w: [*knn_args(w), '--finetune', w.ins / 'cut.pth'], 'cut.pth: damaged'),
    ('main_knn.py', 'wrong kind', lambda w: [*knn_args(w), '--finetune', w.ins / 'a.csv'], 'a.csv: not a PyTorch'),
    ('main_knn.py', 'out of range', lambda w: [*knn_args(w), '--k', '0'],
     'argument --k/--knn_k: expected an integer >= 1'),
    ('main_knn.py', 'out of range', lambda w: ['--config', w.ins / 'nan_linear.yaml', '--output_dir', w.out, '--device',
                                               'cpu'], 'nan/NTU60_XSub.npz: x_train[1, 3, 0] is nan, not a finite'),
    ('visualize.py', 'missing', lambda w: [*confusion_args(w), P, w.ins / 'nope.pth'], 'nope.pth'),
    ('visualize.py', 'truncated', lambda w: [*confusion_args(w), P, w.ins / 'cut.pth'], 'cut.pth: damaged'),
    ('visualize.py', 'out of range', lambda w: [*confusion_args(w), P, w.ins / CK, '--dpi', '0'], '--dpi'),
    ('visualize.py', 'empty', lambda w: ['sequence', '--npz', w.ins / 'empty.npz', '--index', '0', '--out',
                                         w.out / 's.gif'], 'empty.npz'),
    ('visualize.py', 'unreadable', lambda w: ['sequence', '--npz', w.ins / 'fifo.npz', '--index', '0', '--out',
                                              w.out / 's.gif'], 'fifo.npz: not a regular file (a pipe or a device)'),
    ('visualize.py', 'out of range', lambda w: ['sequence', '--npz', w.ins / 'nan' / 'NTU60_XSub.npz', '--index', '0',
                                                '--out', w.out / 's.gif'], 'x_test[2, 5, 7] is nan, not a finite'),
    ('visualize.py', 'out of range', lambda w: [*masking_args(w), P, w.ins / 'mask_ratio_1.5.pth'],
     'mask_ratio_1.5.pth: args.mask_ratio: expected a number in (0, 1), got 1.5'),
    ('visualize.py', 'wrong kind', lambda w: [*masking_args(w), P, w.ins / 'mask_ratio_abc.pth'],
     'mask_ratio_abc.pth: args.mask_ratio: expected a number in (0, 1), got abc'),
]
# chmod 000 stops no root: the 'unreadable' rows use a folder or a pipe where a file is expected instead.

HOLD = ("import sys, time; from util import lock; lock.hold(sys.argv[1], '', '', ''); print('locked', flush=True); "
        "time.sleep(600)")
WITH_FULL_DISK = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
how, target, *sys.argv = sys.argv[2:]
sys.argv.insert(0, target)
if how == 'module':
    runpy.run_module(target, run_name='__main__', alter_sys=True)
else:
    runpy.run_path(target, run_name='__main__')
"""


def write_stored_settings(ins):
    """Checkpoints whose stored settings are out of their declared types and ranges, or do not fit the weights."""
    checkpoint = torch.load(ins / CK, weights_only=True)
    for name, key, value in (('window_huge', 'window_size', 10 ** 8), ('window_zero', 'window_size', 0),
                             ('unknown_key', 'shuffle_joints', True), ('bad_exclude', 'exclude_actions', 'abc')):
        changed = copy.deepcopy(checkpoint)
        changed['args']['val_feeder_args'][key] = value
        torch.save(changed, ins / f'{name}.pth')
    changed = copy.deepcopy(checkpoint)
    changed['args']['model_args']['depth'] = 40
    torch.save(changed, ins / 'other_shapes.pth')
    write_config(ins / 'pretrain.yaml', 'ntu60_xsub/pretrain_mamp.yaml', ins / 'NTU60_XSub.npz')
    mamp = MAMP(**TINY_ENCODER, decoder_dim_feat=32, decoder_depth=1)
    for value in (1.5, 'abc'):
        torch.save({'model': mamp.state_dict(), 'epoch': 0, 'args': {'mask_ratio': value}},
                   ins / f'mask_ratio_{value}.pth')


def write_inputs(ins):
    """The shared input files of the rows (small, made once)."""
    write_classifier_checkpoint(ins / CK, 'finetune')
    (ins / 'cut.pth').write_bytes((ins / CK).read_bytes()[:5000])
    synthetic.main(['--out-dir', str(ins / 'synthetic'), '--format', 'skeleton', '--num-train', '2', '--num-test', '1'])
    lock.release()  # the synthetic data's folder, as at the end of its process
    (ins / 'synthetic' / 'raw').rename(ins / 'ntu')
    first = sorted((ins / 'ntu').glob('*.skeleton'))[0].read_bytes()
    for folder, data in (('empty', b''), ('cut', first[:3000]), ('binary', bytes(range(11, 256)) * 80)):
        (ins / folder).mkdir()
        (ins / folder / 'S001C001P001R001A001.skeleton').write_bytes(data)
    (ins / 'odd' / 'dir.skeleton').mkdir(parents=True)
    (ins / 'odd' / 'empty').mkdir()
    os.mkfifo(ins / 'fifo.skeleton')
    (ins / 'a61').mkdir()
    write_skeleton(ins / 'a61' / 'S018C001P045R001A061.skeleton', [[]])
    write_npz(ins / 'NTU60_XSub.npz', num_train=4, num_test=12)
    write_config(ins / 'finetune.yaml', 'ntu60_xsub/finetune.yaml', ins / 'NTU60_XSub.npz')
    write_config(ins / 'linear.yaml', 'ntu60_xsub/linear.yaml', ins / 'NTU60_XSub.npz')
    (ins / 'no_test').mkdir()
    write_npz(ins / 'no_test' / 'NTU60_XSub.npz', num_train=4, num_test=0)
    write_config(ins / 'no_test.yaml', 'ntu60_xsub/linear.yaml', ins / 'no_test' / 'NTU60_XSub.npz')
    (ins / 'empty.npz').write_bytes(b'')
    (ins / 'cut.npz').write_bytes((ins / 'NTU60_XSub.npz').read_bytes()[:2000])
    (ins / 'a.csv').write_text('name\n')
    scores = {'a': ([[3, 0, 0], [0, 2, 0], [1, 2, 0]], [0, 1, 2]), 'label9': (np.eye(3), [0, 1, 9]),
              'nan': (np.full((3, 3), np.nan), [0, 1, 2]), 'none': (np.zeros((0, 3)), [])}
    for name, (logits, labels) in scores.items():
        save_scores(ins / f'{name}.npz', ['a', 'b', 'c'][:len(labels)], logits, labels)
    (ins / 'cut_scores.npz').write_bytes((ins / 'a.npz').read_bytes()[:300])
    write_stored_settings(ins)
    (ins / 'nan').mkdir()
    arrays = dict(np.load(ins / 'NTU60_XSub.npz'))
    arrays['x_train'][1, 3, 0] = arrays['x_test'][2, 5, 7] = np.nan
    np.savez(ins / 'nan' / 'NTU60_XSub.npz', **arrays)
    write_config(ins / 'nan.yaml', 'ntu60_xsub/finetune.yaml', ins / 'nan' / 'NTU60_XSub.npz')
    write_config(ins / 'nan_linear.yaml', 'ntu60_xsub/linear.yaml', ins / 'nan' / 'NTU60_XSub.npz')
    os.mkfifo(ins / 'fifo.npz')
    video = np.round(np.random.default_rng(0).normal(size=(40, 150)), 4)
    for raw, labels in (('pku', ['3,0,12,1']), ('pku_cut', ['3,0,12,1', '5,15']), ('pku_late', ['3,50,60,1']),
                        ('pku_fifo', ['3,0,12,1'])):
        write_video(ins / raw, '0002-L', video, labels)
        write_splits(ins / raw, ['0002-L'], ['0002-L'])
    os.mkfifo(ins / 'pku_fifo' / 'skeleton' / '0003-L.txt')
    (ins / 'mixed').mkdir()
    shutil.copy(sorted((ins / 'ntu').glob('*.skeleton'))[0], ins / 'mixed')
    shutil.copy(ins / 'pku' / 'skeleton' / '0002-L.txt', ins / 'mixed')
    (ins / 'pku_empty' / 'skeleton').mkdir(parents=True)
    write_splits(ins / 'pku_empty', ['0002-L'], ['0002-L'])


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    ins = tmp_path_factory.mktemp('inputs')
    write_inputs(ins)
    return ins


class Workspace:
    def __init__(self, ins, out):
        self.ins, self.out, self.holders = ins, out, []
        out.mkdir()

    def held(self, lock_file, path):
        """Hold `lock_file` from another process (until the row ends); returns str(path)."""
        Path(lock_file).parent.mkdir(parents=True, exist_ok=True)
        holder = subprocess.Popen([sys.executable, '-c', HOLD, str(lock_file)], cwd=ROOT, stdout=subprocess.PIPE,
                                  text=True)
        self.holders.append(holder)
        assert holder.stdout.readline().strip() == 'locked'
        return str(path)


def files(*folders):
    """{path: (size, mtime)} of the regular files under `folders`, but lock files (they hold the last pid) and
    the per-file caches of the data commands (results kept for a rerun)."""
    found = {}
    for folder in folders:
        for path in folder.rglob('*'):
            if path.is_file() and not path.name.endswith('.lock') and 'cache' not in path.parts:
                found[path] = (path.stat().st_size, path.stat().st_mtime_ns)
    return found


def lock_files(*folders):
    """The lock files under `folders`: a run that stops leaves none of its own."""
    return {path for folder in folders for path in folder.rglob('*.lock')}


def run(tool, argv, full_disk, capfd):
    """(exit status, stderr) of `tool` with `argv`: in this process, or in a subprocess whose files cannot grow past
    `full_disk` bytes (a full disk)."""
    in_process, (how, target) = TOOLS[tool]
    if full_disk is not None:
        target = str(ROOT / target) if how == 'path' else target
        result = subprocess.run([sys.executable, '-c', WITH_FULL_DISK, str(full_disk), how, target, *argv], cwd=ROOT,
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONDONTWRITEBYTECODE': '1',
                                     'PYTHONPATH': str(ROOT)})
        return result.returncode, result.stderr
    capfd.readouterr()
    try:
        in_process(argv)
        status, message = 0, ''
    except SystemExit as stop:
        status, message = (1, f"{stop.code}\n") if isinstance(stop.code, str) else (stop.code, '')
    finally:
        lock.release()
    return status, capfd.readouterr().err + message


@pytest.mark.parametrize('tool, kind, command, fragment', [
    pytest.param(*row, marks=pytest.mark.slow) if row[1] == 'full disk' else row for row in ROWS  # a subprocess
], ids=[f"{r[0]}-{r[1]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input_is_one_line_and_leaves_nothing(inputs, tmp_path, capfd, tool, kind, command, fragment):
    w = Workspace(inputs, tmp_path / 'out')
    try:
        argv = [str(a) for a in command(w)]
        before, locks = files(inputs, tmp_path), lock_files(inputs, tmp_path)
        status, stderr = run(tool, argv, {'full disk': FULL_DISK, 'full disk at start': 0}.get(kind), capfd)
    finally:
        for holder in w.holders:
            holder.kill()
            holder.wait()
    errors = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert status == 1 and len(errors) == 1 and 'Traceback' not in stderr, stderr[-3000:]
    assert stderr.rstrip().endswith(errors[0]) and len(errors[0]) <= MAX_LINE, stderr[-3000:]
    expected = fragment.format(holder=w.holders[0].pid if w.holders else '', out=w.out)
    assert expected in errors[0]
    assert files(inputs, tmp_path) == before and lock_files(inputs, tmp_path) == locks


def test_the_table_covers_every_tool_and_kind():
    kinds = {'missing', 'empty', 'truncated', 'unreadable', 'wrong kind', 'out of range', 'concurrent', 'full disk',
             'full disk at start', 'earlier run'}
    assert {r[0] for r in ROWS} == set(TOOLS) and {r[1] for r in ROWS} == kinds


def test_an_npz_that_cannot_be_read_is_not_called_another_kind_of_file(inputs, monkeypatch):
    """chmod 000 stops no root: the open is refused instead. The line says the file cannot be read, not that it
    is no .npz archive."""
    import feeder.feeder_ntu

    def refuse(file, *args, **kwargs):
        raise PermissionError(13, 'Permission denied', str(file))
    monkeypatch.setattr(feeder.feeder_ntu, 'open', refuse, raising=False)
    path = inputs / 'NTU60_XSub.npz'
    with pytest.raises(ValueError) as error:
        feeder.feeder_ntu.load_npz(path, ('x_test',))
    assert str(error.value) == f"{path}: cannot be read (Permission denied); check its permissions"
