"""Command line + YAML config -> one argparse.Namespace, shared by main_pretrain/linprobe/finetune.py.

Precedence, lowest first: the parser defaults, the YAML file given by --config (which may name a `_base_`
YAML it extends), the flags given on the command line, then `--opts KEY=VALUE ...` (dotted keys reach into
the nested dicts: `--opts model_args.depth=4 train_feeder_args.window_size=64`). `--data_path` replaces the
data_path of both feeders. An unknown key anywhere is an error naming the key and the file.
"""
import argparse
import importlib
import inspect
from pathlib import Path

import yaml

# Keys that only a config (or --opts) sets: the classes to build (module.Class) and their arguments (mappings).
CONFIG_ONLY = {'feeder': str, 'train_feeder_args': dict, 'val_feeder_args': dict, 'model': str, 'model_args': dict}
NOT_IN_CONFIG = ('config', 'opts')


def fail(message):
    """Stop with one line on stderr (exit status 1), no traceback: for mistakes in the user's input."""
    raise SystemExit(f"error: {message}")


def get_args_parser(protocol):
    """The command-line flags of entry point `protocol` (pretrain, linprobe, finetune, knn, tune or fewshot); each
    flag may also be a config key."""
    parser = argparse.ArgumentParser(f'main_{protocol}.py', formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description=f'MAMP {protocol}: settings come from --config; the flags '
                                                 f'below override it.')
    bool_flag = argparse.BooleanOptionalAction
    parser.add_argument('--config', required=True, help='YAML config, e.g. config/ntu60_xsub/%s.yaml' % {
        'pretrain': 'pretrain_mamp', 'linprobe': 'linear', 'finetune': 'finetune', 'knn': 'linear',
        'tune': 'tune', 'fewshot': 'fewshot'}[protocol])
    parser.add_argument('--opts', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                        help='override config values, dotted for nested ones (model_args.depth=4); '
                             'several --opts add up')
    parser.add_argument('--data_path', default=None, help='data file for both the train and the test feeder')

    g = parser.add_argument_group('optimisation')
    g.add_argument('--batch_size', type=int, default=64, help='per process; effective batch is '
                                                               'batch_size * accum_iter * number of processes')
    g.add_argument('--epochs', type=int, default=100)
    g.add_argument('--accum_iter', type=int, default=1, help='gradient accumulation steps per optimiser step')
    g.add_argument('--published_batch', type=int, default=None,
                   help='effective batch of the published run of this config; a run with another one says so')
    g.add_argument('--lr', type=float, default=None, help='absolute learning rate (default: blr * batch / 256)')
    g.add_argument('--blr', type=float, default=1e-3, help='base learning rate, for an effective batch of 256')
    g.add_argument('--min_lr', type=float, default=0., help='end of the cosine schedule')
    g.add_argument('--warmup_epochs', type=float, default=0., help='linear warm-up, per iteration')
    g.add_argument('--weight_decay', type=float, default=0.05)
    g.add_argument('--clip_grad', type=float, default=None, help='clip the gradient norm to this value')
    g.add_argument('--fused_optim', action=bool_flag, default=True,
                   help='fused optimiser kernel (else foreach); the same math, not always the same last bit')
    if protocol == 'pretrain':
        g.add_argument('--mask_ratio', type=float, default=0.9, help='fraction of tokens masked')
        g.add_argument('--motion_stride', type=int, default=1, help='frame distance of the motion target')
        g.add_argument('--motion_aware_tau', type=float, default=0.8,
                         help='temperature of the motion-aware masking (0: uniform random masking)')
    if protocol in ('finetune', 'tune'):
        g.add_argument('--layer_decay', type=float, default=0.75, help='layer-wise lr decay')
    if protocol == 'finetune':
        g.add_argument('--smoothing', type=float, default=0.1, help='label smoothing')
    if protocol == 'tune':
        g.add_argument('--queue_size', type=int, default=16384,
                       help='support queue of past embeddings, searched for the nearest neighbours')
        g.add_argument('--temperature', type=float, default=0.1, help='of the contrastive (InfoNCE) loss')

    g = parser.add_argument_group('run')
    g.add_argument('--output_dir', default='./output_dir', help='checkpoints, log.txt and config.yaml')
    g.add_argument('--log_dir', default=None, help='TensorBoard events (default: output_dir)')
    g.add_argument('--device', default='auto', help="'cuda', 'cpu' or 'auto' (cuda when available)")
    g.add_argument('--seed', type=int, default=0)
    g.add_argument('--num_workers', type=int, default=None,
                   help='data loading processes per rank (default: 0 on CPU, up to 8 on CUDA)')
    g.add_argument('--pin_mem', action=bool_flag, default=None, help='pinned host memory (default: on CUDA)')
    g.add_argument('--amp', choices=('none', 'bf16', 'fp16'), default='none', help='autocast precision')
    g.add_argument('--compile', action=bool_flag, default=False, help='torch.compile the model')
    g.add_argument('--gpu_aug', action=bool_flag, default=False,
                   help='crop-resize and rotate the training batch on the device instead of in the loaders')
    g.add_argument('--resume', default='', help='checkpoint to continue from')
    g.add_argument('--auto_resume', action=bool_flag, default=False,
                   help='continue from the newest checkpoint in output_dir when there is one')
    g.add_argument('--start_epoch', type=int, default=0)
    g.add_argument('--save_every', type=int, default=20, help='keep checkpoint-<epoch>.pth at epochs 0, N, 2N, ... '
                                                             'and the last (checkpoint-last.pth every epoch)')
    g.add_argument('--print_freq', type=int, default=20, help='log the training loss every this many steps')
    if protocol in ('pretrain', 'knn', 'tune'):
        knn = parser.add_argument_group('kNN evaluation (util/knn.py)')
        several = {'nargs': '+', 'default': [20]} if protocol == 'knn' else {'default': 20}  # main_knn: --k 1 20
        knn.add_argument('--k', '--knn_k', dest='knn_k', type=int, **several, help='neighbours that vote')
        knn.add_argument('--t', '--knn_t', dest='knn_t', type=float, default=0.07,
                         help='temperature: a neighbour votes with weight exp(cosine similarity / t)')
        knn.add_argument('--knn_max_train', type=int, default=0,
                         help='at most this many training samples in the bank, a fixed subset (0: all)')
    if protocol in ('pretrain', 'tune'):
        knn.add_argument('--knn_every', type=int, default=0,
                         help='kNN evaluation of the encoder every this many epochs and after the last (0: off)')
    if protocol == 'pretrain':
        g.add_argument('--vis_every', type=int, default=0,
                       help='masking figure of a fixed test sample to TensorBoard every this many epochs and after '
                            'the last (0: off)')
    if protocol == 'fewshot':
        fs = parser.add_argument_group('few-shot evaluation (util/fewshot.py)')
        fs.add_argument('--held_out_actions', type=int, nargs='+', default=[],
                        help='action numbers (from 1) held out from pre-training and tuning: the episode classes')
        fs.add_argument('--ways', type=int, default=5, help='classes per episode')
        fs.add_argument('--shots', type=int, nargs='+', default=[1, 5],
                        help='support samples per class (several: each in turn)')
        fs.add_argument('--queries', type=int, default=15, help='query samples per class and episode')
        fs.add_argument('--episodes', type=int, default=1000, help='episodes, for the mean and its 95%% interval')
    if protocol != 'pretrain':
        g.add_argument('--finetune', default='', help='pre-training checkpoint to start from (ours or official)')
    if protocol in ('linprobe', 'finetune', 'knn'):
        g.add_argument('--eval', action=bool_flag, default=False,
                       help='only evaluate the --resume checkpoint on the test set')
        g.add_argument('--dist_eval', action=bool_flag, default=False,
                       help='evaluate a shard of the test set per process (exact: no sample counted twice)')
        g.add_argument('--save_scores', action=bool_flag, default=False,
                       help='write output_dir/scores.npz (name, logits and label of every test sample) after '
                            '--eval and after the last epoch, for ensemble.py')
    return parser


