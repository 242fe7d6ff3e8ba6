"""MAMP pre-training (masked motion prediction), or the MAE baseline with model_args.target: joints.

    torchrun --nproc_per_node=4 main_pretrain.py --config config/ntu60_xsub/pretrain_mamp.yaml \
        --output_dir output/ntu60_xsub/pretrain_mamp
"""
import torch
from timm.optim import param_groups_weight_decay

import engine_pretrain
from util import config, runner


def make_optimizer(model, args):
    """AdamW, betas (0.9, 0.95); no weight decay on biases and other 1-D parameters."""
    param_groups = param_groups_weight_decay(model, args.weight_decay)
    return torch.optim.AdamW(param_groups, lr=args.lr, betas=(0.9, 0.95), **runner.optimizer_options(args))


def main(args):
    return runner.run(args, engine_pretrain.train_one_epoch, make_optimizer,
                      after_epoch=engine_pretrain.Monitor(args))


if __name__ == '__main__':
    main(config.parse_args('pretrain'))
