"""The declared type and range of every setting: the command-line flags of the entry points (each is also a
config key, util/config.py) and the feeder arguments (FEEDER_ARGS), wherever they come from. The evaluation
tools (main_knn.py, main_fewshot.py) take only the flags they use: the training settings of a config they
share with a training run (e.g. linear.yaml's epochs and lr) are not theirs, and util.config leaves them aside.

Every numeric flag declares its allowed values with a `Range` type, which util.config applies to the flag, to
its YAML value and to --opts alike: a value out of range ends in one line naming the flag (or key), the value
and the range, before anything runs. tests/test_flags.py checks that no numeric flag lacks a range. The feeder
arguments of a config, of the settings a checkpoint stores (predict.py, export.py) and of an export's
config.json go through check_feeder_args, before a feeder is built or a file opened.
"""
import argparse
import inspect
import math


class Range:
    """argparse `type` of a numeric flag: an int, or a finite float, in [low, high] (None: unbounded; open_low /
    open_high exclude the bound). Raises argparse.ArgumentTypeError naming the range and the value."""

    def __init__(self, kind, low=None, high=None, open_low=False, open_high=False):
        self.kind, self.low, self.high, self.open_low, self.open_high = kind, low, high, open_low, open_high

    def __str__(self):
        what = 'an integer' if self.kind is int else 'a number'
        if self.high is None:
            return f"{what} {'>' if self.open_low else '>='} {self.low}"
        return f"{what} in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"

    def __call__(self, value):
        try:
            if isinstance(value, (bool, dict, list)):
                raise ValueError
            number = self.kind(value)
            if (self.kind is int and not isinstance(value, str) and number != value) or not math.isfinite(number):
                raise ValueError
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {self}, got {value}") from None
        low_ok = self.low is None or (number > self.low if self.open_low else number >= self.low)
        high_ok = self.high is None or (number < self.high if self.open_high else number <= self.high)
        if not (low_ok and high_ok):
            raise argparse.ArgumentTypeError(f"expected {self}, got {value}")
        return number


class BlocksToTune(Range):
    """argparse `type` of --tune_blocks: 'all' (every parameter), 'upper' (STARS: the blocks from depth // 2 on)
    or the number of last blocks, an integer >= 1."""

    WORDS = ('all', 'upper')

    def __init__(self):
        super().__init__(int, 1)

    def __str__(self):
        return f"all, upper or {super().__str__()}"

    def __call__(self, value):
        if value in self.WORDS:
            return value
        try:
            return super().__call__(value)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected {self}, got {value}") from None


POSITIVE = Range(float, 0, open_low=True)
NON_NEGATIVE = Range(float, 0)
MAX_WINDOW = 1000  # frames of a resampled sequence: the recordings have at most 300 (NTU) / 300 (PKU-MMD clips)


class Window(Range):
    """window_size: -1 (keep the cropped frames) or a number of frames in [1, MAX_WINDOW]."""

    def __init__(self):
        super().__init__(int, 1, MAX_WINDOW)

    def __str__(self):
        return f"-1 (keep the frames) or an integer in [1, {MAX_WINDOW}]"

    def __call__(self, value):
        if value in (-1, '-1') and not isinstance(value, bool):
            return -1
        return super().__call__(value)


def boolean(value):
    if not isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value


def text(value):
    if not isinstance(value, str) or not value:
        raise argparse.ArgumentTypeError(f"expected a path, got {value!r}")
    return value


def split(value):
    if value not in ('train', 'test'):
        raise argparse.ArgumentTypeError(f"expected 'train' or 'test', got {value!r}")
    return value


def several(kind, lengths):
    """A list (or one value) of `kind` values, as many as one of `lengths` (None: any number)."""
    def check(value):
        if not isinstance(value, (list, tuple)):
            return kind(value)
        if lengths is not None and len(value) not in lengths:
            raise argparse.ArgumentTypeError(f"expected {' or '.join(map(str, lengths))} values, got {value!r}")
        return [kind(v) for v in value]
    check.__name__ = f"list of {kind}"
    return check


