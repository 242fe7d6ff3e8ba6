"""The skeleton transformer and MAMP: equality with the official models, the masking math, shapes, loading."""
import argparse
import pathlib
import pickle
import re

import pytest
import torch
import torch.nn as nn
from timm.optim import param_groups_layer_decay

from conftest import shared_path
from model_mamp import MAMP
from model_transformer import SkeletonTransformer, load_pretrained
from util.checkpoint import load_checkpoint

TINY = dict(dim_in=3, dim_feat=16, depth=2, num_heads=2, mlp_ratio=2, num_frames=24, num_joints=25, t_patch_size=4)


def load_vector(name):
    return torch.load(shared_path('vectors', name), weights_only=True)


def tiny_mamp(**kw):
    return MAMP(**TINY, decoder_dim_feat=8, decoder_depth=1, **kw)


def skeletons(n=2, m=2, frames=24, seed=0):
    """Random-walk skeletons (n, 3, frames, 25, m)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, frames, 25, m, generator=g).cumsum(dim=2) * 0.1


# ---------------------------------------------------------------- equality with the official models

@pytest.mark.parametrize('name', ['classifier_linprobe.pt', 'classifier_finetune.pt'])
def test_classifier_matches_official(name):
    vec = load_vector(name)
    model = SkeletonTransformer(**vec['config'])
    model.load_state_dict(vec['state_dict'], strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(vec['input'])
    torch.testing.assert_close(logits, vec['logits'], rtol=0, atol=1e-5)


@pytest.mark.parametrize('name, extra', [
    ('mamp_motion.pt', {}),
    ('mamp_random.pt', {}),
    # the official MAE baseline predicts joint positions and masks uniformly at random
    ('mamp_mae.pt', {'target': 'joints'}),
])
def test_mamp_matches_official(name, extra):
    vec = load_vector(name)
    model = MAMP(**vec['config'], **extra)
    model.load_state_dict(vec['state_dict'], strict=True)
    model.train()
    call = {'motion_aware_tau': 0.0, **vec['call']}
    torch.manual_seed(vec['rng_seed'])
    loss, pred, mask = model(vec['input'], **call)
    loss.backward()
    torch.testing.assert_close(mask, vec['mask'], rtol=0, atol=0)
    torch.testing.assert_close(pred, vec['pred'], rtol=0, atol=1e-5)
    torch.testing.assert_close(loss, vec['loss'], rtol=0, atol=1e-5)
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads.keys() == vec['grads'].keys()
    for n, g in grads.items():
        torch.testing.assert_close(g, vec['grads'][n], rtol=1e-5, atol=1e-5, msg=lambda m: f"{n}: {m}")


# ---------------------------------------------------------------- masking

# kept = int(L * (1 - mask_ratio)) in floating point, as the official code computes it: 1 - 0.9 is slightly
# below 0.1, so 150 and 750 tokens at ratio 0.9 keep 14 and 74, not 15 and 75.
@pytest.mark.parametrize('L, ratio, kept', [(150, 0.9, 14), (750, 0.9, 74), (100, 0.75, 25), (120, 0.8, 23),
                                            (750, 0.8, 149), (30, 0.5, 15), (10, 0.0, 10)])
@pytest.mark.parametrize('tau', [0.0, 0.8])
def test_kept_count(L, ratio, kept, tau):
    model = tiny_mamp()
    motion = torch.rand(4, L)
    ids_keep, ids_restore, mask = model.masking(4, L, ratio, 'cpu', motion, tau)
    assert ids_keep.shape == (4, kept)
    assert mask.sum(dim=1).tolist() == [L - kept] * 4
    assert (mask.gather(1, ids_keep) == 0).all()
    assert (torch.sort(ids_restore, dim=1).values == torch.arange(L)).all()


def keep_frequency(model, motion, tau, draws=4000):
    """How often each token is kept over `draws` masks of one sequence with scores `motion` (L,)."""
    L = motion.numel()
    _, _, mask = model.masking(draws, L, 0.9, 'cpu', motion.expand(draws, L), tau)
    return 1 - mask.mean(dim=0)


def test_motion_aware_masking_keeps_moving_tokens_less():
    model = tiny_mamp()
    x = skeletons(n=1, m=1)
    x = x * torch.linspace(0, 2, 25).view(1, 1, 1, 25, 1)  # joint v moves with amplitude ~ v
    motion = model.motion_scores(model.patchify(x))[0]
    torch.manual_seed(0)
    freq = keep_frequency(model, motion, tau=0.8)
    order = motion.argsort()
    quarter = len(order) // 4
    low, high = freq[order[:quarter]].mean(), freq[order[-quarter:]].mean()
    assert high < 0.5 * low, f"keep frequency of high-motion tokens {high:.3f}, of low-motion tokens {low:.3f}"
    ranks = lambda v: v.argsort().argsort().float()
    spearman = torch.corrcoef(torch.stack([ranks(motion), ranks(freq)]))[0, 1]
    assert spearman < -0.8, f"rank correlation of motion and keep frequency {spearman:.3f}"


def test_motion_scores_match_patch_differences():
    model = tiny_mamp()
    x = skeletons(n=1, m=2)
    scores = model.motion_scores(model.patchify(x)).view(2, 6, 25)
    for body in range(2):
        for t in range(6):
            tp = max(t, 1)  # the first temporal patch takes the score of the second
            now = x[0, :, 4 * tp:4 * tp + 4, 3, body]
            before = x[0, :, 4 * tp - 4:4 * tp, 3, body]
            assert scores[body, t, 3] == pytest.approx((now - before).abs().mean().item(), abs=1e-6)


def test_large_tau_masks_uniformly():
    model = tiny_mamp()
    x = skeletons(n=1, m=1) * torch.linspace(0, 2, 25).view(1, 1, 1, 25, 1)
    motion = model.motion_scores(model.patchify(x))[0]
    torch.manual_seed(0)
    deviation = {tau: (keep_frequency(model, motion, tau) - 14 / 150).abs().max().item()
                 for tau in (0.5, 5.0, 1e6)}
    # binomial standard deviation of a keep frequency over 4000 draws is about 0.0046
    assert deviation[1e6] < 0.025, deviation
    assert deviation[0.5] > deviation[5.0] > deviation[1e6], deviation


# ---------------------------------------------------------------- loss and encoder

@pytest.mark.parametrize('target', ['motion', 'joints'])
def test_loss_ignores_visible_tokens(target):
    model = tiny_mamp(target=target)
    x = skeletons()
    with torch.no_grad():
        loss, pred, mask = model(x, motion_stride=2)
        target_tokens = model.forward_target(x, motion_stride=2)
        expected = (pred - target_tokens).pow(2).mean(dim=-1)[mask.bool()].mean()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        visible_changed = pred + 100 * (1 - mask).unsqueeze(-1)
        assert model.forward_loss(target_tokens, visible_changed, mask) == loss
        masked_changed = pred + 100 * mask.unsqueeze(-1)
        assert model.forward_loss(target_tokens, masked_changed, mask) > loss + 1


def test_motion_target():
    model = tiny_mamp()
    x = skeletons(n=1, m=1)
    target = model.forward_target(x, motion_stride=2).view(6, 25, 4, 3)  # (TP, V, frame in patch, coordinate)
    for t, v, u in [(0, 0, 0), (2, 7, 3), (5, 24, 1), (5, 24, 2), (5, 3, 3)]:
        frame = 4 * t + u
        expected = x[0, :, frame + 2, v, 0] - x[0, :, frame, v, 0] if frame + 2 < 24 else torch.zeros(3)
        torch.testing.assert_close(target[t, v, u], expected)


def test_encoder_sees_only_kept_tokens():
    model = tiny_mamp()
    x = skeletons()
    seen = []
    model.blocks[0].register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        _, _, mask = model(x, mask_ratio=0.75)
        tokens = model.embed(x)
    (encoder_input,) = seen
    assert encoder_input.shape == (4, int(150 * 0.25), 16)
    for seq in range(4):
        difference = (encoder_input[seq, :, None] - tokens[seq, None]).abs().amax(dim=-1)  # (kept, L)
        distance, position = difference.min(dim=1)
        assert distance.max() < 1e-6
        assert sorted(position.tolist()) == (mask[seq] == 0).nonzero().flatten().tolist()


# ---------------------------------------------------------------- full size

def count(model, prefix=''):
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


@pytest.mark.slow
def test_full_size_shapes_and_parameter_counts():
    torch.manual_seed(0)
    mamp = MAMP(norm_skes_loss=True)
    x = skeletons(n=1, frames=120)
    with torch.no_grad():
        loss, pred, mask = mamp(x)
    assert loss.shape == () and torch.isfinite(loss)
    assert pred.shape == (2, 750, 12) and mask.shape == (2, 750)
    assert mask.sum(dim=1).tolist() == [750 - 74] * 2

    classifier = SkeletonTransformer(protocol='finetune')
    classifier.eval()
    with torch.no_grad():
        features = classifier.forward_features(x)
        logits = classifier(x)
    assert features.shape == (1, 2, 30, 25, 256) and logits.shape == (1, 60)

    decoder = count(mamp, 'decoder') + count(mamp, 'mask_token')
    encoder = count(mamp) - decoder
    block = 4 * 256 + (3 * 256 * 256 + 3 * 256) + (256 * 256 + 256) + 2 * (4 * 256 * 256) + 4 * 256 + 256
    embeddings = 3 * 4 * 256 + 256 + 30 * 256 + 25 * 256
    assert encoder == embeddings + 8 * block + 2 * 256
    assert decoder == 256 + 30 * 256 + 25 * 256 + 256 * 256 + 256 + 5 * block + 2 * 256 + 256 * 12 + 12
    counts = {'pre-training': count(mamp), 'encoder': encoder, 'decoder': decoder, 'fine-tune': count(classifier),
              'linear probe': count(SkeletonTransformer())}
    rounded = {k: round(v / 1e6, 2) for k, v in counts.items()}
    message = 'parameters (M): ' + ', '.join(f"{k} {v / 1e6:.3f}" for k, v in counts.items())
    assert rounded == {'pre-training': 10.37, 'encoder': 6.34, 'decoder': 4.03, 'fine-tune': 19.57,
                       'linear probe': 6.35}, message


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize('shape', [(2, 3, 20, 25, 2), (2, 3, 23, 25, 2), (2, 3, 24, 17, 2), (2, 6, 24, 25, 2),
                                   (2, 3, 24, 25)])
@pytest.mark.parametrize('build', [tiny_mamp, lambda: SkeletonTransformer(**TINY)])
def test_bad_input_shape(shape, build):
    model = build()
    with pytest.raises(ValueError, match=re.escape(f"(N, C=3, T=24, V=25, M), got {shape}")):
        model(torch.zeros(shape))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match='num_frames=22 must be divisible by t_patch_size=4'):
        SkeletonTransformer(**{**TINY, 'num_frames': 22})
    with pytest.raises(ValueError, match="target='bones'"):
        tiny_mamp(target='bones')
    with pytest.raises(ValueError, match="protocol='knn'"):
        SkeletonTransformer(**TINY, protocol='knn')


def test_yaml_style_arguments():
    model = SkeletonTransformer(**TINY, qk_scale='None', norm_layer='nn.LayerNorm')
    assert isinstance(model.norm, nn.LayerNorm) and model.norm.eps == 1e-5
    with pytest.raises(ValueError, match='qk_scale=0.5'):
        SkeletonTransformer(**TINY, qk_scale=0.5)


# ---------------------------------------------------------------- layer decay

def test_layer_decay_groups():
    model = SkeletonTransformer(**TINY)
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.5)
    scale = {n: g['lr_scale'] for g in groups for n, p in model.named_parameters()
             if any(p is q for q in g['params'])}
    decay = {n: g['weight_decay'] for g in groups for n, p in model.named_parameters()
             if any(p is q for q in g['params'])}
    assert scale['joints_embed.proj.weight'] == scale['temp_embed'] == scale['pos_embed'] == 0.5 ** 3
    assert scale['blocks.0.attn.qkv.weight'] == 0.5 ** 2 and scale['blocks.1.mlp.fc2.bias'] == 0.5
    assert scale['norm.weight'] == scale['head.fc.weight'] == 1
    assert decay['norm.weight'] == decay['blocks.0.attn.qkv.bias'] == 0
    assert decay['temp_embed'] == decay['blocks.0.attn.qkv.weight'] == decay['head.fc.weight'] == 0.05


# ---------------------------------------------------------------- checkpoints

def save_training_checkpoint(model, path):
    """A checkpoint as main_pretrain.py writes it."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    loss, _, _ = model(skeletons())
    loss.backward()
    optimizer.step()
    scaler = torch.amp.GradScaler('cpu')
    args = argparse.Namespace(batch_size=2, mask_ratio=0.9, output_dir=str(path.parent), model_args={'depth': 2})
    torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'epoch': 399,
                'scaler': scaler.state_dict(), 'args': args}, path)