def parse_args(protocol, argv=None):
    """Resolve defaults, the --config YAML, command-line flags and --opts into one Namespace."""
    parser = get_args_parser(protocol)
    args = parser.parse_args(argv)
    defaults = {a.dest: a.default for a in parser._actions if a.dest != 'help'}
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    types = {a.dest: a for a in parser._actions if a.dest != 'help'}

    config = load_yaml(args.config)
    known = set(defaults) - set(NOT_IN_CONFIG) | set(config_only_keys(protocol))
    for key, value in config.items():
        if key not in known:
            fail(f"{args.config}: unknown key '{key}' (known keys: {', '.join(sorted(known))})")
        if key in types:
            config[key] = coerce(types[key], value, f"{args.config}: {key}")
        elif not isinstance(value, CONFIG_ONLY[key]):
            fail(f"{args.config}: {key} must be a {'mapping' if CONFIG_ONLY[key] is dict else 'class name'}, "
                 f"got {value!r}")
    missing = [k for k in config_only_keys(protocol) if k not in config]
    if missing:
        fail(f"{args.config}: missing {', '.join(missing)}")

    resolved = {**defaults, **config, **given}
    if 'blr' in given and 'lr' not in given:
        resolved['lr'] = None  # --blr on the command line replaces the config's absolute lr
    for key in config_only_keys(protocol):
        if CONFIG_ONLY[key] is dict:
            resolved[key] = dict(resolved[key])  # a copy for the overrides below
    if resolved['data_path']:
        for key in ('train_feeder_args', 'val_feeder_args'):
            if key in resolved:
                resolved[key]['data_path'] = resolved['data_path']
    for item in resolved['opts']:
        apply_opt(resolved, item, known, types)
    args = argparse.Namespace(**resolved)
    check_class_args(args)
    return args


