"""Contrastive tuning (STARS) of a pre-trained encoder: NNCLR's nearest-neighbour contrastive loss on two views
of each sequence, from a MAMP (or MAE baseline) pre-training checkpoint. As STARS, only the upper half of the
encoder's blocks moves (block i at lr * layer_decay^(depth - i)), with the final norm and the heads at the lr;
the embeddings and the lower blocks stay as pre-trained (--tune_blocks all: every parameter, layer-wise decay
down to the embeddings). docs/tuning.md sets every setting beside STARS' code.

    torchrun --nproc_per_node=4 main_tune.py --config config/ntu60_xsub/tune.yaml \
        --finetune output/ntu60_xsub/pretrain_mamp/checkpoint-399.pth --output_dir output/ntu60_xsub/tune

Its checkpoints go wherever a pre-training checkpoint goes (main_linprobe.py, main_finetune.py, main_knn.py,
main_fewshot.py --finetune): the projector, predictor and queue are dropped there.
"""
import os

import engine_pretrain
import engine_tune
import main_finetune
from util import config, data, runner
from util.config import fail


def check_args(args):
    """Fail with one line, before anything is written, on settings the tuning cannot run with."""
    if args.gpu_aug:
        fail("--gpu_aug: the tuning augments its two views in the loaders; run without --gpu_aug")
    if args.temperature <= 0:
        fail(f"--temperature {args.temperature}: expected a number > 0")
    if args.batch_size < 2:
        fail(f"--batch_size {args.batch_size}: the projector and predictor normalise over the batch (BatchNorm), "
             f"which needs at least 2 samples per process; give --batch_size 2 or more")
    depth = args.model_args.get('depth', 8)
    if args.tune_blocks not in ('all', 'upper') and args.tune_blocks > depth:
        fail(f"--tune_blocks {args.tune_blocks}: the encoder has {depth} block(s) (model_args.depth); give at most "
             f"{depth}, 'upper' or 'all'")
    world = int(os.environ.get('WORLD_SIZE', 1))
    if args.queue_size < world * args.batch_size:
        fail(f"--queue_size {args.queue_size}: smaller than one batch of {world * args.batch_size} ({world} "
             f"process(es) x batch_size {args.batch_size}); the queue holds past batches: raise --queue_size")
    dataset = data.build_dataset(args, 'train_feeder_args')
    if getattr(dataset, 'views', 1) != 2:
        fail(f"{args.config}: the tuning needs two views of each sample (feeder: feeder.views.ViewsFeeder with "
             f"train_feeder_args.views: 2)")
    if args.queue_size > len(dataset):
        fail(f"--queue_size {args.queue_size}: larger than the {len(dataset)} training samples of "
             f"{args.train_feeder_args['data_path']}; the queue would hold samples twice: set --queue_size "
             f"{len(dataset)} or less")


def tuned_blocks(depth, tune_blocks):
    """The indices of the blocks that --tune_blocks moves: 'all' every block, 'upper' those from depth // 2 on
    (STARS), a number N the last N."""
    if tune_blocks in ('all', 'upper'):
        return range(0 if tune_blocks == 'all' else depth // 2, depth)
    return range(depth - tune_blocks, depth)


def freeze(model, tune_blocks):
    """Freeze what --tune_blocks keeps as pre-trained: with 'all' nothing; otherwise the embeddings and the
    blocks below the tuned ones (the final norm and the heads always move)."""
    if tune_blocks == 'all':
        return
    moving = {f'blocks.{i}.' for i in tuned_blocks(len(model.blocks), tune_blocks)}
    for name, param in model.named_parameters():
        if not name.startswith(('norm.', 'projector.', 'predictor.', *moving)):
            param.requires_grad_(False)


def main(args):
    check_args(args)
    args.model_args = {**args.model_args, 'queue_size': args.queue_size}  # the model's queue is --queue_size
    return runner.run(args, engine_tune.train_one_epoch, main_finetune.make_optimizer,
                      prepare_model=lambda model: freeze(model, args.tune_blocks),
                      after_epoch=engine_pretrain.Monitor(args))


if __name__ == '__main__':
    main(config.parse_args('tune'))
