"""The benchmarked models, optimisers and losses, built as the training entry points build them, their random
input batches, and one training (or evaluation) step of each."""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.loss import LabelSmoothingCrossEntropy

from bench.settings import AMP, FINETUNE_DROP_PATH, PRETRAIN_CALL, TUNE_TEMPERATURE
from model_mamp import MAMP
from model_tune import NNCLR
from model_transformer import SkeletonTransformer


def model_args(size):
    keys = ('dim_in', 'dim_feat', 'depth', 'num_heads', 'mlp_ratio', 'num_frames', 'num_joints', 'patch_size',
            't_patch_size')
    return {k: size[k] for k in keys}


def train_args(precision, fused):
    """The fields of the training arguments that the optimiser and loss-scaler builders read."""
    return argparse.Namespace(amp={'fp32': 'none'}.get(precision, precision), fused_optim=fused, lr=1e-4,
                              weight_decay=0.05, layer_decay=0.8)


def build(section, size, device, precision, fused, decoder_depth=None):
    """(model, optimizer or None, loss function of (model, x, y)) as the training entry points build them."""
    import main_finetune
    import main_linprobe
    import main_pretrain
    import main_tune
    from util.engine import set_train_mode

    args = train_args(precision, fused)
    if section == 'pretrain':
        model = MAMP(**model_args(size), decoder_dim_feat=size['dim_feat'], decoder_depth=decoder_depth,
                     norm_skes_loss=True, target='motion').to(device)
        call = dict(PRETRAIN_CALL, mask_ratio=size['mask_ratio'])
        return model, main_pretrain.make_optimizer(model, args), lambda m, x, y: m(x, **call)[0]
    if section == 'tune':  # the second view: the batch reversed in time (the same cost as another crop)
        model = NNCLR(**model_args(size), proj_hidden_dim=size['proj_hidden_dim'], proj_dim=size['proj_dim'],
                      pred_hidden_dim=size['pred_hidden_dim'], queue_size=size['queue_size'])
        main_tune.freeze(model, 'upper')  # STARS: the upper half of the blocks, as config/*/tune.yaml
        model.to(device)
        fill_queue(model)
        return (model, main_finetune.make_optimizer(model, args),
                lambda m, x, y: m(x, x.flip(2), torch.arange(len(x), device=x.device),
                                  temperature=TUNE_TEMPERATURE)[0])
    if section == 'linprobe':
        model = SkeletonTransformer(**model_args(size), num_classes=size['num_classes'], protocol='linprobe')
        main_linprobe.prepare_model(model)
        model.to(device)
        set_train_mode(model)
        criterion = nn.CrossEntropyLoss()
        return model, main_linprobe.make_optimizer(model, args), lambda m, x, y: criterion(m(x), y)
    model = SkeletonTransformer(**model_args(size), num_classes=size['num_classes'], protocol='finetune',
                                drop_path_rate=FINETUNE_DROP_PATH).to(device)
    if section == 'eval':
        return model.eval(), None, None
    criterion = LabelSmoothingCrossEntropy(0.1)
    return model, main_finetune.make_optimizer(model, args), lambda m, x, y: criterion(m(x), y)


def fill_queue(model):
    """A full support queue of random unit rows of other samples than the batch's, as after the first epochs:
    every step searches all of it."""
    with torch.no_grad():
        model.queue.copy_(F.normalize(torch.randn(model.queue.shape), dim=1).to(model.queue.device))
        model.queue_len.fill_(len(model.queue))
        model.queue_id.copy_(torch.arange(len(model.queue)) + 10 ** 6)


def skeleton_batch(batch, frames, size, device, seed=0):
    """Random-walk skeletons (batch, 3, frames, 25, 2) and labels (batch,)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, size['dim_in'], frames, size['num_joints'], size['bodies'], generator=g).cumsum(2) * .02
    y = torch.randint(size['num_classes'], (batch,), generator=g)
    return x.to(device), y.to(device)


def make_step(section, model, optimizer, loss_fn, x, y, precision, device):
    """A function running one step: a training step (optimiser step included) or, for 'eval', a forward."""
    from util.devices import LossScaler

    autocast = lambda: torch.autocast(device.type, dtype=AMP[precision], enabled=AMP[precision] is not None)
    if section == 'eval':
        def step():
            with torch.inference_mode(), autocast():
                model(x)
        return step
    scaler = LossScaler(train_args(precision, True), device)
    params = [p for group in optimizer.param_groups for p in group['params']]

    def step():
        with autocast():
            loss = loss_fn(model, x, y)
        scaler(loss, optimizer, params)
        optimizer.zero_grad(set_to_none=True)
    return step