def test_checkpoint_loads_into_mamp_and_classifier(tmp_path, capsys):
    path = tmp_path / 'checkpoint-399.pth'
    pretrained = tiny_mamp()
    save_training_checkpoint(pretrained, path)

    checkpoint = load_checkpoint(path)
    assert checkpoint['epoch'] == 399 and checkpoint['args'].mask_ratio == 0.9
    mamp = tiny_mamp()
    mamp.load_state_dict(checkpoint['model'], strict=True)
    for n, p in pretrained.state_dict().items():
        assert torch.equal(mamp.state_dict()[n], p), n

    classifier = SkeletonTransformer(**TINY, num_classes=5)
    result = load_pretrained(classifier, path)
    assert sorted(result.missing_keys) == ['head.fc.bias', 'head.fc.weight'] and not result.unexpected_keys
    decoder = sum(k.startswith('decoder') for k in pretrained.state_dict())
    out = capsys.readouterr().out
    assert f"dropped from {path}: mask_token: 1 tensor, decoder: {decoder} tensors\n" in out
    assert 'decoder_embed.weight' not in out and 'interpolated' not in out
    own = classifier.state_dict()
    for n, p in pretrained.state_dict().items():
        if not n.startswith('decoder') and n != 'mask_token':
            assert torch.equal(own[n], p), n

    bare = {k: v for k, v in checkpoint['model'].items() if k != 'blocks.1.norm2.bias'}
    with pytest.raises(KeyError, match=r'blocks\.1\.norm2\.bias'):
        load_pretrained(SkeletonTransformer(**TINY), bare)


