"""End-to-end fine-tuning of a pre-trained encoder with an MLP head (also semi-supervised, transfer and
training from scratch, by config).

    torchrun --nproc_per_node=4 main_finetune.py --config config/ntu60_xsub/finetune.yaml \
        --finetune output/ntu60_xsub/pretrain_mamp/checkpoint-399.pth --output_dir output/ntu60_xsub/finetune \
        --dist_eval
"""
import torch
import torch.nn as nn
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import param_groups_layer_decay

import engine_finetune
from util import config, evaluation, runner


def make_optimizer(model, args):
    """AdamW with layer-wise lr decay (embeddings layer 0, block i layer i + 1, head last); no weight decay
    on biases and other 1-D parameters (the embeddings are decayed, as in the published runs)."""
    param_groups = param_groups_layer_decay(model, args.weight_decay, no_weight_decay_list=(),
                                            layer_decay=args.layer_decay)
    return torch.optim.AdamW(param_groups, lr=args.lr, **runner.optimizer_options(args))


def main(args):
    criterion = LabelSmoothingCrossEntropy(args.smoothing) if args.smoothing > 0 else nn.CrossEntropyLoss()
    return runner.run(args, lambda **kw: engine_finetune.train_one_epoch(criterion=criterion, **kw),
                      make_optimizer, evaluate=evaluation.evaluate,
                      after_epoch=engine_finetune.FinalEvaluation(args))


if __name__ == '__main__':
    main(config.parse_args('finetune'))
