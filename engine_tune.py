"""Contrastive tuning epoch (STARS): the NNCLR loss of the two views of each sequence (model_tune.NNCLR), with the
purity of the nearest neighbours logged (util/purity.py)."""
import torch

from util import config, engine
from util.purity import Purity


class LabelsAndIds:
    """A loader of (views, labels, index) batches seen as (views, (labels, index) stacked (N, 2)): the shared
    training epoch hands its loss the first two entries of a batch; the tuning needs the indices too."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for views, labels, index, *rest in self.loader:
            yield (views, torch.stack([torch.as_tensor(labels), torch.as_tensor(index)], dim=1), *rest)


def feeder_of(loader):
    """The feeder behind a training loader (util.data.SeededItems wraps it)."""
    return getattr(loader.dataset, 'dataset', loader.dataset)


def check_queue_ids(model, feeder):
    """One line when the queue (e.g. of a resumed checkpoint) holds sample ids that this data does not have."""
    model = getattr(model, 'module', model)
    largest = int(model.queue_id.max())
    if largest >= len(feeder):
        config.fail(f"the queue holds sample id {largest}, but {feeder.data_path} ({feeder.split}) has "
                    f"{len(feeder)} samples: resume with the data the run was started with")


def train_one_epoch(model, data_loader, optimizer, device, epoch, loss_scaler, args, log_writer=None,
                    augment=None, position=None):
    """One epoch over (views (N, 2, 3, T, 25, 2), labels, index) batches. The labels enter the loss only with
    --oracle_mask_same_action; otherwise they serve the purity of the neighbours alone (log.txt
    train_nn_action_purity / train_nn_camera_purity, TensorBoard train/nn_*_purity)."""
    feeder = feeder_of(data_loader)
    check_queue_ids(model, feeder)
    purity = Purity(feeder.label, feeder.sample_name, device)

    def compute_loss(views, targets):
        labels, ids = targets[:, 0], targets[:, 1]
        loss, neighbour_ids = model(views[:, 0], views[:, 1], ids, temperature=args.temperature,
                                    softmax_over=args.nn_softmax_over, mask_own=args.mask_own_entry,
                                    labels=labels if args.oracle_mask_same_action else None)
        purity.add(ids, neighbour_ids)
        return loss

    stats = engine.train_one_epoch(model, compute_loss, LabelsAndIds(data_loader), optimizer, device, epoch,
                                   loss_scaler, args, log_writer, augment, position)
    if 'position' in stats:
        return stats
    found = purity.result()
    if log_writer is not None:
        for key, value in found.items():
            log_writer.add_scalar(f'train/{key}', value, epoch)
    return {**stats, **found}
