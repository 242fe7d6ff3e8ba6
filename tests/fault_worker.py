"""main_pretrain.py that sends itself a signal at a fractional epoch: the faults of tests/test_faults.py.

    FAULT_SIGNAL=SIGTERM FAULT_AT=1.5 FAULT_RANK=1 python tests/fault_worker.py --config ... (or via torchrun)

The signal goes to rank FAULT_RANK when the learning-rate schedule reaches epoch FAULT_AT, and only on the
first attempt of a torchrun --max-restarts group (TORCHELASTIC_RESTART_COUNT 0 or unset).
"""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import main_pretrain  # noqa: E402
import util.lr_sched  # noqa: E402
from util import config, dist  # noqa: E402


def signal_at(fraction, rank, signum):
    """Wrap the schedule so that rank `rank` receives `signum` once, at fractional epoch `fraction`."""
    adjust, sent = util.lr_sched.adjust_learning_rate, []

    def adjust_and_signal(optimizer, epoch, args):
        if epoch >= fraction and not sent and dist.get_rank() == rank:
            sent.append(epoch)
            os.kill(os.getpid(), signum)
        return adjust(optimizer, epoch, args)
    util.lr_sched.adjust_learning_rate = adjust_and_signal


if __name__ == '__main__':
    # Ctrl-C reaches a foreground process, whose SIGINT raises KeyboardInterrupt; under a test run started in
    # the background of a non-interactive shell the process would inherit SIGINT ignored instead.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') == '0':
        signal_at(float(os.environ['FAULT_AT']), int(os.environ.get('FAULT_RANK', 0)),
                  signal.Signals[os.environ['FAULT_SIGNAL']])
    main_pretrain.main(config.parse_args('pretrain'))
