"""Classification epoch (linear probe and fine-tuning), the test-set evaluation and the final confusion matrix."""
import numpy as np
import torch
import torch.nn.functional as F

from util import actions, dist, engine, figures, misc


def train_one_epoch(model, criterion, data_loader, optimizer, device, epoch, loss_scaler, args, log_writer=None,
                    augment=None, position=None):
    """One epoch of `criterion(model(samples), labels)` over (samples (N, 3, T, 25, 2), labels, index) batches."""
    def compute_loss(samples, targets):
        return criterion(model(samples), targets)

    return engine.train_one_epoch(model, compute_loss, data_loader, optimizer, device, epoch, loss_scaler, args,
                                  log_writer, augment, position)


@torch.no_grad()
def evaluate(data_loader, model, device, args):
    """Cross-entropy and top-1 / top-5 accuracy (%) over every test sample exactly once.

    With --dist_eval each rank holds a disjoint shard and the sums of losses, hits and samples are added
    over ranks; the only host read-back is at the end. Every rank first takes rank 0's buffers (BatchNorm
    statistics), so that the shards are evaluated by one model, the one rank 0 saves.
    """
    if args.dist_eval:
        dist.broadcast_buffers(model)
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1 hits, top-5 hits, samples
    for samples, targets, _ in engine.progress(data_loader, 'Test', leave=False):
        samples = samples.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with misc.autocast(args, device):
            logits = model(samples)
        logits = logits.float()
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(targets[:, None])
        totals += torch.stack([F.cross_entropy(logits, targets, reduction='sum'), hits[:, 0].sum(),
                               hits.any(dim=1).sum(), targets.new_full((), len(targets))]).double()
    if args.dist_eval:
        dist.all_reduce_sum(totals)
    loss, top1, top5, count = totals.tolist()
    return {'loss': loss / count, 'acc1': 100 * top1 / count, 'acc5': 100 * top5 / count,
            'num_samples': int(count)}


@torch.no_grad()
def predict(data_loader, model, device, args):
    """Logits (N, num_classes) float32 and labels (N,) int64 of every sample of the loader's dataset, on the CPU,
    in the dataset's order (row i is sample i).

    Batches are (samples, labels, index). With --dist_eval each rank predicts its shard and the shards are
    gathered, so every rank returns the whole set.
    """
    model.eval()
    logits, labels, indices = [], [], []
    for samples, targets, index in engine.progress(data_loader, 'Predict', leave=False):
        with misc.autocast(args, device):
            out = model(samples.to(device, non_blocking=True))
        logits.append(out.float().cpu())
        labels.append(targets)
        indices.append(index)
    parts = [(torch.cat(logits), torch.cat(labels), torch.cat(indices))]
    if args.dist_eval:
        parts = dist.all_gather_objects(parts[0])
    num_samples = len(data_loader.dataset)
    out = torch.empty(num_samples, parts[0][0].shape[1])
    out_labels = torch.empty(num_samples, dtype=torch.int64)
    for part_logits, part_labels, part_index in parts:
        out[part_index], out_labels[part_index] = part_logits, part_labels.long()
    return out, out_labels


class ConfusionAtEnd:
    """The runner's after_epoch hook of linear probe and fine-tuning: after the last epoch, the test-set confusion
    matrix with action names to TensorBoard ('confusion'). Off, with a note, when the data's action names are
    unknown (a data file named neither NTU60_*, NTU120_* nor PKU* with another class count)."""

    def __init__(self, args):
        self.args = args
        data_path, num_classes = args.val_feeder_args.get('data_path'), args.model_args.get('num_classes')
        dataset = actions.guess_dataset(data_path, num_classes)
        self.names = actions.action_names(dataset) if dataset else None
        if self.names is None:
            print(f"No confusion matrix at the end: no action names for {data_path} with {num_classes} classes")

    def __call__(self, model, epoch, device, log_writer, loader_val, **_):
        if self.names is None or epoch + 1 < self.args.epochs:
            return {}
        logits, labels = predict(loader_val, model, device, self.args)
        if log_writer is not None:
            matrix = figures.confusion(labels.numpy(), logits.argmax(1).numpy(), logits.shape[1])
            title = f"epoch {epoch}: top-1 {100 * np.trace(matrix) / matrix.sum():.1f}% on {len(labels)} test samples"
            log_writer.add_figure('confusion', figures.confusion_figure(matrix, self.names, title), epoch)
        return {}
