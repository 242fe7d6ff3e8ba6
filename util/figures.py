"""Pictures of skeletons, motion-aware masking, features and errors (matplotlib on the Agg backend: they are
drawn without a display). Each `*_figure` returns a Figure; `save` writes it (temporary name, then rename).
"""
import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import animation  # noqa: E402

from data.skeleton import PARENTS  # noqa: E402

MASK_DRAWS = 256  # masks drawn to estimate each token's keep probability


def save(fig, path, **kwargs):
    """Write `fig` (a Figure, or an Animation as .gif / .mp4) to `path` through a temporary file; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.stem}.tmp{path.suffix}')
    if isinstance(fig, animation.Animation):
        fig.save(tmp, writer='pillow' if path.suffix == '.gif' else 'ffmpeg', **kwargs)
    else:
        fig.savefig(tmp, dpi=kwargs.pop('dpi', 80), bbox_inches='tight', **kwargs)
        plt.close(fig)
    os.replace(tmp, path)
    return path


@torch.no_grad()
def masking_arrays(model, x, mask_ratio, motion_aware_tau, motion_stride, seed=0):
    """What MAMP does to one sample x (1, C, T, V, M), for its first body, on the (TP, VP) token grid.

    motion: the per-token motion scores that drive the masking; keep: the fraction of MASK_DRAWS masks drawn
    by the model's own masking that keep each token; mask: the mask (1 = masked) of one forward pass of the
    model with torch seeded by `seed`; pred, target: that pass's prediction and target (TP, VP, t_patch_size
    * patch_size * C), the motion (or the joints for target='joints') of each token's frames.
    """
    model.eval()
    grid, L = model.grid, model.grid[0] * model.grid[1]
    motion = model.motion_scores(model.patchify(x))[:1]  # (1, L)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, pred, mask = model(x, mask_ratio=mask_ratio, motion_stride=motion_stride, motion_aware_tau=motion_aware_tau)
        *_, draws = model.masking(MASK_DRAWS, L, mask_ratio, x.device, motion.expand(MASK_DRAWS, L), motion_aware_tau)
    target = model.forward_target(x, motion_stride)
    arrays = {'motion': motion[0].view(grid), 'keep': 1 - draws.mean(0).view(grid), 'mask': mask[0].view(grid),
              'pred': pred[0].view(*grid, -1), 'target': target[0].view(*grid, -1)}
    return {key: value.float().cpu().numpy() for key, value in arrays.items()}


def masking_figure(rows, title, num_joints_shown=3):
    """One row of panels per {label: masking_arrays}: motion, keep probability, the drawn mask, and the predicted
    against the true first coordinate of the `num_joints_shown` joints with the most masked tokens."""
    fig, axes = plt.subplots(len(rows), 4, figsize=(17, 3.4 * len(rows)), squeeze=False)
    for ax_row, (label, arrays) in zip(axes, rows.items()):
        for ax, key, name, cmap in zip(ax_row, ('motion', 'keep', 'mask'),
                                       ('motion per token', 'keep probability', 'one mask (white = masked)'),
                                       ('viridis', 'magma', 'gray')):
            image = ax.imshow(arrays[key], aspect='auto', cmap=cmap, interpolation='nearest')
            ax.set(title=f'{label}: {name}', xlabel='joint', ylabel='time patch')
            fig.colorbar(image, ax=ax)
        ax, mask = ax_row[3], arrays['mask']
        frames = arrays['target'].shape[-1] // 3  # t_patch_size * patch_size frames x 3 coordinates per token
        for joint in np.argsort(-mask.sum(0), kind='stable')[:num_joints_shown]:
            true = arrays['target'][:, joint, 0::3].reshape(-1)  # first coordinate over all frames
            pred = np.where(np.repeat(mask[:, joint], frames) > 0, arrays['pred'][:, joint, 0::3].reshape(-1), np.nan)
            line, = ax.plot(true, lw=1, label=f'joint {joint} true')
            ax.plot(pred, '.', ms=3, color=line.get_color(), label=f'joint {joint} predicted (masked)')
        ax.set(title=f'{label}: prediction of masked tokens', xlabel='frame', ylabel='target, x coordinate')
        ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion(labels, predictions, num_classes):
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes ** 2).reshape(num_classes, -1)


def confusion_figure(matrix, names, title):
    """The row-normalised confusion matrix of the classes that occur (true or predicted), with action names."""
    present = np.flatnonzero(matrix.sum(0) + matrix.sum(1))
    matrix = matrix[np.ix_(present, present)]
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = 3 + 0.22 * len(present)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(rates, cmap='Blues', vmin=0, vmax=1)
    labels = [names[i] for i in present]
    ax.set_xticks(range(len(present)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(present)), labels, fontsize=7)
    ax.set(xlabel='predicted', ylabel='true', title=title)
    fig.colorbar(image, ax=ax, fraction=0.04, label='fraction of the true class')
    fig.tight_layout()
    return fig


def write_per_class_csv(matrix, names, path):
    """Per-class accuracy, worst first, as CSV (action, class, samples, correct, accuracy %); classes without a
    test sample are left out. Written to a temporary file, then renamed."""
    totals, correct = matrix.sum(1), np.diag(matrix)
    present = np.flatnonzero(totals)
    accuracy = 100 * correct[present] / totals[present]
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['action', 'class', 'samples', 'correct', 'accuracy'])
        for i in np.argsort(accuracy, kind='stable'):
            c = present[i]
            writer.writerow([names[c], int(c), int(totals[c]), int(correct[c]), f'{accuracy[i]:.2f}'])
    os.replace(tmp, path)
    return path


def tsne_figure(panels, names, title, seed=0):
    """t-SNE (scikit-learn) of each {label: (features (N, D), labels (N,))}, side by side, coloured by action."""
    from sklearn.manifold import TSNE
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 6), squeeze=False)
    classes = sorted(set(np.concatenate([labels for _, labels in panels.values()]).tolist()))
    colours = plt.get_cmap('tab20' if len(classes) > 10 else 'tab10')
    for ax, (label, (features, labels)) in zip(axes[0], panels.items()):
        perplexity = min(30., (len(features) - 1) / 3)
        points = TSNE(2, perplexity=perplexity, init='pca', random_state=seed).fit_transform(features)
        for i, c in enumerate(classes):
            where = labels == c
            ax.scatter(*points[where].T, s=6, color=colours(i % colours.N), label=names[c])
        ax.set(title=label, xticks=[], yticks=[])
    axes[0, -1].legend(fontsize=7, markerscale=2, loc='center left', bbox_to_anchor=(1, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sequence_animation(joints, title, fps=15):
    """A 3D animation of a skeleton sequence joints (T, 150 or 75) (frames x bodies x 25 joints x xyz): every body
    that moves, bones from data.skeleton.PARENTS. All-zero frames at the end are left out."""
    joints = np.asarray(joints, np.float32).reshape(len(joints), -1, 25, 3)  # one or two bodies
    joints = np.concatenate([joints, np.zeros_like(joints[:, :2 - joints.shape[1]])], axis=1)
    joints = joints[:max(1, np.flatnonzero(joints.any(axis=(1, 2, 3))).max(initial=0) + 1)]
    bodies = [b for b in range(2) if joints[:, b].any()]
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection='3d')
    shown = joints[:, bodies].reshape(-1, 3)
    low, high = shown.min(0), shown.max(0)
    ax.set(xlim=(low[0], high[0]), ylim=(low[2], high[2]), zlim=(low[1], high[1]), xlabel='x', ylabel='z',
           zlabel='y')
    lines = [[ax.plot([], [], [], color=f'C{b}', lw=2)[0] for _ in PARENTS] for b in bodies]

    def draw(t):
        for body, body_lines in zip(bodies, lines):
            for joint, (parent, line) in enumerate(zip(PARENTS, body_lines)):
                pair = joints[t, body, [joint, parent]]
                line.set_data_3d(pair[:, 0], pair[:, 2], pair[:, 1])  # y up
        ax.set_title(f'{title}\nframe {t + 1} / {len(joints)}', fontsize=9)
        return [line for body_lines in lines for line in body_lines]

    return animation.FuncAnimation(fig, draw, frames=len(joints), interval=1000 / fps)
