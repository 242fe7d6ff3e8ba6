"""Linear probe: a frozen pre-trained encoder (in eval mode), non-affine BatchNorm and a linear classifier.

    torchrun --nproc_per_node=4 main_linprobe.py --config config/ntu60_xsub/linear.yaml \
        --finetune output/ntu60_xsub/pretrain_mamp/checkpoint-399.pth --output_dir output/ntu60_xsub/linear \
        --dist_eval
"""
import torch
import torch.nn as nn

import engine_finetune
from model_transformer import prepare_linear_probe as prepare_model
from util import config, evaluation, runner


def make_optimizer(model, args):
    """SGD with momentum 0.9 over the head."""
    return torch.optim.SGD(model.head.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay,
                           **runner.optimizer_options(args))


def main(args):
    criterion = nn.CrossEntropyLoss()
    return runner.run(args, lambda **kw: engine_finetune.train_one_epoch(criterion=criterion, **kw),
                      make_optimizer, evaluate=evaluation.evaluate,
                      after_epoch=engine_finetune.FinalEvaluation(args), prepare_model=prepare_model)


if __name__ == '__main__':
    main(config.parse_args('linprobe'))
