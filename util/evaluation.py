"""Test-set evaluation of a classifier: top-1, top-5 and mean class accuracy over every test sample exactly once
(also across processes with --dist_eval), the per-sample logits (predict), and the files of a final evaluation
(per_class.csv, scores.npz). Used by the training entry points, main_knn.py, predict.py and the pictures."""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from util import actions, devices, dist, engine, figures, scores


def hit_sums(top, targets, num_classes):
    """Sums over predictions `top` (N, k) (classes, best first) of the true classes `targets` (N,), as one float64
    tensor (3 + 2 * num_classes,): top-1 hits, top-k hits, samples, then the top-1 hits (C,) and the samples
    (C,) of each class. Computed on the device of `top` without a host read-back."""
    hits = top.eq(targets[:, None])
    top1 = hits[:, 0].double()
    per_class = top1.new_zeros(2, num_classes)
    per_class[0].index_add_(0, targets, top1)
    per_class[1].index_add_(0, targets, torch.ones_like(top1))
    totals = torch.stack([top1.sum(), hits.any(dim=1).double().sum(), top1.new_tensor(float(len(targets)))])
    return torch.cat([totals, per_class.flatten()])


def accuracies(sums):
    """{'acc1', 'acc5', 'mean_class_acc' (%), 'num_samples'} from the hit_sums of the whole test set (a list).
    mean_class_acc is the mean of the per-class top-1 over the classes with a test sample."""
    top1, top5, count = sums[:3]
    hits, counts = np.split(np.array(sums[3:]), 2)
    return {'acc1': 100 * top1 / count, 'acc5': 100 * top5 / count,
            'mean_class_acc': float(np.nanmean(scores.class_rates(hits, counts))), 'num_samples': int(count)}


def evaluation_sums(logits, targets):
    """(4 + 2C,) float64: the summed cross-entropy of logits (N, C) float32 against targets (N,), then their
    hit_sums with top-5."""
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    loss = F.cross_entropy(logits, targets, reduction='sum').double()
    return torch.cat([loss[None], hit_sums(top, targets, logits.shape[1])])


def evaluation_stats(sums):
    """evaluate's stats from evaluation_sums added over the whole test set (a list)."""
    return {'loss': sums[0] / sums[3], **accuracies(sums[1:])}


@torch.no_grad()
def evaluate(data_loader, model, device, args):
    """Cross-entropy, top-1 / top-5 and mean class accuracy (%) over every test sample exactly once; the
    classes are the args.model_args['num_classes'] outputs of the model.

    With --dist_eval each rank holds a disjoint shard and the sums of losses, hits and samples (overall and
    per class) are added over ranks; the only host read-back is at the end. Every rank first takes rank 0's
    buffers (BatchNorm statistics), so that the shards are evaluated by one model, the one rank 0 saves.
    """
    if args.dist_eval:
        dist.broadcast_buffers(model)
    model.eval()
    totals = torch.zeros(4 + 2 * args.model_args['num_classes'], dtype=torch.float64, device=device)
    for samples, targets, _ in engine.progress(data_loader, 'Test', leave=False):
        samples = samples.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with devices.autocast(args, device):
            logits = model(samples)
        totals += evaluation_sums(logits.float(), targets)
    if args.dist_eval:
        dist.all_reduce_sum(totals)
    return evaluation_stats(totals.tolist())


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
        with devices.autocast(args, device):
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


def action_names(args):
    """The action names of the test data (by its file name, else its class count), or None when unknown (a data
    file named neither NTU60_*, NTU120_* nor PKU* with another class count)."""
    dataset = actions.guess_dataset(args.val_feeder_args.get('data_path'), args.model_args.get('num_classes'))
    return actions.action_names(dataset) if dataset else None


def write_test_outputs(args, dataset, logits, labels, names):
    """Rank 0: output_dir/per_class.csv (each action's test top-1, worst first; `names` or None) and, with
    --save_scores, output_dir/scores.npz (name, logits and label of every test sample). Returns the
    confusion matrix (C, C) on rank 0, else None."""
    if not dist.is_main_process():
        return None
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    matrix = figures.confusion(labels.numpy(), logits.argmax(1).numpy(), logits.shape[1])
    path = figures.write_per_class_csv(matrix, names or [''] * len(matrix), out / 'per_class.csv')
    print(f"Per-class accuracy of the {len(labels)} test samples written to {path}")
    if args.save_scores:
        scores.save_scores(out / 'scores.npz', dataset.sample_name, logits.numpy(), labels.numpy())
        print(f"Scores of the {len(labels)} test samples written to {out / 'scores.npz'}")
    return matrix


def evaluate_and_save(data_loader, model, device, args):
    """--eval --save_scores in one pass over the test set: predict, write_test_outputs, and evaluate's stats
    computed from the same logits."""
    logits, labels = predict(data_loader, model, device, args)
    write_test_outputs(args, data_loader.dataset, logits, labels, action_names(args))
    return evaluation_stats(evaluation_sums(logits, labels).tolist())
