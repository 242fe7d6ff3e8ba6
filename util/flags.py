"""The command-line flags of the training entry points; each is also a config key (util/config.py).

Every numeric flag declares its allowed values with a `Range` type, which util.config applies to the flag, to
its YAML value and to --opts alike: a value out of range ends in one line naming the flag (or key), the value
and the range, before anything runs. tests/test_flags.py checks that no numeric flag lacks a range.
"""
import argparse
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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default and allowed values."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action)
        return f"{text}; {action.type}" if isinstance(action.type, Range) else text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (a value out of range, an unknown flag) end in one line, no usage text."""

    def error(self, message):
        raise SystemExit(f"error: {message} ({self.prog} --help lists the flags)")  # as util.config.fail


def get_args_parser(protocol):
    """The command-line flags of entry point `protocol` (pretrain, linprobe, finetune, knn, tune or fewshot); each
    flag may also be a config key."""
    parser = Parser(f'main_{protocol}.py', formatter_class=HelpFormatter,
                    description=f'MAMP {protocol}: settings come from --config; the flags below override it.')
    bool_flag = argparse.BooleanOptionalAction
    parser.add_argument('--config', required=True, help='YAML config, e.g. config/ntu60_xsub/%s.yaml' % {
        'pretrain': 'pretrain_mamp', 'linprobe': 'linear', 'finetune': 'finetune', 'knn': 'linear',
        'tune': 'tune', 'fewshot': 'fewshot'}[protocol])
    parser.add_argument('--opts', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                        help='override config values, dotted for nested ones (model_args.depth=4); '
                             'several --opts add up')
    parser.add_argument('--data_path', default=None, help='data file for both the train and the test feeder')

    g = parser.add_argument_group('optimisation')
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
    g.add_argument('--fused_optim', action=bool_flag, default=True,
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
        g.add_argument('--mask_own_entry', action=bool_flag, default=True,
                       help="a sample's own (earlier) embedding in the queue is never its nearest neighbour (STARS)")
        g.add_argument('--oracle_mask_same_action', action=bool_flag, default=False,
                       help='EXPERIMENTS ONLY, USES THE ACTION LABELS: removes the negatives of the same action '
                            'from the loss (an oracle, not self-supervised)')
        g.add_argument('--clip_mode', choices=('per_tensor', 'total'), default='per_tensor',
                       help="how --clip_grad clips: 'per_tensor' (STARS) each parameter's gradient to that norm, "
                            "'total' the norm of all gradients together")
        g.add_argument('--lr_schedule', choices=('constant', 'cosine'), default='constant',
                       help="after the warm-up: 'constant' (STARS) or a half-cycle cosine down to --min_lr")
    if protocol == 'finetune':
        g.add_argument('--smoothing', type=Range(float, 0, 1, open_high=True), default=0.1, help='label smoothing')

    g = parser.add_argument_group('run')
    g.add_argument('--output_dir', default='./output_dir', help='checkpoints, log.txt and config.yaml')
    g.add_argument('--log_dir', default=None, help='TensorBoard events (default: output_dir)')
    g.add_argument('--device', default='auto', help="'cuda', 'cpu' or 'auto' (cuda when available)")
    g.add_argument('--seed', type=Range(int, 0, 2 ** 32 - 1), default=0,
                   help='seeds the initial weights, the data order, the augmentation and the masking')
    g.add_argument('--num_workers', type=Range(int, 0), default=None,
                   help='data loading processes per rank (default: 0 on CPU, up to 8 on CUDA)')
    g.add_argument('--pin_mem', action=bool_flag, default=None, help='pinned host memory (default: on CUDA)')
    g.add_argument('--amp', choices=('none', 'bf16', 'fp16'), default='none', help='autocast precision')
    g.add_argument('--compile', action=bool_flag, default=False, help='torch.compile the model')
    g.add_argument('--gpu_aug', action=bool_flag, default=False,
                   help='crop-resize and rotate the training batch on the device instead of in the loaders')
    g.add_argument('--resume', default='', help='checkpoint to continue from')
    g.add_argument('--auto_resume', action=bool_flag, default=False,
                   help='continue from the newest checkpoint in output_dir when there is one')
    if protocol in ('pretrain', 'linprobe', 'finetune', 'tune'):
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
    if protocol == 'pretrain':
        g.add_argument('--vis_every', type=Range(int, 0), default=0,
                       help='masking figure of a fixed test sample to TensorBoard every this many epochs and after '
                            'the last (0: off)')
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
