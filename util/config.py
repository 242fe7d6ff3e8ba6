"""Command line + YAML config -> one argparse.Namespace, shared by main_pretrain/linprobe/finetune.py.

Precedence, lowest first: the parser defaults, the YAML file given by --config (which may name a `_base_`
YAML it extends), the flags given on the command line, then `--opts KEY=VALUE ...` (dotted keys reach into
the nested dicts: `--opts model_args.depth=4 train_feeder_args.window_size=64`). `--data_path` replaces the
data_path of both feeders. An unknown key anywhere is an error naming the key and the file; an evaluation tool
(main_knn.py, main_fewshot.py) leaves aside the training settings of the config it shares with a training run.
"""
import argparse
import inspect
from pathlib import Path

import yaml

from util import registry
from util.flags import Range, check_feeder_args, get_args_parser, training_settings
from util.model_args import run_checks

# Keys that only a config (or --opts) sets: the classes to build (module.Class) and their arguments (mappings).
CONFIG_ONLY = {'feeder': str, 'train_feeder_args': dict, 'val_feeder_args': dict, 'model': str, 'model_args': dict}
NOT_IN_CONFIG = ('config', 'opts')


def fail(message):
    """Stop with one line on stderr (exit status 1), no traceback: for mistakes in the user's input."""
    raise SystemExit(f"error: {message}")


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
    for key in training_settings(protocol) & set(config):  # a training run's settings, e.g. linear.yaml's lr
        del config[key]
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
    check_model(args)
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


def stored_setting(protocol, settings, key, where):
    """A setting `key` of the settings a checkpoint stores (`settings`, a dict), through the type and range of
    the `protocol` flag of that name, as a config value is (one line naming `where` and the key otherwise);
    None when it is not stored."""
    if key not in settings:
        return None
    action = next(a for a in get_args_parser(protocol)._actions if a.dest == key)
    return coerce(action, settings[key], f"{where}: args.{key}")


def coerce(action, value, where):
    """`value` (from YAML or --opts) converted to the type of the command-line flag `action` and checked against
    its range (util.flags.Range); a list of them for a flag taking several values (one value is a list of one)."""
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
    if isinstance(action.type, Range):
        try:
            value = action.type(value)
        except argparse.ArgumentTypeError as e:
            fail(f"{where}: {e}")
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


def resolve_class(kind, name, where):
    """The registered `kind` ('model' or 'feeder') class `name`, or one line and exit (util/registry.py)."""
    try:
        return registry.resolve(kind, name, where)
    except ValueError as e:
        fail(str(e))


def check_class_args(args):
    """Fail on a feeder/model argument that the configured class does not take, and on a feeder argument of
    another type or out of its range (util.flags.FEEDER_ARGS), naming key and config."""
    for class_key, args_key in (('feeder', 'train_feeder_args'), ('feeder', 'val_feeder_args'),
                                ('model', 'model_args')):
        if not hasattr(args, args_key):
            continue
        cls = resolve_class(class_key, getattr(args, class_key), f"{args.config}: {class_key}")
        if class_key == 'feeder':
            try:
                setattr(args, args_key, check_feeder_args(cls, getattr(args, args_key), args.config, args_key))
            except ValueError as e:
                fail(str(e))
            continue
        params = inspect.signature(cls).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        for key in getattr(args, args_key):
            if key not in params:
                fail(f"{args.config}: unknown key '{key}' in {args_key} ({getattr(args, class_key)} takes: "
                     f"{', '.join(params)})")


def check_model(args):
    """Fail in one line on model_args out of range or not fitting each other (the model's ARG_CHECKS, see
    util/model_args.py) and, in pre-training, on a mask_ratio or motion_stride the model cannot train with (its
    OPTION_CHECKS), before anything is built."""
    cls = resolve_class('model', args.model, f"{args.config}: model")
    options = {k: getattr(args, k) for k in ('mask_ratio', 'motion_stride') if hasattr(args, k)}
    for checks, prefix in (('ARG_CHECKS', 'model_args: '), ('OPTION_CHECKS', '')):
        try:
            run_checks(cls, getattr(cls, checks, ()), args.model_args, **options)
        except ValueError as e:
            fail(f"{args.config}: {prefix}{e}")


def save_config(args, path):
    """Write the resolved settings as a YAML config that --config accepts."""
    values = {k: v for k, v in vars(args).items() if k not in NOT_IN_CONFIG}
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False))


def eval_only(args):
    """True for --eval (the classification entry points): evaluate a checkpoint, no training."""
    return getattr(args, 'eval', False)
