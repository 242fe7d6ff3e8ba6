"""Contrastive tuning of a pre-trained skeleton encoder (STARS, Mehraban et al. 2024) with the nearest-neighbour
contrastive loss of NNCLR (Dwibedi et al., ICCV 2021), on two augmented views of each sequence.

The encoder's tokens, averaged over bodies, time and joints (as the linear probe's head pools them), go through
a projector MLP to z; a predictor MLP maps z to p. A support queue holds the L2-normalised z of the first views of
past batches with the dataset index of each. The nearest neighbour (cosine) in the queue of a sample's first view,
NN(z1), is the positive of its second view's prediction p2, and the same with the views swapped. As in NNCLR's paper
and STARS' code, each neighbour is a row of the loss whose softmax runs over the predictions of the whole batch
(softmax_over='predictions'); softmax_over='neighbours' turns it round (each prediction a row, the softmax over the
batch's neighbours). A sample's own entry in the queue (its embedding of an earlier step) is not its neighbour
(mask_own=True, as STARS masks it by sample id). The encoder's weights keep the names of the pre-training checkpoint
(NNCLR is a SkeletonEncoder, as MAMP is): a tuned checkpoint loads wherever a pre-training checkpoint does, without
the projector, predictor and queue (model_transformer.load_pretrained drops them).

Several processes train as one with the whole batch: the queue receives every rank's embeddings and ids in the
order of the global batch, the loss' columns are the predictions (or neighbours) of the whole batch, and the
projector's and predictor's BatchNorm normalise with the statistics of the whole batch (GlobalBatchNorm1d).
"""
import torch
import torch.distributed
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from model_transformer import SkeletonEncoder, init_weights
from util import dist
from util.checkpoint import queue_problem

QUEUE_BUFFERS = ('queue', 'queue_ptr', 'queue_len', 'queue_id')
SOFTMAX_OVER = ('predictions', 'neighbours')


class AllReduceSum(torch.autograd.Function):
    """The sum of a tensor over the ranks; backward: the sum of the ranks' gradients (every rank's loss depends
    on every rank's input)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the whole batch over all processes, as SyncBatchNorm's
    (which runs on GPUs only): the gradients flow back through the summed statistics, so N processes of B
    samples compute what one process of N * B does. In one process, and in eval mode, plain BatchNorm1d."""

    def forward(self, x):
        if not self.training or dist.get_world_size() == 1:
            return super().forward(x)
        count = len(x) * dist.get_world_size()  # the same batch size on every rank (the loader drops the last)
        x = x.float()  # statistics in float32, as autocast runs batch_norm
        mean = AllReduceSum.apply(x.sum(dim=0)) / count
        var = AllReduceSum.apply((x - mean).pow(2).sum(dim=0)) / count
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1), self.momentum)
            self.num_batches_tracked += 1
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight + self.bias if self.affine else x