def cubic_weight(d, A=-0.75):
    """Cubic convolution kernel (Keys) with the constant A that PyTorch's bicubic interpolation uses."""
    d = abs(d)
    return (A + 2) * d ** 3 - (A + 3) * d ** 2 + 1 if d <= 1 else A * d ** 3 - 5 * A * d ** 2 + 8 * A * d - 4 * A


def test_load_pretrained_interpolates_temp_embed():
    pretrained = tiny_mamp()
    classifier = SkeletonTransformer(**{**TINY, 'num_frames': 48}, num_classes=5)
    load_pretrained(classifier, {'model': pretrained.state_dict()})
    old, new = pretrained.temp_embed.detach()[0, :, 0], classifier.temp_embed.detach()[0, :, 0]
    assert new.shape == (12, 16)
    # sample t of 12 sits at source position (t + 0.5) / 2 - 0.5 (align_corners=False); away from the
    # borders it is the cubic-convolution sum over the 4 nearest of the 6 source samples
    for t in range(3, 9):
        source = (t + 0.5) / 2 - 0.5
        taps = range(int(source) - 1, int(source) + 3)
        expected = sum(cubic_weight(source - s) * old[s] for s in taps)
        torch.testing.assert_close(new[t], expected)
    # the kernel weights sum to one: a temporal embedding constant in time stays constant
    pretrained.temp_embed.data.copy_(torch.linspace(-1, 1, 16).expand(1, 6, 1, 16))
    load_pretrained(classifier, {'model': pretrained.state_dict()})
    torch.testing.assert_close(classifier.temp_embed.detach(), torch.linspace(-1, 1, 16).expand(1, 12, 1, 16))


