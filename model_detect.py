"""Frame-wise action detector: the skeleton encoder reads a window around a frame and a linear head over its
pooled features gives the frame's probabilities of background (class 0) and of each action."""
import torch.nn as nn

from model_transformer import SkeletonTransformer


def check_linear_head(protocol, **_):
    if protocol != 'linprobe':
        raise ValueError(f"protocol={protocol!r}: the detector has the linear head, expected 'linprobe'")


class FrameDetector(SkeletonTransformer):
    """SkeletonTransformer with the linear-probe head (mean over bodies, time and joints, then head.fc) over
    1 + actions classes. Its input is a window batch (N, C, T, V, M), or the pooled features (N, dim_feat) a
    frozen encoder gave before (`pooled`), so that a cached feature trains the head through the same module."""
    ARG_CHECKS = SkeletonTransformer.ARG_CHECKS + (check_linear_head,)

    def __init__(self, dim_in=3, num_classes=52, dim_feat=256, depth=8, num_heads=8, mlp_ratio=4, num_frames=120,
                 num_joints=25, patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None, drop_rate=0.,
                 attn_drop_rate=0., drop_path_rate=0., norm_layer=nn.LayerNorm, protocol='linprobe'):
        check_linear_head(protocol)
        super().__init__(dim_in, num_classes, dim_feat, depth, num_heads, mlp_ratio, num_frames, num_joints,
                         patch_size, t_patch_size, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate,
                         norm_layer, protocol)

    def pooled(self, x):
        """(N, C, T, V, M) -> the features the head pools, (N, dim_feat): the mean over bodies of each body's
        encoded tokens' mean. Each body is encoded on its own, so the bodies with no joint (all zeros, e.g. the
        second body of a one-person recording) all have the features of one zero body, encoded once."""
        N, C, T, V, M = x.shape
        bodies = x.permute(0, 4, 1, 2, 3).reshape(N * M, C, T, V)
        present = bodies.flatten(1).abs().amax(1) > 0
        if present.all():
            return self.forward_features(x).mean(dim=(1, 2, 3))
        per_body = self.encode_bodies(bodies[:1].new_zeros(1, C, T, V)).expand(N * M, -1).clone()
        if present.any():
            per_body[present] = self.encode_bodies(bodies[present]).to(per_body.dtype)
        return per_body.view(N, M, -1).mean(dim=1)

    def encode_bodies(self, bodies):
        """(K, C, T, V) single bodies -> the mean of their encoded tokens (K, dim_feat)"""
        return self.forward_features(bodies.unsqueeze(-1)).mean(dim=(1, 2, 3))

    def forward(self, x):
        """(N, C, T, V, M) or pooled features (N, dim_feat) -> logits (N, num_classes)"""
        return self.head.fc(x if x.ndim == 2 else self.pooled(x))
