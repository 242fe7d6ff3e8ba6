"""Analytic model FLOPs of one benchmarked step (the matmuls and convolutions of the forward and backward)."""


def block_flops(tokens, seq_len, dim, mlp_ratio):
    """Forward FLOPs of one transformer block over `tokens` tokens in sequences of `seq_len`.

    Linear layers qkv, proj, fc1, fc2: 2 * tokens * dim * (3 dim + dim + 2 hidden). Attention, all heads:
    Q K^T and softmax(.) V, 2 * 2 * tokens * seq_len * dim.
    """
    hidden = int(dim * mlp_ratio)
    return 2 * tokens * dim * (4 * dim + 2 * hidden) + 4 * tokens * seq_len * dim


def model_flops(section, batch, size, decoder_depth=None):
    """Model FLOPs of one batch for `section`: (forward, training step).

    FLOPs are 2 per multiply-add of the matmuls and convolutions (the patch embedding, Linear layers and
    attention); norms, activations, softmax and the optimiser are not counted. A training step is forward +
    backward, and the backward of a layer costs twice its forward (input and weight gradients), except for
    layers whose input needs no gradient: the patch embedding, and the linear probe's head behind the frozen
    encoder, compute weight gradients only (1x). Attention is counted once in the backward pass, without the
    recomputation of flash-attention kernels. `size`: a dict like FULL; decoder_depth for 'pretrain'.

    'tune' (model_tune.NNCLR, two views of the batch, one process): the encoder over both views, the projector
    (3 layers) and predictor (2 layers) on the 2 x batch pooled features, the nearest-neighbour search of both
    views' z in the full queue (no gradient: forward only), and the two InfoNCE logit matrices (batch x batch),
    whose backward computes the predictions' gradient only (1x). As STARS, only blocks depth // 2 on are tuned:
    the embeddings and the lower blocks have no backward.
    """
    D, C, mlp = size['dim_feat'], size['dim_in'], size['mlp_ratio']
    grid_t = size['num_frames'] // size['t_patch_size']
    grid_v = size['num_joints'] // size['patch_size']
    seqs, L, patch = batch * size['bodies'], grid_t * grid_v, C * size['t_patch_size'] * size['patch_size']
    embed = 2 * seqs * L * patch * D
    if section == 'pretrain':
        keep = int(L * (1 - size['mask_ratio']))
        encoder = size['depth'] * block_flops(seqs * keep, keep, D, mlp)
        decoder = (2 * seqs * keep * D * D + decoder_depth * block_flops(seqs * L, L, D, mlp)
                   + 2 * seqs * L * D * patch)
        return embed + encoder + decoder, 2 * embed + 3 * (encoder + decoder)
    if section == 'tune':
        P, H, H2 = size['proj_dim'], size['proj_hidden_dim'], size['pred_hidden_dim']
        frozen = size['depth'] // 2 * block_flops(2 * seqs * L, L, D, mlp)
        tuned = (size['depth'] - size['depth'] // 2) * block_flops(2 * seqs * L, L, D, mlp)
        heads = 2 * 2 * batch * (D * H + H * H + H * P + P * H2 + H2 * P)
        search = 2 * 2 * batch * size['queue_size'] * P
        logits = 2 * 2 * batch * batch * P
        forward = 2 * embed + frozen + tuned + heads + search + logits
        return forward, 2 * embed + frozen + 3 * (tuned + heads) + search + 2 * logits
    encoder = size['depth'] * block_flops(seqs * L, L, D, mlp)
    if section == 'linprobe':
        head = 2 * batch * D * size['num_classes']
        return embed + encoder + head, embed + encoder + 2 * head
    if section in ('finetune', 'eval'):
        head = 2 * batch * (grid_v * D * size['hidden_dim'] + size['hidden_dim'] * size['num_classes'])
        return embed + encoder + head, 2 * embed + 3 * (encoder + head)
    raise ValueError(f"no FLOP count for section {section!r}")
