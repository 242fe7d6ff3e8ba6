"""Skeleton transformer: the encoder shared with MAMP pre-training, and the action classifier built on it.

A skeleton sequence x has the layout (N, C, T, V, M): N samples, C=3 coordinates, T frames, V joints, M bodies.
Each body is encoded on its own, as one of N*M sequences of L = (T / t_patch_size) * (V / patch_size) tokens,
one token per patch of t_patch_size frames x patch_size joints.
"""
import inspect
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from data.splits import DIGEST_BYTES
from util import registry
from util.checkpoint import load_checkpoint
from util.flags import check_feeder_args
from util.model_args import check_encoder, check_head, run_checks

NORM_LAYERS = {'LayerNorm': nn.LayerNorm, 'nn.LayerNorm': nn.LayerNorm}


def resolve_norm_layer(norm_layer):
    """The norm layer class, given as a class or by name (as YAML configs give it)."""
    if isinstance(norm_layer, str):
        if norm_layer not in NORM_LAYERS:
            raise ValueError(f"norm_layer={norm_layer!r}: expected one of {sorted(NORM_LAYERS)}")
        return NORM_LAYERS[norm_layer]
    return norm_layer


def check_norm_layer(norm_layer, **_):
    resolve_norm_layer(norm_layer)


def make_blocks(dim, depth, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate,
                norm_layer):
    """`depth` pre-norm transformer blocks with stochastic depth rising linearly to `drop_path_rate`.

    `qk_scale` is accepted as the official configs give it (None, or the string 'None' from YAML; see
    util.model_args.check_encoder): attention always scales by head_dim ** -0.5.
    """
    dpr = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()  # also when built on the meta device
    return nn.ModuleList([
        Block(dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, proj_drop=drop_rate, attn_drop=attn_drop_rate,
              drop_path=dpr[i], norm_layer=norm_layer)
        for i in range(depth)])


