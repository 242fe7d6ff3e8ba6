"""Every numeric flag has a declared range, checked for the flag, its YAML value and --opts alike; model_args
that do not fit each other and devices that cannot train are refused before the run starts, in one line."""
import subprocess
import sys

import pytest
import yaml

import main_pretrain
from train_fixtures import ROOT, one_line_exit
from util import config, devices, flags

PROTOCOLS = {'pretrain': 'pretrain', 'linprobe': 'linear', 'finetune': 'finetune', 'knn': 'linear'}


def numeric_actions(protocol):
    return [a for a in flags.get_args_parser(protocol)._actions
            if a.type in (int, float) or isinstance(a.type, flags.Range)
            or (isinstance(a.default, (int, float)) and not isinstance(a.default, bool))]


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_every_numeric_flag_declares_a_range(protocol):
    actions = numeric_actions(protocol)
    expected = ({'batch_size', 'seed', 'num_workers', 'knn_k', 'knn_max_train'} if protocol == 'knn' else
                {'batch_size', 'epochs', 'lr', 'clip_grad', 'seed', 'num_workers', 'save_every', 'print_freq'})
    assert expected <= {a.dest for a in actions}
    assert [a.dest for a in actions if not isinstance(a.type, flags.Range)] == []


@pytest.mark.parametrize('protocol', flags.EVALUATION)
def test_evaluation_tools_take_only_the_flags_they_use(work, protocol):
    """main_knn.py and main_fewshot.py: no training flag in --help or on the command line, and the training
    settings of the config they share with a linear probe (epochs, lr, ...) are left aside."""
    taken = {a.dest for a in flags.get_args_parser(protocol)._actions}
    assert taken >= {'config', 'opts', 'data_path', 'batch_size', 'output_dir', 'device', 'seed', 'num_workers',
                     'pin_mem', 'amp', 'finetune'}
    assert not taken & {'epochs', 'lr', 'blr', 'accum_iter', 'warmup_epochs', 'weight_decay', 'resume',
                        'auto_resume', 'eval', 'dist_eval', 'save_scores', 'log_dir', 'save_every', 'print_freq',
                        'compile', 'gpu_aug', 'overwrite', 'start_epoch'}
    assert flags.training_settings(protocol) >= {'epochs', 'lr', 'weight_decay', 'resume', 'eval'}
    assert flags.training_settings('linprobe') == set()
    assert yaml.safe_load(work['linear'].read_text())['epochs'] == 1
    args = config.parse_args(protocol, ['--config', str(work['linear'])])
    assert not hasattr(args, 'epochs') and not hasattr(args, 'lr') and args.batch_size == 4
    message = one_line_exit(lambda: config.parse_args(protocol, ['--config', str(work['linear']), '--lr', '0.1']))
    assert message.startswith('error: unrecognized arguments: --lr 0.1')


@pytest.mark.parametrize('protocol', [*flags.TRAINING, *flags.EVALUATION])
def test_help_says_each_default_once(protocol):
    for action in flags.get_args_parser(protocol)._actions:
        text = (flags.HelpFormatter('prog')._get_help_string(action) or '') % vars(action)  # as --help shows it
        assert text.count('default') <= 1, text


def out_of_range(kind):
    """A value just outside Range `kind`: the excluded bound, or one step beyond an included one."""
    step = 1 if kind.kind is int else 0.5
    return kind.low if kind.open_low else kind.low - step


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_every_range_holds_for_the_flag_the_yaml_and_opts(work, tmp_path, protocol):
    """For every numeric flag: a value out of its range fails in one line naming the flag (or key), the value
    and the range, given on the command line, in the YAML config or with --opts; the bound itself passes."""
    base = str(work[PROTOCOLS[protocol]])
    for action in numeric_actions(protocol):
        key, flag, value = action.dest, action.option_strings[0], out_of_range(action.type)
        shown = f"expected {action.type}, got {value}"
        message = one_line_exit(lambda: config.parse_args(protocol, ['--config', base, flag, str(value)]))
        assert message.startswith(f"error: argument {'/'.join(action.option_strings)}: {shown} (main_"), message
        cfg = tmp_path / f'{key}.yaml'
        cfg.write_text(yaml.safe_dump({'_base_': base, key: value}))
        assert one_line_exit(lambda: config.parse_args(protocol, ['--config', str(cfg)])) == \
            f"error: {cfg}: {key}: {shown}"
        assert one_line_exit(lambda: config.parse_args(protocol, ['--config', base, '--opts', f'{key}={value}'])) == \
            f"error: --opts {key}: {shown}"
        if not action.type.open_low:
            bound = action.type.low
            several = action.nargs in ('+', '*')
            assert getattr(config.parse_args(protocol, ['--config', base, flag, str(bound)]), key) == \
                ([bound] if several else bound)


