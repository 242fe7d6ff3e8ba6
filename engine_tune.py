"""Contrastive tuning epoch (STARS): the NNCLR loss of the two views of each sequence (model_tune.NNCLR)."""
from util import engine


def train_one_epoch(model, data_loader, optimizer, device, epoch, loss_scaler, args, log_writer=None,
                    augment=None, position=None):
    """One epoch over (views (N, 2, 3, T, 25, 2), labels, index) batches; the labels are not used."""
    def compute_loss(views, targets):
        return model(views[:, 0], views[:, 1], temperature=args.temperature)

    return engine.train_one_epoch(model, compute_loss, data_loader, optimizer, device, epoch, loss_scaler, args,
                                  log_writer, augment, position)