def mlp(dims, norm_last):
    """Linear layers dims[0] -> dims[1] -> ... -> dims[-1] with GlobalBatchNorm1d and ReLU between them, and with
    norm_last a GlobalBatchNorm1d without scale and shift after the last (as in SimCLR and MoCo v3). A Linear
    followed by a norm has no bias: the norm would remove it, and AdamW would move it by round-off alone."""
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        norm = norm_last or not last
        layers.append(nn.Linear(d_in, d_out, bias=not norm))
        layers += [GlobalBatchNorm1d(d_out, affine=not last)] if norm else []
        layers += [] if last else [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def gather_batch(x):
    """x (B, ...) of every rank -> (world * B, ...) in the order of the global batch: rank r's sample i is global
    sample i * world + r, as DistributedSampler deals the samples out (one process: x). No gradient."""
    world = dist.get_world_size()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.stack(parts, dim=1).flatten(0, 1)


class AllGatherGrad(torch.autograd.Function):
    """gather_batch with a gradient: backward sums every rank's gradient of the gathered tensor and returns this
    rank's rows (each rank's loss depends on every rank's predictions)."""

    @staticmethod
    def forward(ctx, x):
        return gather_batch(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)
        world = dist.get_world_size()
        return grad.view(-1, world, *grad.shape[1:])[:, dist.get_rank()]


def info_nce(rows, columns, targets, temperature, same_action=None):
    """Cross-entropy of L2-normalised rows (B, D) over L2-normalised columns (G, D): the logits are the cosine
    similarities / temperature, row i's positive is columns[targets[i]], the other columns its negatives;
    same_action (B, G) bool, True where a negative shares row i's action, removes those negatives (the oracle)."""
    logits = rows @ columns.T.to(rows.dtype) / temperature
    if same_action is not None:
        positive = F.one_hot(targets, len(columns)).bool()
        logits = logits.masked_fill(same_action & ~positive, float('-inf'))
    return F.cross_entropy(logits, targets)


class NNCLR(SkeletonEncoder):
    """The skeleton encoder with NNCLR's projector (3 layers, BatchNorm after each), predictor (2 layers) and
    support queue (buffers queue (queue_size, proj_dim), queue_id (queue_size,): the dataset index of each row,
    -1 where none is written, queue_ptr: the next row to write, queue_len: the rows written so far; all in the
    checkpoint, so that a resumed run continues with the same queue)."""

    def __init__(self, dim_in=3, dim_feat=256, depth=8, num_heads=8, mlp_ratio=4, num_frames=120, num_joints=25,
                 patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None, drop_rate=0., attn_drop_rate=0.,
                 drop_path_rate=0., norm_layer=nn.LayerNorm, proj_hidden_dim=2048, proj_dim=256, pred_hidden_dim=4096,
                 queue_size=16384):
        super().__init__(dim_in, dim_feat, depth, num_heads, mlp_ratio, num_frames, num_joints, patch_size,
                         t_patch_size, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, norm_layer)
        if queue_size < 1:
            raise ValueError(f"queue_size={queue_size}: expected at least 1")
        self.projector = mlp([dim_feat, proj_hidden_dim, proj_hidden_dim, proj_dim], norm_last=True)
        self.predictor = mlp([proj_dim, pred_hidden_dim, proj_dim], norm_last=False)
        self.register_buffer('queue', torch.zeros(queue_size, proj_dim))
        self.register_buffer('queue_ptr', torch.zeros((), dtype=torch.int64))
        self.register_buffer('queue_len', torch.zeros((), dtype=torch.int64))
        self.register_buffer('queue_id', torch.full((queue_size,), -1, dtype=torch.int64))
        self.apply(init_weights)
        # The loss cannot see the final norm's bias (it shifts every pooled feature alike, which the projector's
        # first BatchNorm removes): kept as pre-trained, not moved by AdamW on round-off.
        self.norm.bias.requires_grad_(False)
        # every rank holds the same queue: DDP need not broadcast it before each forward
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, list(QUEUE_BUFFERS))

    def pooled(self, x):
        """(N, C, T, V, M) -> (N, dim_feat): the encoder's tokens averaged over bodies, time and joints."""
        tokens = self.encode(self.embed(x))
        return tokens.reshape(len(x), -1, tokens.shape[-1]).mean(dim=1)

    @torch.no_grad()
    def nearest_neighbours(self, z, ids, mask_own=True):
        """z (B, proj_dim) L2-normalised, ids (B,) their dataset indices -> (neighbours (B, proj_dim), their ids
        (B,)): for each row the most cosine-similar of the queue's written rows, without the rows holding the
        same sample with mask_own; z itself and id -1 when there is no such row (the first step)."""
        sim = z.float() @ self.queue.T  # (B, queue_size)
        allowed = (torch.arange(len(self.queue), device=z.device) < self.queue_len).expand_as(sim)
        if mask_own:
            allowed = allowed & (self.queue_id[None, :] != ids[:, None])
        best = sim.masked_fill(~allowed, float('-inf')).argmax(dim=1)
        found = allowed.any(dim=1)
        neighbours = torch.where(found[:, None], self.queue[best], z.float())
        return neighbours, torch.where(found, self.queue_id[best], -1)

    @torch.no_grad()
    def enqueue(self, z, ids):
        """Write the rows of z (G, proj_dim) and their dataset indices ids (G,) from the queue's pointer on, in
        order, over the oldest rows (FIFO)."""
        index = (self.queue_ptr + torch.arange(len(z), device=z.device)) % len(self.queue)
        self.queue.index_copy_(0, index, z.float())
        self.queue_id.index_copy_(0, index, ids)
        self.queue_ptr.copy_((self.queue_ptr + len(z)) % len(self.queue))
        self.queue_len.copy_((self.queue_len + len(z)).clamp(max=len(self.queue)))

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """nn.Module's, then the queue's counters and ids checked (RuntimeError, as for weights that do not fit)."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.check_queue('queue')
        return result

    def check_queue(self, where):
        """Raise RuntimeError naming `where` when the queue's counters (util.checkpoint.queue_problem) or ids (e.g.
        from a checkpoint) are out of range: ids >= 0 in the written rows only."""
        problem = queue_problem(self.state_dict())
        if problem:
            raise RuntimeError(f"{where}: {problem}")
        written = torch.arange(len(self.queue), device=self.queue_id.device) < int(self.queue_len)
        if bool(((self.queue_id >= 0) != written).any()):
            raise RuntimeError(f"{where}: queue_id holds sample ids outside the {int(self.queue_len)} written rows of "
                               f"the queue (or -1 inside them)")

    def loss(self, z1, z2, p1, p2, ids, temperature, softmax_over='predictions', mask_own=True, labels=None):
        """The symmetrised NNCLR loss of the projections z and predictions p (B, proj_dim) of the two views of the
        samples ids (B,), and the ids of the neighbours NN(z1) (B,; -1: none):

            (info_nce(NN(z2), p1 of the batch) + info_nce(NN(z1), p2 of the batch)) / 2

        with NN the nearest neighbour in the queue (no gradient) and the gradient into every prediction
        (softmax_over='predictions'); softmax_over='neighbours' takes info_nce(p2, NN(z1) of the batch) instead.
        labels (B,) (the oracle, for experiments only) removes the negatives of the same action. Then the
        normalised z1 of the whole batch join the queue with their ids. With several processes the columns are
        those of the global batch, and each rank averages over its own rows (DDP then averages the ranks'
        gradients: the global batch's mean).
        """
        z1, z2 = F.normalize(z1.detach(), dim=1), F.normalize(z2.detach(), dim=1)
        nn1, nn1_id = self.nearest_neighbours(z1, ids, mask_own)
        nn2, _ = self.nearest_neighbours(z2, ids, mask_own)
        targets = torch.arange(len(z1), device=z1.device) * dist.get_world_size() + dist.get_rank()
        same_action = None
        if labels is not None:
            same_action = labels[:, None] == gather_batch(labels)[None, :]
        p1, p2 = F.normalize(p1, dim=1), F.normalize(p2, dim=1)
        if softmax_over == 'predictions':
            gather = AllGatherGrad.apply if dist.get_world_size() > 1 else gather_batch
            loss = (info_nce(nn2.to(p1.dtype), gather(p1), targets, temperature, same_action)
                    + info_nce(nn1.to(p2.dtype), gather(p2), targets, temperature, same_action)) / 2
        else:
            batch = gather_batch(torch.stack([nn1, nn2], dim=1))  # (world * B, 2, proj_dim): NN(z1), NN(z2)
            loss = (info_nce(p2, batch[:, 0], targets, temperature, same_action)
                    + info_nce(p1, batch[:, 1], targets, temperature, same_action)) / 2
        self.enqueue(gather_batch(z1.float()), gather_batch(ids))
        return loss, nn1_id

    def forward(self, x1, x2, ids, temperature=0.07, softmax_over='predictions', mask_own=True, labels=None):
        """Two views (N, C, T, V, M) of the same N sequences, their dataset indices ids (N,) (one encoder pass
        over both views) -> (the loss (scalar), the dataset indices of the first views' neighbours (N,))."""
        f1, f2 = self.pooled(torch.cat([x1, x2])).chunk(2)
        z1, z2 = self.projector(f1), self.projector(f2)
        return self.loss(z1, z2, self.predictor(z1), self.predictor(z2), ids, temperature, softmax_over, mask_own,
                         labels)
