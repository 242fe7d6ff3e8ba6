"""--gpu_aug and --compile train on the same numbers as the plain loop: the per-step losses of one
pre-training epoch with random crops (p_interval [0.5, 1]) and rotations, read from TensorBoard."""
import numpy as np
import pytest
import torch._dynamo.utils

from train_fixtures import pretrain_in_process, scalar_tags
from util import config
from util.data import build_dataset

pytestmark = pytest.mark.slow


def step_losses(work, name, *flags):
    """The train_step/loss of every step (--print_freq 1) of one pre-training epoch with `flags`."""
    out = work['root'] / name
    pretrain_in_process(work, out, '--epochs', '1', *flags)
    events, _ = scalar_tags(out)
    return np.array([e.value for e in events.Scalars('train_step/loss')])


@pytest.fixture(scope='module')
def plain(work):
    args = config.parse_args('pretrain', ['--config', str(work['pretrain'])])
    feeder = args.train_feeder_args
    assert list(feeder['p_interval']) == [0.5, 1] and feeder['random_rot']  # the random augmentation
    losses = step_losses(work, 'plain')
    assert len(losses) == 6 and len(set(losses)) == 6  # 24 samples, batch 4
    return losses


def test_gpu_aug_gives_the_loader_losses(work, plain):
    """The feeder draws each sample's crop and angles as the per-sample path does and the batch augmentation
    applies them: the same inputs bit for bit, so the same losses."""
    losses = step_losses(work, 'gpu_aug', '--gpu_aug')
    np.testing.assert_array_equal(losses, plain)
    args = config.parse_args('pretrain', ['--config', str(work['root'] / 'gpu_aug' / 'config.yaml')])
    data, _, _, valid, offset, length, angles = build_dataset(args, 'train_feeder_args')[0]
    assert args.gpu_aug and data.shape == (3, 300, 25, 2) and 70 <= valid <= 300
    assert 0 <= offset and 64 <= length and offset + length <= valid
    assert angles.shape == (3,) and angles.abs().max() <= 0.3


def test_compile_gives_the_eager_losses(work, plain):
    """torch.compile (one graph of the model, masking with the eager random draws) gives the eager losses up to
    float32 round-off: its fused kernels sum in another order (layer norms, softmax, the loss), so a step's
    loss may differ in the last bits (measured on CPU: at most 1.2e-7 relative over the 6 steps) and AdamW
    carries that into the next steps. rtol 1e-4 leaves room for other vector widths; another mask or crop
    moves the loss by percents."""
    torch._dynamo.utils.counters.clear()
    compiled = step_losses(work, 'compile', '--compile')
    assert torch._dynamo.utils.counters['stats']['unique_graphs'] >= 1
    np.testing.assert_allclose(compiled, plain, rtol=1e-4)
    # both flags: the batch augmentation gives the compiled model the same inputs (the graph is reused)
    np.testing.assert_array_equal(step_losses(work, 'compile_gpu_aug', '--compile', '--gpu_aug'), compiled)
