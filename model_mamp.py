"""MAMP pre-training model: masked motion prediction with motion-aware masking (ICCV 2023).

The skeleton encoder (model_transformer.SkeletonEncoder) sees only the kept tokens of each body's sequence; a
light decoder fills in mask tokens and predicts, for every token, the motion x[t + s] - x[t] of its patch
(target='motion') or, for the MAE baseline, its joint positions (target='joints'). The loss is the mean
squared error over the masked tokens.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from model_transformer import SkeletonEncoder, init_weights, make_blocks
from util.model_args import check_decoder, check_masking


class MAMP(SkeletonEncoder):
    ARG_CHECKS = SkeletonEncoder.ARG_CHECKS + (check_decoder,)  # util.model_args
    OPTION_CHECKS = (check_masking,)

    def __init__(self, dim_in=3, dim_feat=256, decoder_dim_feat=256, depth=8, decoder_depth=5, num_heads=8,
                 mlp_ratio=4, num_frames=120, num_joints=25, patch_size=1, t_patch_size=4, qkv_bias=True,
                 qk_scale=None, drop_rate=0., attn_drop_rate=0., drop_path_rate=0., norm_layer=nn.LayerNorm,
                 norm_skes_loss=False, target='motion'):
        check_decoder(decoder_dim_feat, decoder_depth, num_heads, target)
        super().__init__(dim_in, dim_feat, depth, num_heads, mlp_ratio, num_frames, num_joints, patch_size,
                         t_patch_size, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, norm_layer)
        self.target, self.norm_skes_loss = target, norm_skes_loss
        TP, VP = self.grid
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim_feat))
        self.decoder_temp_embed = nn.Parameter(torch.zeros(1, TP, 1, decoder_dim_feat))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1, VP, decoder_dim_feat))
        for p in (self.mask_token, self.decoder_temp_embed, self.decoder_pos_embed):
            trunc_normal_(p, std=.02)
        self.decoder_embed = nn.Linear(dim_feat, decoder_dim_feat)
        self.decoder_blocks = make_blocks(decoder_dim_feat, decoder_depth, num_heads, mlp_ratio, qkv_bias, qk_scale,
                                          drop_rate, attn_drop_rate, drop_path_rate, self.norm_layer)
        self.decoder_norm = self.norm_layer(decoder_dim_feat)
        self.decoder_pred = nn.Linear(decoder_dim_feat, t_patch_size * patch_size * dim_in)
        self.apply(init_weights)

    def motion_scores(self, patches):
        """Per-token motion (N*M, L): mean |patch - same joints' patch one temporal step earlier|.

        patches: (N*M, L, D) from patchify. The first temporal patch takes the score of the second.
        """
        NM, L, D = patches.shape
        patches = patches.view(NM, self.grid[0], self.grid[1], D)
        motion = (patches[:, 1:] - patches[:, :-1]).abs().mean(dim=-1)
        return torch.cat([motion[:, :1], motion], dim=1).view(NM, L)

    def masking(self, NM, L, mask_ratio, device, motion=None, tau=0.):
        """Choose the kept tokens of each sequence from one torch.rand(NM, L) draw.

        Without motion (or tau <= 0) the kept tokens are a uniform random subset. With motion (NM, L) and
        tau > 0 they are drawn without replacement with probability softmax(motion / (tau * max motion)):
        the tokens with the smallest log p + Gumbel noise are kept, so high-motion tokens are masked more.
        Returns ids_keep (NM, len_keep), ids_restore (NM, L) and mask (NM, L; 1 = masked, 0 = kept).
        """
        len_keep = int(L * (1 - mask_ratio))
        noise = torch.rand(NM, L, device=device)
        if motion is not None and tau > 0:
            motion = motion / (motion.amax(dim=-1, keepdim=True) * tau + 1e-10)
            noise = F.log_softmax(motion, dim=-1) - torch.log(-torch.log(noise + 1e-10) + 1e-10)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        mask = torch.ones(NM, L, device=device).scatter_(1, ids_keep, 0.)
        return ids_keep, ids_restore, mask

    def forward_encoder(self, x, mask_ratio, motion_aware_tau):
        """Encode the kept tokens only: (N, C, T, V, M) -> latent (N*M, len_keep, dim_feat), ids_restore, mask."""
        tokens = self.embed(x)
        NM, L, D = tokens.shape
        motion = self.motion_scores(self.patchify(x)) if motion_aware_tau > 0 else None
        ids_keep, ids_restore, mask = self.masking(NM, L, mask_ratio, x.device, motion, motion_aware_tau)
        tokens = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
        return self.encode(tokens), ids_restore, mask

    def forward_decoder(self, latent, ids_restore):
        """latent (N*M, len_keep, dim_feat) -> prediction (N*M, L, t_patch_size * patch_size * dim_in)"""
        x = self.decoder_embed(latent)
        NM, len_keep, C = x.shape
        L = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.expand(NM, L - len_keep, C)], dim=1)
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, C))
        x = x.view(NM, *self.grid, C) + self.decoder_temp_embed + self.decoder_pos_embed
        x = x.view(NM, L, C)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def forward_target(self, x, motion_stride):
        """(N, C, T, V, M) -> per-token targets (N*M, L, t_patch_size * patch_size * C)"""
        if self.target == 'motion':
            check_masking(self.num_frames, self.num_joints, self.patch_size, self.t_patch_size, self.target,
                          motion_stride=motion_stride)
            motion = torch.zeros_like(x)
            motion[:, :, :-motion_stride] = x[:, :, motion_stride:] - x[:, :, :-motion_stride]
            x = motion
        target = self.patchify(x)
        if self.norm_skes_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6) ** .5
        return target

    def forward_loss(self, target, pred, mask):
        """Mean squared error per token, averaged over the masked tokens (mask = 1)."""
        loss = (pred - target).pow(2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, x, mask_ratio=0.9, motion_stride=1, motion_aware_tau=0.8):
        """x (N, C, T, V, M) -> loss, pred (N*M, L, t_patch_size * patch_size * C), mask (N*M, L)"""
        latent, ids_restore, mask = self.forward_encoder(x, mask_ratio, motion_aware_tau)
        pred = self.forward_decoder(latent, ids_restore)
        target = self.forward_target(x, motion_stride)
        return self.forward_loss(target, pred, mask), pred, mask
