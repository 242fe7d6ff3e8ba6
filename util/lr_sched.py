"""Learning-rate schedule: per-iteration linear warm-up, then a half-cycle cosine down to min_lr; or (lr_steps,
main_detect.py) steps of x0.1 at those epochs; or (--lr_schedule constant, main_tune.py) the lr itself."""
import math


def adjust_learning_rate(optimizer, epoch, args):
    """Set the lr of every param group for the fractional `epoch` (epoch + step / steps per epoch).

    A group's `lr_scale` (layer-wise decay) multiplies its lr. Returns the unscaled lr.
    """
    if epoch < args.warmup_epochs:
        lr = args.lr * epoch / args.warmup_epochs
    elif getattr(args, 'lr_steps', None):
        lr = args.lr * 0.1 ** sum(epoch >= step for step in args.lr_steps)
    elif getattr(args, 'lr_schedule', 'cosine') == 'constant':
        lr = args.lr
    else:
        progress = (epoch - args.warmup_epochs) / max(args.epochs - args.warmup_epochs, 1e-8)
        lr = args.min_lr + (args.lr - args.min_lr) * 0.5 * (1. + math.cos(math.pi * progress))
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr * param_group.get('lr_scale', 1.)
    return lr
