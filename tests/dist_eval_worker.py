"""Run by tests/test_multi_gpu.py under torchrun (gloo): --dist_eval of a fine-tune model whose BatchNorm
running statistics differ on every rank, as they do after the last DDP step of an epoch.

Each rank writes <out>/rank<r>.json: its own model evaluated alone on the whole test set (before the
evaluation on shards), the mean class accuracy of that model computed by util.scores from predict()'s logits,
and the result of the evaluation on shards.
"""
import argparse
import copy
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_transformer import SkeletonTransformer  # noqa: E402
from train_fixtures import TINY_ENCODER  # noqa: E402
from util import dist, evaluation, scores  # noqa: E402
from util.data import ShardSampler  # noqa: E402

NUM_TEST, CLASSES = 11, 4
ARGS = {'amp': 'none', 'model_args': {'num_classes': CLASSES}}


def main(out):
    dist.init_distributed_mode('cpu')
    rank, device = dist.get_rank(), torch.device('cpu')
    torch.manual_seed(0)  # the same weights on every rank
    model = SkeletonTransformer(num_classes=CLASSES, protocol='finetune', **TINY_ENCODER)
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor([3, 1, 1, 0, 1, 1, 0, 2, 3, 0, 1])  # rank 0's model: classes 100, 100, 33 and 0% right
    test_set = TensorDataset(torch.randn(NUM_TEST, 3, 24, 25, 2, generator=g), labels, torch.arange(NUM_TEST))
    g.manual_seed(100 + rank)  # each rank its own BatchNorm statistics
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.1, generator=g)  # small enough that predictions still vary
            module.running_var.uniform_(0.5, 2, generator=g)
    whole = DataLoader(test_set, batch_size=4)
    alone = evaluation.evaluate(whole, copy.deepcopy(model), device, argparse.Namespace(dist_eval=False, **ARGS))
    logits, labels = evaluation.predict(whole, copy.deepcopy(model), device,
                                             argparse.Namespace(dist_eval=False, **ARGS))
    predicted = {'mean_class_acc': scores.mean_class_accuracy(logits.numpy(), labels.numpy()),
                 'acc1': scores.topk_accuracy(logits.numpy(), labels.numpy(), 1)}
    shard = DataLoader(test_set, sampler=ShardSampler(NUM_TEST, rank, dist.get_world_size()), batch_size=4)
    sharded = evaluation.evaluate(shard, model, device, argparse.Namespace(dist_eval=True, **ARGS))
    (Path(out) / f'rank{rank}.json').write_text(json.dumps({'alone': alone, 'predicted': predicted,
                                                            'dist_eval': sharded}))
    dist.cleanup()


if __name__ == '__main__':
    main(sys.argv[1])