def test_load_pretrained_reports_interpolation_only_when_the_frames_differ(capsys):
    """Another frame count: interpolated and said so; the same shape: nothing said; another width (the same
    frames): no interpolation claimed, one line naming both widths."""
    pretrained = tiny_mamp()
    load_pretrained(SkeletonTransformer(**{**TINY, 'num_frames': 48}), {'model': pretrained.state_dict()})
    assert "interpolated temp_embed from (1, 6, 1, 16) to (1, 12, 1, 16)" in capsys.readouterr().out
    load_pretrained(SkeletonTransformer(**TINY), {'model': pretrained.state_dict()})
    assert 'interpolated' not in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"^an encoder of width 16, the model's is 32 \(model_args.dim_feat\)"):
        load_pretrained(SkeletonTransformer(**{**TINY, 'dim_feat': 32}), {'model': pretrained.state_dict()})
    assert 'interpolated' not in capsys.readouterr().out


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match='missing.pth not found'):
        load_checkpoint(tmp_path / 'missing.pth')
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(ValueError, match='notes.pth'):
        load_checkpoint(text)

    marker = tmp_path / 'code-ran'

    class Payload:
        def __reduce__(self):
            return pathlib.Path.touch, (marker,)

    hostile = tmp_path / 'hostile.pth'
    torch.save({'model': {}, 'payload': Payload()}, hostile)
    with pytest.raises(ValueError, match='hostile.pth'):
        load_checkpoint(hostile)
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload()))  # the payload does run when unpickled without restrictions
    assert marker.exists()