@pytest.mark.parametrize('protocol, flag, value, expected', [
    ('pretrain', '--batch_size', '0', 'argument --batch_size: expected an integer >= 1, got 0'),
    ('pretrain', '--lr', '-1', 'argument --lr: expected a number > 0, got -1'),
    ('pretrain', '--lr', 'nan', 'argument --lr: expected a number > 0, got nan'),
    ('linprobe', '--lr', 'inf', 'argument --lr: expected a number > 0, got inf'),
    ('pretrain', '--accum_iter', '0', 'argument --accum_iter: expected an integer >= 1, got 0'),
    ('pretrain', '--save_every', '0', 'argument --save_every: expected an integer >= 1, got 0'),
    ('pretrain', '--print_freq', '0', 'argument --print_freq: expected an integer >= 1, got 0'),
    ('finetune', '--num_workers', '-1', 'argument --num_workers: expected an integer >= 0, got -1'),
    ('pretrain', '--seed', '-1', 'argument --seed: expected an integer in [0, 4294967295], got -1'),
    ('pretrain', '--clip_grad', '-1', 'argument --clip_grad: expected a number > 0, got -1'),
    ('pretrain', '--mask_ratio', '1.5', 'argument --mask_ratio: expected a number in (0, 1), got 1.5'),
    ('pretrain', '--batch_size', '2.5', 'argument --batch_size: expected an integer >= 1, got 2.5'),
    ('finetune', '--layer_decay', '0', 'argument --layer_decay: expected a number in (0, 1], got 0'),
    ('finetune', '--smoothing', '1', 'argument --smoothing: expected a number in [0, 1), got 1'),
    ('knn', '--k', '0', 'argument --k/--knn_k: expected an integer >= 1, got 0'),
    ('knn', '--t', '0', 'argument --t/--knn_t: expected a number > 0, got 0'),
    ('knn', '--knn_max_train', '-1', 'argument --knn_max_train: expected an integer >= 0, got -1'),
    ('pretrain', '--knn_every', '-1', 'argument --knn_every: expected an integer >= 0, got -1'),
    ('pretrain', '--vis_every', '-1', 'argument --vis_every: expected an integer >= 0, got -1'),
    ('pretrain', '--motion_stride', '100', '{cfg}: motion_stride=100: expected 1 <= motion_stride < num_frames=24'),
    ('pretrain', '--mask_ratio', '0.999', '{cfg}: mask_ratio=0.999 keeps 0 of the 150 tokens of a sequence; it '
                                         'must keep at least one and mask at least one'),
    ('pretrain', '--opts', 'model_args.num_heads=3', '{cfg}: model_args: num_heads=3 must divide dim_feat=32 (each '
                                                     'head takes dim_feat / num_heads channels)'),
    ('pretrain', '--opts', 'model_args.depth=-1', '{cfg}: model_args: depth=-1: expected an integer >= 1'),
    ('pretrain', '--opts', 'model_args.decoder_dim_feat=33', '{cfg}: model_args: num_heads=2 must divide '
                                                             'decoder_dim_feat=33'),
    ('pretrain', '--opts', 'model_args.target=bones', "{cfg}: model_args: target='bones': expected 'motion' or "
                                                      "'joints'"),
    ('finetune', '--opts', 'model_args.t_patch_size=5', '{cfg}: model_args: num_frames=24 must be divisible by '
                                                        't_patch_size=5 and num_joints=25 by patch_size=1'),
    ('finetune', '--opts', 'model_args.num_classes=0', '{cfg}: model_args: num_classes=0: expected an integer >= 1'),
    ('finetune', '--opts', 'model_args.drop_path_rate=1.5', '{cfg}: model_args: drop_path_rate=1.5: expected a '
                                                            'number in [0, 1)'),
    ('linprobe', '--opts', 'model_args.protocol=knn', "{cfg}: model_args: protocol='knn': expected 'linprobe' or "
                                                      "'finetune'"),
    ('linprobe', '--opts', 'model_args.norm_layer=BatchNorm', "{cfg}: model_args: norm_layer='BatchNorm': expected "
                                                              "one of ['LayerNorm', 'nn.LayerNorm']"),
])
def test_bad_value_is_one_line_naming_it(work, protocol, flag, value, expected):
    cfg = work[PROTOCOLS[protocol]]
    message = one_line_exit(lambda: config.parse_args(protocol, ['--config', str(cfg), flag, value]))
    assert message.startswith(f"error: {expected.format(cfg=cfg)}"), message


@pytest.mark.parametrize('device', ['meta', 'xla', 'cpu:x'])
def test_a_device_that_cannot_train_is_one_line(work, tmp_path, device):
    args = config.parse_args('pretrain', ['--config', str(work['pretrain']), '--output_dir', str(tmp_path / 'out'),
                                          '--device', device])
    assert one_line_exit(lambda: main_pretrain.main(args)) == (
        f"error: --device {device}: not a device to run on (expected auto, cpu, cuda, cuda:N or mps)")
    assert not (tmp_path / 'out').exists()
    assert devices.resolve_device('cpu').type == 'cpu'


@pytest.mark.slow
def test_a_bad_flag_ends_the_process_in_one_line(work, tmp_path):
    """The real process: status 1, no usage text, no traceback."""
    result = subprocess.run([sys.executable, str(ROOT / 'main_pretrain.py'), '--config', str(work['pretrain']),
                             '--output_dir', str(tmp_path / 'out'), '--batch_size', '0'], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1 and result.stdout == '' and result.stderr.splitlines() == [
        "error: argument --batch_size: expected an integer >= 1, got 0 (main_pretrain.py --help lists the flags)"]


def test_help_shows_each_range():
    text = ' '.join(flags.get_args_parser('pretrain').format_help().split())
    assert 'fraction of tokens masked (default: 0.9); a number in (0, 1)' in text
    assert 'log the training loss every this many steps (default: 20); an integer >= 1' in text
