"""Pre-training epoch: the masked motion prediction loss of MAMP (or the joint reconstruction loss of MAE)."""
from util import engine


def train_one_epoch(model, data_loader, optimizer, device, epoch, loss_scaler, args, log_writer=None,
                    augment=None, position=None):
    """One epoch over (samples (N, 3, T, 25, 2), labels, index) batches; the labels are not used."""
    def compute_loss(samples, targets):
        loss, _, _ = model(samples, mask_ratio=args.mask_ratio, motion_stride=args.motion_stride,
                           motion_aware_tau=args.motion_aware_tau)
        return loss

    return engine.train_one_epoch(model, compute_loss, data_loader, optimizer, device, epoch, loss_scaler, args,
                                  log_writer, augment, position)