# The arguments of the registered feeders (util/registry.py) and their types; a feeder argument not here is
# unknown, wherever it comes from.
FEEDER_ARGS = {
    'data_path': text, 'split': split, 'p_interval': several(Range(float, 0, 1, open_low=True), (1, 2)),
    'window_size': Window(), 'random_rot': boolean, 'bone': boolean, 'vel': boolean, 'debug': boolean,
    'data_ratio': Range(float, 0, 1, open_low=True), 'subset_seed': Range(int, 0, 2 ** 32 - 1),
    'balanced_subset': boolean, 'batch_augment': boolean, 'exclude_actions': several(Range(int, 1), None),
    'random_choose': boolean, 'random_shift': boolean, 'random_move': boolean, 'normalization': boolean,
    'use_mmap': boolean, 'views': Range(int, 1, 16),
    'train_windows': several(Range(int, 1, 10000), None), 'window': Range(int, 1, 10000),
    'hop': Range(int, 1, 10000), 'samples_per_recording': Range(int, 1, 10000),
}
# Feeder arguments that choose which training samples are read: not applied when a tool evaluates a checkpoint.
TRAINING_SUBSET = ('data_ratio', 'subset_seed', 'balanced_subset', 'exclude_actions', 'debug')


def training_subset_note(feeder_args, source, instead):
    """The one-line note naming the feeder arguments stored in `source` that choose training samples and would
    change the result (TRAINING_SUBSET with other values than all samples), and what the tool does `instead`;
    None when there are none."""
    changing = {k: v for k, v in feeder_args.items() if (k == 'data_ratio' and v < 1) or
                (k == 'exclude_actions' and v) or (k == 'debug' and v is True)}
    if not changing:
        return None
    named = ', '.join(f"{k}={v}" for k, v in changing.items())
    return f"note: {source} stores val_feeder_args {named}, which choose training samples: {instead}"


def feeder_params(cls):
    """The keyword arguments feeder class `cls` takes (with those of its bases when it passes **kwargs on)."""
    params = set()
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        signature = inspect.signature(klass.__init__).parameters
        params |= {n for n, p in signature.items() if p.kind is p.KEYWORD_ONLY or
                   p.kind is p.POSITIONAL_OR_KEYWORD} - {'self'}
        if not any(p.kind is p.VAR_KEYWORD for p in signature.values()):
            break
    return params