def init_weights(module):
    """Xavier-uniform Linear weights and zero biases, LayerNorm weight 1 and bias 0 (to be used with .apply)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SkeletonEmbed(nn.Module):
    """Maps each patch of t_patch_size frames x patch_size joints to one dim_feat token."""

    def __init__(self, dim_in, dim_feat, patch_size, t_patch_size):
        super().__init__()
        patch = (t_patch_size, patch_size)
        self.proj = nn.Conv2d(dim_in, dim_feat, kernel_size=patch, stride=patch)
        # initialise like a Linear on the flattened patch
        nn.init.xavier_uniform_(self.proj.weight.view(dim_feat, -1))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        """(N*M, C, T, V) -> (N*M, T/t_patch_size, V/patch_size, dim_feat)"""
        return self.proj(x).permute(0, 2, 3, 1)


class SkeletonEncoder(nn.Module):
    """Patch embedding, learned temporal and joint embeddings, transformer blocks and a final norm."""
    ARG_CHECKS = (check_encoder, check_norm_layer)  # util.model_args

    def __init__(self, dim_in=3, dim_feat=256, depth=8, num_heads=8, mlp_ratio=4, num_frames=120, num_joints=25,
                 patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None, drop_rate=0., attn_drop_rate=0.,
                 drop_path_rate=0., norm_layer=nn.LayerNorm):
        super().__init__()
        check_encoder(dim_in, dim_feat, depth, num_heads, mlp_ratio, num_frames, num_joints, patch_size, t_patch_size,
                      qk_scale, drop_rate, attn_drop_rate, drop_path_rate)
        self.dim_in, self.num_frames, self.num_joints = dim_in, num_frames, num_joints
        self.patch_size, self.t_patch_size = patch_size, t_patch_size
        self.grid = (num_frames // t_patch_size, num_joints // patch_size)  # (TP, VP)
        self.temp_embed = nn.Parameter(torch.zeros(1, self.grid[0], 1, dim_feat))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, self.grid[1], dim_feat))
        trunc_normal_(self.temp_embed, std=.02)
        trunc_normal_(self.pos_embed, std=.02)
        self.joints_embed = SkeletonEmbed(dim_in, dim_feat, patch_size, t_patch_size)
        self.norm_layer = resolve_norm_layer(norm_layer)
        self.blocks = make_blocks(dim_feat, depth, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate,
                                  attn_drop_rate, drop_path_rate, self.norm_layer)
        self.norm = self.norm_layer(dim_feat)

    def check_input(self, x):
        """Raise a ValueError unless x has the layout (N, dim_in, num_frames, num_joints, M)."""
        if x.ndim != 5 or x.shape[1:4] != (self.dim_in, self.num_frames, self.num_joints):
            raise ValueError(f"expected a skeleton batch of shape (N, C={self.dim_in}, T={self.num_frames}, "
                             f"V={self.num_joints}, M), got {tuple(x.shape)}")

    def embed(self, x):
        """(N, C, T, V, M) -> tokens (N*M, L, dim_feat) with the temporal and joint embeddings added."""
        self.check_input(x)
        N, C, T, V, M = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(N * M, C, T, V)
        x = self.joints_embed(x) + self.temp_embed + self.pos_embed
        return x.flatten(1, 2)

    def encode(self, x):
        """Transformer blocks and final norm over tokens (N*M, L', dim_feat)."""
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        """Layer grouping for timm's layer-wise lr decay (see param_layer_id)."""
        return lambda name: param_layer_id(name, len(self.blocks) + 1)

    def patchify(self, x):
        """(N, C, T, V, M) -> (N*M, L, t_patch_size * patch_size * C), values ordered (frame, joint, coordinate)."""
        N, C, T, V, M = x.shape
        (TP, VP), u, p = self.grid, self.t_patch_size, self.patch_size
        x = x.reshape(N, C, TP, u, VP, p, M).permute(0, 6, 2, 4, 3, 5, 1)
        return x.reshape(N * M, TP * VP, u * p * C)


def param_layer_id(name, num_layers):
    """Layer index of a parameter for layer-wise lr decay: embeddings 0, blocks.i i+1, the rest num_layers."""
    if name.split('.')[0] in ('joints_embed', 'temp_embed', 'pos_embed', 'mask_token'):
        return 0
    if name.startswith('blocks.'):
        return int(name.split('.')[1]) + 1
    return num_layers


class LinearHead(nn.Module):
    """Linear-probe head: mean over bodies, time and joints, then one Linear."""

    def __init__(self, dim_feat, num_classes):
        super().__init__()
        self.fc = nn.Linear(dim_feat, num_classes)

    def forward(self, feat):
        """(N, M, TP, VP, dim_feat) -> (N, num_classes)"""
        return self.fc(feat.mean(dim=(1, 2, 3)))


class FinetuneHead(nn.Module):
    """Fine-tuning head: dropout, mean over time, joints x channels flattened, mean over bodies, then an MLP."""

    def __init__(self, dim_feat, num_joints, num_classes, hidden_dim=2048, dropout=0.3):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bn = nn.BatchNorm1d(hidden_dim)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(dim_feat * num_joints, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, num_classes)

    def forward(self, feat):
        """(N, M, TP, VP, dim_feat) -> (N, num_classes)"""
        feat = self.dropout(feat).mean(dim=2).flatten(2).mean(dim=1)
        return self.fc2(self.relu(self.bn(self.fc1(feat))))


class SkeletonTransformer(SkeletonEncoder):
    """Action classifier: the skeleton encoder and a head chosen by `protocol` ('linprobe' or 'finetune')."""
    ARG_CHECKS = SkeletonEncoder.ARG_CHECKS + (check_head,)

    def __init__(self, dim_in=3, num_classes=60, dim_feat=256, depth=8, num_heads=8, mlp_ratio=4, num_frames=120,
                 num_joints=25, patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None, drop_rate=0.,
                 attn_drop_rate=0., drop_path_rate=0., norm_layer=nn.LayerNorm, protocol='linprobe'):
        check_head(num_classes, protocol)
        super().__init__(dim_in, dim_feat, depth, num_heads, mlp_ratio, num_frames, num_joints, patch_size,
                         t_patch_size, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, norm_layer)
        self.head = (LinearHead(dim_feat, num_classes) if protocol == 'linprobe'
                     else FinetuneHead(dim_feat, num_joints // patch_size, num_classes))
        self.apply(init_weights)

    def forward_features(self, x):
        """(N, C, T, V, M) -> normed features (N, M, T/t_patch_size, V/patch_size, dim_feat)"""
        N, M = x.shape[0], x.shape[-1]
        return self.encode(self.embed(x)).reshape(N, M, *self.grid, -1)

    def forward(self, x):
        """(N, C, T, V, M) -> logits (N, num_classes)"""
        return self.head(self.forward_features(x))


def add_probe_norm(model):
    """Put the linear probe's BatchNorm1d(affine=False, eps=1e-6) before the head's Linear (head.fc becomes
    Sequential(norm, fc)), as main_linprobe.py trains it."""
    fc = model.head.fc
    model.head.fc = nn.Sequential(nn.BatchNorm1d(fc.in_features, affine=False, eps=1e-6), fc)
    return model


def prepare_linear_probe(model):
    """The linear probe of main_linprobe.py: head.fc re-initialised (truncated normal, std 0.01), the
    BatchNorm1d(affine=False, eps=1e-6) before it (add_probe_norm), and the head alone trainable."""
    trunc_normal_(model.head.fc.weight, std=0.01)
    add_probe_norm(model)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return model


def has_probe_norm(state_dict):
    """True for the weights of a linear probe trained with add_probe_norm."""
    return 'head.fc.0.running_mean' in state_dict


def build_classifier(cls, model_args, state_dict):
    """A `cls(**model_args)` (SkeletonTransformer or a subclass) in eval mode holding `state_dict` (with the
    linear probe's norm when the weights have it); raises RuntimeError on weights that do not fit."""
    model = cls(**model_args)
    if has_probe_norm(state_dict):
        add_probe_norm(model)
    model.load_state_dict(state_dict)
    return model.eval()


def shape_args(weights):
    """The model_args that set the shapes of a SkeletonEncoder's weights, read from the weights themselves
    (what is missing there is left out): dim_feat, dim_in, t_patch_size, patch_size, depth, the temporal and
    joint token counts."""
    found = {}
    proj = weights.get('joints_embed.proj.weight')
    if proj is not None and proj.ndim == 4:
        found.update(dim_feat=proj.shape[0], dim_in=proj.shape[1], t_patch_size=proj.shape[2],
                     patch_size=proj.shape[3])
    blocks = {int(k.split('.')[1]) for k in weights if k.startswith('blocks.') and k.split('.')[1].isdigit()}
    found['depth'] = max(blocks) + 1 if blocks else 0
    if weights.get('temp_embed') is not None and weights['temp_embed'].ndim == 4:
        found['num_frames // t_patch_size'] = weights['temp_embed'].shape[1]
    if weights.get('pos_embed') is not None and weights['pos_embed'].ndim == 4:
        found['num_joints // patch_size'] = weights['pos_embed'].shape[2]
    return found


def check_weights_fit(cls, model_args, weights, file_size, name):
    """Raise a one-line ValueError unless `weights` are those of cls(**model_args), checked before any model
    is built: first the shape-setting arguments against the weights (shape_args), then the parameter count of
    the model (built on the meta device: no memory) against the file's size (`file_size`; None for a dict),
    then every weight's shape."""
    bound = inspect.signature(cls).bind(**model_args)
    bound.apply_defaults()
    given = dict(bound.arguments)
    given['num_frames // t_patch_size'] = given['num_frames'] // given['t_patch_size']
    given['num_joints // patch_size'] = given['num_joints'] // given['patch_size']
    for key, value in shape_args(weights).items():
        if given[key] != value:
            raise ValueError(f"{name}: the stored model_args do not fit its weights: {key} is {given[key]}, the "
                             f"weights have {value}")
    with torch.device('meta'):
        model = cls(**model_args)
        if has_probe_norm(weights):
            add_probe_norm(model)
    expected = model.state_dict()
    size = sum(t.numel() * t.element_size() for t in expected.values())
    if file_size is not None and size > file_size:
        raise ValueError(f"{name}: the stored model_args describe {size / 2 ** 20:.1f} MB of weights, more than the "
                         f"file's {file_size / 2 ** 20:.1f} MB")
    for key in sorted(set(expected) | set(weights)):
        if key not in weights or key not in expected or expected[key].shape != weights[key].shape:
            what = ('missing in the file' if key not in weights else 'not in the model' if key not in expected else
                    f"{tuple(weights[key].shape)} in the file, {tuple(expected[key].shape)} for the model_args")
            raise ValueError(f"{name}: the weights do not fit the stored model_args ({key}: {what})")


def classifier_from_checkpoint(checkpoint):
    """(classifier in eval mode, settings dict with the checkpoint's train_digests) of a linear-probe or fine-tune
    checkpoint of main_linprobe.py / main_finetune.py, built from the settings it stores under 'args' (model,
    model_args, feeder, val_feeder_args), whose class names must be registered (util/registry.py).

    The stored settings are checked as a config's are (the feeder arguments against util.flags.FEEDER_ARGS, the
    model_args by the model's ARG_CHECKS), and the model_args against the weights (check_weights_fit), before
    the model is built. Raises a one-line ValueError for a file that is no such checkpoint (unreadable, a
    pre-training checkpoint, a bare state dict, an unregistered class name, settings out of range, weights
    that do not fit the stored model_args).
    """
    name = 'checkpoint' if isinstance(checkpoint, dict) else str(checkpoint)
    file_size = None if isinstance(checkpoint, dict) else Path(checkpoint).stat().st_size
    checkpoint = load_checkpoint(checkpoint)
    settings = checkpoint.get('args')
    settings = vars(settings) if hasattr(settings, '__dict__') else settings
    if not isinstance(settings, dict) or 'model_args' not in settings or 'model' not in checkpoint:
        raise ValueError(f"{name}: not a checkpoint of main_linprobe.py or main_finetune.py (no 'model' weights "
                         f"with the run's settings under 'args')")
    settings = dict(settings)
    feeder = registry.resolve('feeder', settings.setdefault('feeder', 'feeder.feeder_ntu.Feeder'),
                              f"{name}: args.feeder")
    cls = registry.resolve('model', settings.get('model'), f"{name}: args.model")
    if not issubclass(cls, SkeletonTransformer):
        raise ValueError(f"{name}: a pre-training checkpoint ({settings['model']}); use the checkpoint of a "
                         f"linear probe or fine-tuning run (main_linprobe.py, main_finetune.py)")
    settings['val_feeder_args'] = check_feeder_args(feeder, settings.get('val_feeder_args', {}), name,
                                                    'args.val_feeder_args')
    model_args = settings['model_args']
    try:
        if not isinstance(model_args, dict):
            raise ValueError(f"expected a mapping, got {model_args!r:.60}")
        run_checks(cls, cls.ARG_CHECKS, model_args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: args.model_args: {e}") from None
    window, frames = settings['val_feeder_args'].get('window_size', -1), model_args.get('num_frames', 120)
    if window != frames:
        raise ValueError(f"{name}: args.val_feeder_args.window_size is {window} but model_args.num_frames is "
                         f"{frames}; the model takes sequences of its num_frames")
    check_weights_fit(cls, model_args, checkpoint['model'], file_size, name)
    digests = settings['train_digests'] = checkpoint.get('train_digests')
    if digests is not None and not (torch.is_tensor(digests) and digests.dtype == torch.uint8 and digests.ndim == 2
                                    and digests.shape[1] == DIGEST_BYTES):
        raise ValueError(f"{name}: train_digests: expected a (samples, {DIGEST_BYTES}) uint8 tensor (data.splits)")
    try:
        return build_classifier(cls, model_args, checkpoint['model']), settings
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{name}: the weights do not fit the stored model_args ({str(e).splitlines()[0]})") from None


def load_exported(directory):
    """The classifier written by export.py into `directory` (config.json + model.safetensors), in eval mode.

    config.json holds {'model': 'model_transformer.SkeletonTransformer', 'model_args': {...}, 'input': the
    test-time feeder options (p_interval, window_size, bone, vel)}; the weights carry no optimiser state. The
    model class must be registered (util/registry.py); the input options and model_args are checked as a
    checkpoint's stored settings are (classifier_from_checkpoint), before the model is built.
    """
    path = Path(directory) / 'config.json'
    config = json.loads(path.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping with model, model_args and input")
    cls = registry.resolve('model', config.get('model'), f"{path}: model")
    if not issubclass(cls, SkeletonTransformer):
        raise ValueError(f"{path}: model {config['model']} is not a classifier")
    feeder = registry.resolve('feeder', 'feeder.feeder_ntu.Feeder', f"{path}: input")
    check_feeder_args(feeder, config.get('input', {}), path, 'input')
    try:
        run_checks(cls, cls.ARG_CHECKS, config.get('model_args'))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: model_args: {e}") from None
    weights_path = Path(directory) / 'model.safetensors'
    weights = load_file(weights_path)
    check_weights_fit(cls, config['model_args'], weights, weights_path.stat().st_size, path)
    return build_classifier(cls, config['model_args'], weights)


# Weights of the self-supervised stages only (MAMP's decoder and mask token, the tuning's heads and queue)
SELF_SUPERVISED_ONLY = ('decoder', 'mask_token', 'projector', 'predictor', 'queue')


def weight_groups(keys):
    """'decoder: 21 tensors, queue: 3 tensors': state-dict keys counted by group (decoder*, queue*, else the
    first name component), in order of first appearance."""
    counts = {}
    for k in keys:
        group = next((g for g in ('decoder', 'queue') if k.startswith(g)), k.split('.')[0])
        counts[group] = counts.get(group, 0) + 1
    return ', '.join(f"{g}: {n} tensor{'s' if n > 1 else ''}" for g, n in counts.items())


def load_pretrained(model, checkpoint):
    """Load a pre-training, tuning (or classification) checkpoint (a path or a dict, with or without the 'model'
    wrapper key) into a SkeletonEncoder model: SELF_SUPERVISED_ONLY weights and head weights the model lacks (or
    has with another shape) are dropped; temp_embed is bicubically interpolated to the model's number of frames.
    Returns load_state_dict's result. Raises a KeyError naming a missing weight outside the head and the model's
    self-supervised parts, a ValueError for another width or a classifier into a model without a head.
    """
    name = 'checkpoint' if isinstance(checkpoint, dict) else str(checkpoint)
    state = load_checkpoint(checkpoint)
    state = dict(state.get('model', state))
    own = model.state_dict()
    width, own_width = (len(s['norm.weight']) if 'norm.weight' in s else None for s in (state, own))
    if width is not None and width != own_width:
        raise ValueError(f"an encoder of width {width}, the model's is {own_width} (model_args.dim_feat): give a "
                         f"checkpoint of this model, or set model_args.dim_feat: {width}")
    if not hasattr(model, 'head') and any(k.startswith('head.') for k in state):
        raise ValueError("a classifier checkpoint (it has head weights; from main_linprobe.py or "
                         "main_finetune.py): give a pre-training checkpoint (main_pretrain.py)")
    dropped = [k for k in state if k.startswith(SELF_SUPERVISED_ONLY)
               or (k.startswith('head.') and (k not in own or state[k].shape != own[k].shape))]
    for k in dropped:
        del state[k]
    if dropped:
        print(f"load_pretrained: dropped from {name}: {weight_groups(dropped)}")
    old = state.get('temp_embed')
    if old is not None and old.shape != own['temp_embed'].shape and old.shape[2:] == own['temp_embed'].shape[2:]:
        new = F.interpolate(old.permute(0, 3, 1, 2), size=own['temp_embed'].shape[1:3], mode='bicubic',
                            align_corners=False).permute(0, 2, 3, 1)
        print(f"load_pretrained: interpolated temp_embed from {tuple(old.shape)} to {tuple(new.shape)}")
        state['temp_embed'] = new
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(('head.',) + SELF_SUPERVISED_ONLY)]
    if missing:
        raise KeyError(f"{name} lacks weights the model needs: {', '.join(missing)}")
    if result.unexpected_keys:
        print(f"load_pretrained: ignored unexpected keys in {name}: {', '.join(result.unexpected_keys)}")
    return result
