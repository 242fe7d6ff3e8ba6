"""config/real_pku (scripts/real_pku.sh): the study's runs differ only where the study says they do, and the
pre-trained encoder loads into the linear probe and the fine-tune models weight for weight."""
import torch

from conftest import ROOT
from model_mamp import MAMP
from model_transformer import SkeletonTransformer, load_pretrained
from util import config

CONFIGS = ROOT / 'config' / 'real_pku'
ENCODER = ('dim_in', 'dim_feat', 'depth', 'num_heads', 'mlp_ratio', 'num_frames', 'num_joints', 'patch_size',
           't_patch_size', 'qkv_bias')


def resolved(protocol, name):
    return vars(config.parse_args(protocol, ['--config', str(CONFIGS / f'{name}.yaml'),
                                             '--data_path', 'PKUv1_XSub.npz']))


def differences(a, b):
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


def test_mae_and_scratch_change_only_the_compared_setting():
    mamp, mae = resolved('pretrain', 'pretrain_mamp'), resolved('pretrain', 'pretrain_mae')
    assert differences(mamp, mae) == {'config', 'model_args', 'motion_aware_tau'}
    assert differences(mamp['model_args'], mae['model_args']) == {'target'}
    assert (mamp['model_args']['target'], mamp['motion_aware_tau']) == ('motion', 0.8)
    assert (mae['model_args']['target'], mae['motion_aware_tau']) == ('joints', 0.0)
    finetune, scratch = resolved('finetune', 'finetune'), resolved('finetune', 'scratch')
    assert differences(finetune, scratch) == {'config', 'layer_decay'}
    assert (finetune['layer_decay'], scratch['layer_decay']) == (0.8, 1.0)


def test_pretrained_encoder_loads_unchanged_into_probe_and_fine_tune():
    pretrain = resolved('pretrain', 'pretrain_mamp')
    torch.manual_seed(0)
    mamp = MAMP(**pretrain['model_args'])
    frames = pretrain['train_feeder_args']['window_size']
    for protocol, name in (('linprobe', 'linear'), ('finetune', 'finetune')):
        args = resolved(protocol, name)
        assert {k: args['model_args'][k] for k in ENCODER} == {k: pretrain['model_args'][k] for k in ENCODER}
        assert args['train_feeder_args']['window_size'] == args['val_feeder_args']['window_size'] == frames
        model = SkeletonTransformer(**args['model_args'])
        load_pretrained(model, {'model': mamp.state_dict()})
        own = model.state_dict()
        encoder = [k for k in own if not k.startswith(('head', 'fc_norm'))]
        assert 'temp_embed' in encoder and len(encoder) > 10
        for key in encoder:
            assert torch.equal(own[key], mamp.state_dict()[key]), key