def config_only_keys(protocol):
    return [k for k in CONFIG_ONLY if not (protocol == 'pretrain' and k == 'val_feeder_args')]


def load_yaml(path, seen=()):
    """The mapping in YAML file `path`; a `_base_: other.yaml` entry (relative to `path`) is merged under it."""
    path = Path(path)
    if not path.is_file():
        fail(f"config file {path} not found (the configs are under config/<dataset>/, e.g. "
             f"config/ntu60_xsub/finetune.yaml)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        fail(f"{path}: not valid YAML: {' '.join(str(e).split())}")
    if not isinstance(config, dict):
        fail(f"{path}: expected a mapping of keys to values, got {type(config).__name__}")
    base = config.pop('_base_', None)
    if base is None:
        return config
    base_path = path.parent / base
    if base_path.resolve() in seen:
        fail(f"{path}: _base_ {base} includes itself")
    return merge(load_yaml(base_path, seen + (path.resolve(),)), config)


def merge(base, override):
    """`override` on top of `base`, recursing into nested mappings."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def coerce(action, value, where):
    """`value` (from YAML or --opts) converted to the type of the command-line flag `action` (a list of them for
    a flag taking several values; one value is a list of one)."""
    if value is None:
        return None
    if action.nargs in ('+', '*'):
        return [coerce_one(action, v, where) for v in (value if isinstance(value, list) else [value])]
    return coerce_one(action, value, where)


def coerce_one(action, value, where):
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            fail(f"{where}: expected true or false, got {value!r}")
        return value
    if action.type is not None:
        expected = {int: 'an integer', float: 'a number'}.get(action.type, action.type.__name__)
        try:
            if isinstance(value, (dict, list, bool)):
                raise ValueError
            converted = action.type(value)
            if action.type is int and converted != value and not isinstance(value, str):
                raise ValueError
        except ValueError:
            fail(f"{where}: expected {expected}, got {value!r}")
        value = converted
    if action.choices is not None and value not in action.choices:
        fail(f"{where}: expected one of {', '.join(action.choices)}, got {value!r}")
    return value


def apply_opt(resolved, item, known, types):
    """Apply one `--opts` item `a.b.c=value` (value parsed as YAML) to the resolved dict."""
    if '=' not in item:
        fail(f"--opts {item}: expected KEY=VALUE, e.g. model_args.depth=4")
    key, text = item.split('=', 1)
    value = yaml.safe_load(text)
    top, *rest = key.split('.')
    if top not in known:
        fail(f"--opts {item}: unknown key '{top}' (known keys: {', '.join(sorted(known))})")
    if not rest:
        resolved[top] = coerce(types[top], value, f"--opts {key}") if top in types else value
        return
    node = resolved.setdefault(top, {})
    for part in rest[:-1]:
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        fail(f"--opts {item}: {'.'.join([top] + rest[:-1])} is not a mapping")
    node[rest[-1]] = value


def import_class(name, where):
    """The class named `module.Class`."""
    module, _, attr = name.rpartition('.')
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        fail(f"{where}: cannot import {name!r} ({e})")


def check_class_args(args):
    """Fail on a feeder/model argument that the configured class does not take, naming key and config."""
    for class_key, args_key in (('feeder', 'train_feeder_args'), ('feeder', 'val_feeder_args'),
                                ('model', 'model_args')):
        if not hasattr(args, args_key):
            continue
        cls = import_class(getattr(args, class_key), f"{args.config}: {class_key}")
        params = inspect.signature(cls).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        for key in getattr(args, args_key):
            if key not in params:
                fail(f"{args.config}: unknown key '{key}' in {args_key} ({getattr(args, class_key)} takes: "
                     f"{', '.join(params)})")


def save_config(args, path):
    """Write the resolved settings as a YAML config that --config accepts."""
    values = {k: v for k, v in vars(args).items() if k not in NOT_IN_CONFIG}
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False))