def check_feeder_args(cls, values, where, name):
    """`values` (the mapping `name` of feeder arguments for class `cls`, read from `where`) with each converted by
    its FEEDER_ARGS type; a one-line ValueError naming `where`, the key, the value and what is expected otherwise."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: {name}: expected a mapping of feeder arguments, got {values!r:.60}")
    params, checked = feeder_params(cls), {}
    for key, value in values.items():
        if key not in params or key not in FEEDER_ARGS:
            raise ValueError(f"{where}: unknown key {key!r:.60} in {name} ({cls.__module__}.{cls.__name__} takes: "
                             f"{', '.join(sorted(params & set(FEEDER_ARGS)))})")
        try:
            checked[key] = FEEDER_ARGS[key](value)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"{where}: {name}.{key}: {e}") from None
    return checked


TRAINING = ('pretrain', 'linprobe', 'finetune', 'tune', 'detect')
EVALUATION = ('knn', 'fewshot')


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default (once: not where the help already says it) and allowed values."""

    def _get_help_string(self, action):
        text = action.help if 'default' in (action.help or '') else super()._get_help_string(action)
        return f"{text}; {action.type}" if isinstance(action.type, Range) else text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (a value out of range, an unknown flag) end in one line, no usage text."""

    def error(self, message):
        raise SystemExit(f"error: {message} ({self.prog} --help lists the flags)")  # as util.config.fail


def get_args_parser(protocol):
    """The command-line flags of entry point `protocol` (one of TRAINING or EVALUATION); each flag may also be a
    config key."""
    parser = Parser(f'main_{protocol}.py', formatter_class=HelpFormatter,
                    description=f'MAMP {protocol}: settings come from --config; the flags below override it.')
    parser.add_argument('--config', required=True, help='YAML config, e.g. config/ntu60_xsub/%s.yaml' % {
        'pretrain': 'pretrain_mamp', 'linprobe': 'linear', 'finetune': 'finetune', 'knn': 'linear',
        'tune': 'tune', 'fewshot': 'fewshot', 'detect': 'detect'}[protocol])
    parser.add_argument('--opts', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                        help='override config values, dotted for nested ones (model_args.depth=4); '
                             'several --opts add up')
    parser.add_argument('--data_path', default=None, help='data file for both the train and the test feeder')
    if protocol in TRAINING:
        add_optimisation_flags(parser.add_argument_group('optimisation'), protocol)
    else:
        parser.add_argument('--batch_size', type=Range(int, 1), default=64,
                            help='samples per batch of the encoder, per process')
    add_run_flags(parser.add_argument_group('run'), protocol)
    if protocol in ('pretrain', 'knn', 'tune'):
        knn = parser.add_argument_group('kNN evaluation (util/knn.py)')
        several = {'nargs': '+', 'default': [20]} if protocol == 'knn' else {'default': 20}  # main_knn: --k 1 20
        knn.add_argument('--k', '--knn_k', dest='knn_k', type=Range(int, 1), **several, help='neighbours that vote')
        knn.add_argument('--t', '--knn_t', dest='knn_t', type=POSITIVE, default=0.07,
                         help='temperature: a neighbour votes with weight exp(cosine similarity / t)')
        knn.add_argument('--knn_max_train', type=Range(int, 0), default=0,
                         help='at most this many training samples in the bank, a fixed subset (0: all)')
    if protocol in ('pretrain', 'tune'):
        knn.add_argument('--knn_every', type=Range(int, 0), default=0,
                         help='kNN evaluation of the encoder every this many epochs and after the last (0: off)')
    if protocol == 'fewshot':
        fs = parser.add_argument_group('few-shot evaluation (util/fewshot.py)')
        fs.add_argument('--held_out_actions', type=Range(int, 1), nargs='+', default=[],
                        help='action numbers (from 1) held out from pre-training and tuning: the episode classes')
        fs.add_argument('--fewshot_splits', choices=('train', 'test'), nargs='+', default=['train', 'test'],
                        help="the splits whose samples of the held-out actions the episodes draw from (STARS: "
                             "train and test, every NTU-120 cross-subject sample of the actions NTU-60 lacks)")
        fs.add_argument('--ways', type=Range(int, 2), default=5, help='classes per episode')
        fs.add_argument('--shots', type=Range(int, 1), nargs='+', default=[1, 5],
                        help='support samples per class (several: each in turn)')
        fs.add_argument('--queries', type=Range(int, 1), default=15, help='query samples per class and episode')
        fs.add_argument('--episodes', type=Range(int, 1), default=1000,
                        help='episodes, for the mean and its 95%% interval')
    if protocol == 'detect':
        det = parser.add_argument_group('detection (main_detect.py, engine_detect.py, util/segments.py)')
        det.add_argument('--mode', choices=('linear', 'finetune'), default='linear',
                         help='linear: frozen encoder (features computed once, cached in output_dir/features) and '
                              'a linear head; finetune: the whole network')
        det.add_argument('--smooth', type=Range(int, 1), default=20,
                         help='width in frames of the mean filter over the frame probabilities')
        det.add_argument('--threshold', type=Range(float, 0, 1), default=0.4,
                         help='a frame is in an action when 1 - p(background) >= this, after smoothing')
        det.add_argument('--thetas', type=Range(float, 0, 1, open_low=True), nargs='+', default=[0.1, 0.3, 0.5, 0.7],
                         help='temporal IoU thresholds of the mAP')
        det.add_argument('--feature_batch', type=Range(int, 1), default=256,
                         help='windows per encoder pass when computing dense features')
    return parser


def add_optimisation_flags(g, protocol):
    """The optimiser, schedule and loss settings of a training entry point."""
    g.add_argument('--batch_size', type=Range(int, 1), default=64,
                   help='per process; effective batch is batch_size * accum_iter * number of processes')
    g.add_argument('--epochs', type=Range(int, 1), default=100, help='epochs of training')
    g.add_argument('--accum_iter', type=Range(int, 1), default=1,
                   help='gradient accumulation steps per optimiser step')
    g.add_argument('--published_batch', type=Range(int, 1), default=None,
                   help='effective batch of the published run of this config; a run with another one says so')
    g.add_argument('--lr', type=POSITIVE, default=None, help='absolute learning rate (default: blr * batch / 256)')
    g.add_argument('--blr', type=POSITIVE, default=1e-3, help='base learning rate, for an effective batch of 256')
    g.add_argument('--min_lr', type=NON_NEGATIVE, default=0., help='end of the cosine schedule')
    g.add_argument('--warmup_epochs', type=NON_NEGATIVE, default=0., help='linear warm-up, per iteration')
    g.add_argument('--weight_decay', type=NON_NEGATIVE, default=0.05,
                   help='decoupled (AdamW) or L2 (SGD) weight decay')
    g.add_argument('--clip_grad', type=POSITIVE, default=None, help='clip the gradient norm to this value')
    g.add_argument('--fused_optim', action=argparse.BooleanOptionalAction, default=True,
                   help='fused optimiser kernel (else foreach); the same math, not always the same last bit')
    if protocol == 'pretrain':
        g.add_argument('--mask_ratio', type=Range(float, 0, 1, open_low=True, open_high=True), default=0.9,
                       help='fraction of tokens masked')
        g.add_argument('--motion_stride', type=Range(int, 1), default=1, help='frame distance of the motion target')
        g.add_argument('--motion_aware_tau', type=NON_NEGATIVE, default=0.8,
                       help='temperature of the motion-aware masking (0: uniform random masking)')
    if protocol in ('finetune', 'tune'):
        g.add_argument('--layer_decay', type=Range(float, 0, 1, open_low=True), default=0.75,
                       help='layer-wise lr decay')
    if protocol == 'tune':
        g.add_argument('--queue_size', type=Range(int, 1), default=16384,
                       help='support queue of past embeddings, searched for the nearest neighbours')
        g.add_argument('--temperature', type=POSITIVE, default=0.07, help='of the contrastive (InfoNCE) loss')
        g.add_argument('--tune_blocks', type=BlocksToTune(), default='upper',
                       help="what the optimiser moves: 'upper' (STARS) the blocks from depth // 2 on, the final "
                            "norm and the heads, the embeddings and lower blocks frozen; a number N: the last N "
                            "blocks, the norm and the heads; 'all': every parameter, the embeddings too")
        g.add_argument('--nn_softmax_over', choices=('predictions', 'neighbours'), default='predictions',
                       help="'predictions' (NNCLR, STARS): each nearest neighbour is a row of the loss, its softmax "
                            "over the whole batch's predictions; 'neighbours': each prediction a row, its softmax "
                            "over the batch's neighbours")
        g.add_argument('--mask_own_entry', action=argparse.BooleanOptionalAction, default=True,
                       help="a sample's own (earlier) embedding in the queue is never its nearest neighbour (STARS)")
        g.add_argument('--oracle_mask_same_action', action=argparse.BooleanOptionalAction, default=False,
                       help='EXPERIMENTS ONLY, USES THE ACTION LABELS: removes the negatives of the same action '
                            'from the loss (an oracle, not self-supervised)')
        g.add_argument('--clip_mode', choices=('per_tensor', 'total'), default='per_tensor',
                       help="how --clip_grad clips: 'per_tensor' (STARS) each parameter's gradient to that norm, "
                            "'total' the norm of all gradients together")
        g.add_argument('--lr_schedule', choices=('constant', 'cosine'), default='constant',
                       help="after the warm-up: 'constant' (STARS) or a half-cycle cosine down to --min_lr")
    if protocol == 'detect':
        g.add_argument('--lr_steps', type=Range(int, 1), nargs='+', default=[],
                       help='epochs at which the lr drops x0.1 (the published detection schedule: 40); empty: the '
                            'cosine schedule')
        g.add_argument('--nesterov', action=argparse.BooleanOptionalAction, default=True,
                       help='Nesterov momentum of the SGD')
    if protocol == 'finetune':
        g.add_argument('--smoothing', type=Range(float, 0, 1, open_high=True), default=0.1, help='label smoothing')


def add_run_flags(g, protocol):
    """Where and how a run goes: output, device, seed, data loading, precision; for training also TensorBoard,
    checkpoints, resuming and the evaluation options of the classifiers."""
    bool_flag = argparse.BooleanOptionalAction
    training = protocol in TRAINING
    g.add_argument('--output_dir', default='./output_dir', help='checkpoints, log.txt and config.yaml' if training
                   else f'{protocol}.json, the result')
    g.add_argument('--device', default='auto', help="'cuda', 'cpu' or 'auto' (cuda when available)")
    g.add_argument('--seed', type=Range(int, 0, 2 ** 32 - 1), default=0,
                   help='seeds the initial weights, the data order, the augmentation and the masking' if training
                   else 'seeds the randomly initialised encoder (without --finetune)' +
                   (' and the episodes' if protocol == 'fewshot' else ''))
    g.add_argument('--num_workers', type=Range(int, 0), default=None,
                   help='data loading processes per rank (default: 0 on CPU, up to 8 on CUDA)')
    g.add_argument('--pin_mem', action=bool_flag, default=None, help='pinned host memory (default: on CUDA)')
    g.add_argument('--amp', choices=('none', 'bf16', 'fp16'), default='none', help='autocast precision')
    if protocol != 'pretrain':
        g.add_argument('--finetune', default='', help='pre-training checkpoint to start from (ours or official)' if
                       training else 'checkpoint of the encoder to evaluate (default: none, a randomly initialised '
                                     'encoder)')
    if not training:
        return
    g.add_argument('--log_dir', default=None, help='TensorBoard events (default: output_dir)')
    g.add_argument('--compile', action=bool_flag, default=False, help='torch.compile the model')
    g.add_argument('--gpu_aug', action=bool_flag, default=False,
                   help='crop-resize and rotate the training batch on the device instead of in the loaders')
    g.add_argument('--resume', default='', help='checkpoint to continue from')
    g.add_argument('--auto_resume', action=bool_flag, default=False,
                   help='continue from the newest checkpoint in output_dir when there is one')
    g.add_argument('--overwrite', action=bool_flag, default=False,
                   help='start afresh in an output_dir that holds an earlier run, removing its checkpoints and '
                        'TensorBoard events once the inputs are checked (without it such a run stops; '
                        '--auto_resume continues the earlier run)')
    g.add_argument('--start_epoch', type=Range(int, 0), default=0, help='first epoch (set by --resume)')
    g.add_argument('--save_every', type=Range(int, 1), default=20,
                   help='keep checkpoint-<epoch>.pth at epochs 0, N, 2N, ... and the last (checkpoint-last.pth '
                        'every epoch)')
    g.add_argument('--print_freq', type=Range(int, 1), default=20,
                   help='log the training loss every this many steps')
    if protocol == 'pretrain':
        g.add_argument('--vis_every', type=Range(int, 0), default=0,
                       help='masking figure of a fixed test sample to TensorBoard every this many epochs and after '
                            'the last (0: off)')
    if protocol in ('linprobe', 'finetune'):
        g.add_argument('--eval', action=bool_flag, default=False,
                       help='only evaluate the --resume checkpoint on the test set')
        g.add_argument('--dist_eval', action=bool_flag, default=False,
                       help='evaluate a shard of the test set per process (exact: no sample counted twice)')
        g.add_argument('--save_scores', action=bool_flag, default=False,
                       help='write output_dir/scores.npz (name, logits and label of every test sample) after '
                            '--eval and after the last epoch, for ensemble.py')


def training_settings(protocol):
    """The config keys of the training entry points that evaluation tool `protocol` does not take (empty for a
    training protocol): a config it shares with a training run may hold them."""
    if protocol in TRAINING:
        return set()
    own = {a.dest for a in get_args_parser(protocol)._actions}
    return {a.dest for p in TRAINING for a in get_args_parser(p)._actions} - own

