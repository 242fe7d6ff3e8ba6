"""Range and consistency checks of a model's arguments (a config's model_args), each a ValueError naming the
argument: the model constructors run them, and util.config runs them on every config before anything is built.

A model class lists the checks of its arguments in ARG_CHECKS and, for a pre-training model, those of the
masking options (mask_ratio, motion_stride) in OPTION_CHECKS; each check takes the constructor's keyword
arguments (defaults included) and the options. A subclass whose constructor takes other arguments sets its own.
"""
import inspect


def check_positive_ints(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")


def check_rates(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name}={value!r}: expected a number in [0, 1)")


def check_encoder(dim_in, dim_feat, depth, num_heads, mlp_ratio, num_frames, num_joints, patch_size, t_patch_size,
                  qk_scale, drop_rate, attn_drop_rate, drop_path_rate, **_):
    """The skeleton encoder's: sizes >= 1, heads dividing the width, patches tiling the frames and joints."""
    check_positive_ints(dim_in=dim_in, dim_feat=dim_feat, depth=depth, num_heads=num_heads, num_frames=num_frames,
                        num_joints=num_joints, patch_size=patch_size, t_patch_size=t_patch_size)
    if dim_feat % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide dim_feat={dim_feat} (each head takes "
                         f"dim_feat / num_heads channels)")
    if num_frames % t_patch_size or num_joints % patch_size:
        raise ValueError(f"num_frames={num_frames} must be divisible by t_patch_size={t_patch_size} and "
                         f"num_joints={num_joints} by patch_size={patch_size}")
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
        raise ValueError(f"mlp_ratio={mlp_ratio!r}: expected a number > 0")
    if qk_scale not in (None, 'None'):
        raise ValueError(f"qk_scale={qk_scale!r} is not supported: expected None (scale head_dim ** -0.5)")
    check_rates(drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)


def check_head(num_classes, protocol, **_):
    """The classifier's: classes >= 1, a known protocol."""
    check_positive_ints(num_classes=num_classes)
    if protocol not in ('linprobe', 'finetune'):
        raise ValueError(f"protocol={protocol!r}: expected 'linprobe' or 'finetune'")


def check_decoder(decoder_dim_feat, decoder_depth, num_heads, target, **_):
    """MAMP's decoder (it has the encoder's num_heads) and target."""
    check_positive_ints(decoder_dim_feat=decoder_dim_feat, decoder_depth=decoder_depth)
    if decoder_dim_feat % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide decoder_dim_feat={decoder_dim_feat}")
    if target not in ('motion', 'joints'):
        raise ValueError(f"target={target!r}: expected 'motion' or 'joints'")


def check_masking(num_frames, num_joints, patch_size, t_patch_size, target, mask_ratio=None, motion_stride=None,
                  **_):
    """MAMP's pre-training options: at least one token kept and one masked, a motion stride within the frames."""
    tokens = (num_frames // t_patch_size) * (num_joints // patch_size)
    if mask_ratio is not None and not 1 <= int(tokens * (1 - mask_ratio)) < tokens:
        raise ValueError(f"mask_ratio={mask_ratio} keeps {int(tokens * (1 - mask_ratio))} of the {tokens} tokens "
                         f"of a sequence; it must keep at least one and mask at least one")
    if motion_stride is not None and target == 'motion' and not 1 <= motion_stride < num_frames:
        raise ValueError(f"motion_stride={motion_stride}: expected 1 <= motion_stride < num_frames={num_frames}")


def run_checks(cls, checks, model_args, **options):
    """Run `checks` (e.g. cls.ARG_CHECKS) on cls's keyword arguments `model_args`, its defaults for the others,
    and `options`."""
    bound = inspect.signature(cls).bind(**model_args)
    bound.apply_defaults()
    for check in checks:
        check(**bound.arguments, **options)
