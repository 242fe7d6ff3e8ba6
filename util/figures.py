"""Pictures of motion-aware masking, features and errors, in one style sized for a paper: 8 pt text (7 pt ticks
and legends) at the size of a double-column figure (7 in wide) or a single column (3.5 in), TrueType fonts in
PDF, text kept as text in
SVG. Matplotlib on the Agg backend (no display needed). Each `*_figure` returns a Figure; `save` writes it (or an
animation of util/skeleton_figures.py) as PNG, PDF or SVG, by the file's suffix.
"""
import csv
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import animation  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from data.skeleton import JOINT_NAMES  # noqa: E402
from util.output import atomic_write  # noqa: E402

STYLE = {
    'font.size': 8, 'axes.titlesize': 8, 'axes.labelsize': 8, 'xtick.labelsize': 7, 'ytick.labelsize': 7,
    'legend.fontsize': 7, 'figure.titlesize': 9, 'axes.linewidth': 0.5, 'lines.linewidth': 0.8,
    'xtick.major.width': 0.5, 'ytick.major.width': 0.5, 'xtick.major.size': 2, 'ytick.major.size': 2,
    'legend.frameon': False, 'figure.dpi': 150, 'figure.constrained_layout.use': True,
    'pdf.fonttype': 42, 'ps.fonttype': 42, 'svg.fonttype': 'none', 'savefig.bbox': 'tight',
    'savefig.pad_inches': 0.02,
}
matplotlib.rcParams.update(STYLE)
SINGLE_COLUMN, DOUBLE_COLUMN = 3.5, 7.0  # figure widths in inches
PICTURES, ANIMATIONS = ('.png', '.pdf', '.svg'), ('.gif', '.mp4')
DPI = {'picture': 200, 'animation': 120}  # default pixels per inch of a PNG and of a GIF / MP4
MASK_DRAWS = 256  # masks drawn to estimate each token's keep probability under motion-aware masking
COLOURS = plt.get_cmap('tab10').colors  # the joints of the masking figure
# One colour an action: tab10 up to 10 actions, tab20 up to 20; beyond 20 the 18 largest actions get tab20's
# colours but its greys, and the rest are grey.
TAB20, OTHERS = plt.get_cmap('tab20').colors, (0.6, 0.6, 0.6)
NAMED_BEYOND_20 = [c for i, c in enumerate(TAB20) if i not in (14, 15)]  # tab20's greys are 14 and 15


def save(picture, path, dpi=None):
    """Write `picture` (a Figure, or an Animation as .gif / .mp4) to `path` through a temporary file with a
    process-unique name, then rename (util.output.atomic_write); returns the path. `dpi`: pixels per inch of a PNG,
    GIF or MP4 (default DPI)."""
    path = Path(path)
    moving = isinstance(picture, animation.Animation)
    fig = picture._fig if moving else picture

    def write(tmp):
        if moving:
            picture.save(tmp, writer='pillow' if path.suffix.lower() == '.gif' else 'ffmpeg',
                         dpi=dpi or DPI['animation'])
        else:
            fig.savefig(tmp, dpi=dpi or DPI['picture'])

    try:
        atomic_write(path, write, make_folder=True)
    finally:
        plt.close(fig)
    return path


def class_colours(counts):
    """{class: colour} for {class: number of samples}: each class its own colour up to 20 classes (tab10 up to
    10, tab20 up to 20); beyond 20 the len(NAMED_BEYOND_20) largest classes (ties: the lower class) get their
    own colour and the others OTHERS (grey)."""
    classes = sorted(counts)
    if len(classes) <= 20:
        return dict(zip(classes, COLOURS if len(classes) <= 10 else TAB20))
    largest = sorted(classes, key=lambda c: (-counts[c], c))[:len(NAMED_BEYOND_20)]
    named = dict(zip(sorted(largest), NAMED_BEYOND_20))
    return {c: named.get(c, OTHERS) for c in classes}


@torch.no_grad()
def masking_arrays(model, x, mask_ratio, motion_aware_tau, motion_stride, seed=0):
    """What MAMP does to one sample x (1, C, T, V, M), for its first body, on the (TP, VP) token grid.

    motion: the per-token motion scores that drive the masking; keep: each token's keep probability, exact under
    uniform random masking (len_keep / L for every token), else the fraction of MASK_DRAWS masks drawn by the
    model's own masking that keep it; mask: the mask (1 = masked) of one forward pass of the
    model with torch seeded by `seed`; pred, target: that pass's prediction and target (TP, VP, t_patch_size
    * patch_size * C), the motion (or the joints for target='joints') of each token's frames.
    """
    model.eval()
    grid, L = model.grid, model.grid[0] * model.grid[1]
    motion = model.motion_scores(model.patchify(x))[:1]  # (1, L)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, pred, mask = model(x, mask_ratio=mask_ratio, motion_stride=motion_stride, motion_aware_tau=motion_aware_tau)
        if motion_aware_tau > 0:
            *_, draws = model.masking(MASK_DRAWS, L, mask_ratio, x.device, motion.expand(MASK_DRAWS, L),
                                      motion_aware_tau)
            keep = 1 - draws.mean(0)
        else:  # every subset of len_keep tokens is as likely
            keep = torch.full((L,), int(L * (1 - mask_ratio)) / L)
    target = model.forward_target(x, motion_stride)
    arrays = {'motion': motion[0].view(grid), 'keep': keep.view(grid), 'mask': mask[0].view(grid),
              'pred': pred[0].view(*grid, -1), 'target': target[0].view(*grid, -1)}
    return {key: value.float().cpu().numpy() for key, value in arrays.items()}


def masking_rows(model, x, mask_ratio, trained_tau, motion_stride, seed=0):
    """{row label: masking_arrays}: the masking the model was trained with (motion-aware at `trained_tau`, or
    uniform random when it is 0, as for the MAE baseline), and uniform random masking below a motion-aware one.
    Every row draws with the same seed, so the masks differ only where the motion moves the odds."""
    if trained_tau <= 0:
        return {'uniform random\n(as trained)': masking_arrays(model, x, mask_ratio, 0., motion_stride, seed)}
    return {f'motion-aware, tau {trained_tau:g}\n(as trained)': masking_arrays(
                model, x, mask_ratio, trained_tau, motion_stride, seed),
            'uniform random': masking_arrays(model, x, mask_ratio, 0., motion_stride, seed)}


def masking_figure(model, x, mask_ratio, trained_tau, motion_stride, title=None, seed=0, num_joints_shown=3):
    """What a pre-trained model does to one sample x (1, C, T, V, M), one row of panels per masking of
    masking_rows: motion, keep probability, one drawn mask, and the predicted against the true first coordinate
    of the `num_joints_shown` joints that move most. One colour scale per quantity across the rows; the token
    grids drawn over frames (a token spans t_patch_size frames) and joints. No title when `title` is None."""
    rows = masking_rows(model, x, mask_ratio, trained_tau, motion_stride, seed)
    fig, axes = plt.subplots(len(rows), 4, figsize=(DOUBLE_COLUMN, 0.8 + 1.5 * len(rows)), squeeze=False,
                             sharex='col', sharey='col')
    first = next(iter(rows.values()))
    joints = np.argsort(-first['motion'].sum(0), kind='stable')[:num_joints_shown]
    frames = first['target'].shape[-1] // 3  # t_patch_size * patch_size frames x 3 coordinates per token
    (steps, tokens), t_patch = first['motion'].shape, model.t_patch_size
    extent = (-0.5, tokens * model.patch_size - 0.5, steps * t_patch - 0.5, -0.5)  # in joints and frames
    panels = (('motion', 'motion per token', 'viridis'), ('keep', 'keep probability', 'magma'),
              ('mask', 'one mask (white: masked)', 'gray'))
    units = {'motion': f'mean |change| over {t_patch} frames (m)', 'keep': 'probability of being kept'}
    images = {}
    for ax_row, (label, arrays) in zip(axes, rows.items()):
        for ax, (key, name, cmap) in zip(ax_row, panels):
            low, high = (0, 1) if key == 'mask' else (min(r[key].min() for r in rows.values()),
                                                        max(r[key].max() for r in rows.values()))
            images[key] = ax.imshow(arrays[key], aspect='auto', cmap=cmap, interpolation='nearest', vmin=low,
                                    vmax=high, extent=extent)
            ax.tick_params(labelleft=ax is ax_row[0])
        ax_row[0].set_ylabel(f'{label}\n\nframe')
        ax, mask = ax_row[3], arrays['mask']
        for colour, joint in zip(COLOURS, joints):
            true = arrays['target'][:, joint, 0::3].reshape(-1)  # first coordinate over all frames
            pred = np.where(np.repeat(mask[:, joint], frames) > 0, arrays['pred'][:, joint, 0::3].reshape(-1), np.nan)
            ax.plot(true, color=colour)
            ax.plot(pred, '.', ms=2.5, color=colour)
        ax.set_ylabel(f"{'motion' if model.target == 'motion' else 'joint position'}, x"
                      + (' (normalised)' if model.norm_skes_loss else ''))
    for ax, (_, name, _) in zip(axes[0], panels + ((None, 'prediction (masked tokens)', None),)):
        ax.set_title(name)
    for ax, xlabel in zip(axes[-1], ('joint', 'joint', 'joint', 'frame')):
        ax.set_xlabel(xlabel)
    for ax in axes.flat:  # whole frames and joints, few enough to read
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        if ax.images:
            ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    for column, (key, _, _) in enumerate(panels[:2]):
        fig.colorbar(images[key], ax=axes[:, column], aspect=25 * len(rows), pad=0.02, label=units[key])
    handles = [Line2D([], [], color=c, label=JOINT_NAMES[j].replace('_', ' ')) for c, j in zip(COLOURS, joints)]
    handles += [Line2D([], [], color='k', label='true'),
                Line2D([], [], color='k', ls='', marker='.', label='predicted (masked tokens)')]
    fig.legend(handles=handles, loc='outside lower center', ncols=len(handles))
    if title:
        fig.suptitle(title)
    return fig


def confusion(labels, predictions, num_classes):
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes ** 2).reshape(num_classes, -1)


def confusion_figure(matrix, names, title=None, max_annotated=25):
    """The row-normalised confusion matrix (%) of the classes that occur (true or predicted), each row labelled
    with its number of test samples, the percentages written in the cells up to `max_annotated` classes.

    Every class is shown: the cells and the font shrink with the class count (7 pt up to 25 classes, 5 pt at
    120, where the figure is 12 in wide: read it as PDF or SVG); the CSV lists the accuracy of each class.
    """
    present = np.flatnonzero(matrix.sum(0) + matrix.sum(1))
    matrix = matrix[np.ix_(present, present)]
    n, totals = len(present), matrix.sum(1)
    rates = 100 * matrix / np.maximum(totals[:, None], 1)
    font = 7 if n <= max_annotated else max(5., 7 - (n - max_annotated) / 45)
    cell = 0.22 if n <= max_annotated else 1.4 * font / 72  # inches
    names = [names[c] for c in present]
    rows = [f'{name} (n={total})' for name, total in zip(names, totals)]
    width, height = (max(map(len, labels)) * 0.5 * font / 72 + 0.4 for labels in (rows, names))  # of the labels
    fig, ax = plt.subplots(figsize=(max(SINGLE_COLUMN, n * cell + width + 1), n * cell + height + 0.3))
    image = ax.imshow(rates, cmap='Blues', vmin=0, vmax=100)
    ax.set_xticks(range(n), names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), rows, fontsize=font)
    ax.set_anchor('N')  # any room to spare below the matrix, where saving trims it
    ax.tick_params(length=1.5)
    if n <= max_annotated:
        for (row, col), rate in np.ndenumerate(rates):
            if matrix[row, col] or (row == col and totals[row]):
                ax.text(col, row, f'{rate:.0f}', ha='center', va='center', fontsize=font - 1,
                        color='white' if rate > 50 else 'black')
    ax.set(xlabel='predicted', ylabel='true (test samples)')
    if title:
        fig.suptitle(title)
    fig.colorbar(image, ax=ax, shrink=min(1., 3 / (n * cell)), label='% of the true class')
    return fig


def write_per_class_csv(matrix, names, path):
    """Per-class accuracy, worst first, as CSV (action, class, samples, correct, accuracy %); classes without a
    test sample are left out. Written through a temporary file, then renamed."""
    totals, correct = matrix.sum(1), np.diag(matrix)
    present = np.flatnonzero(totals)
    accuracy = 100 * correct[present] / totals[present]

    def write(tmp):
        with open(tmp, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['action', 'class', 'samples', 'correct', 'accuracy'])
            for i in np.argsort(accuracy, kind='stable'):
                c = present[i]
                writer.writerow([names[c], int(c), int(totals[c]), int(correct[c]), f'{accuracy[i]:.2f}'])

    atomic_write(path, write, make_folder=True)
    return Path(path)


def tsne_figure(panels, names, title=None, seed=0):
    """t-SNE (scikit-learn) of each {label: (features (N, D), labels (N,))}, side by side, each action in its own
    colour of `class_colours` (beyond 20 actions the largest ones, by their samples in the first panel, and the
    others in grey), the legend below the panels. No title when `title` is None."""
    from sklearn.manifold import TSNE
    first = next(iter(panels.values()))[1]
    counts = {c: 0 for c in np.concatenate([labels for _, labels in panels.values()]).tolist()}
    counts.update(zip(*np.unique(first, return_counts=True)))
    colours = class_colours(counts)
    named = [c for c in sorted(colours) if colours[c] != OTHERS or len(colours) <= 20]
    entries = [names[c] for c in named] + ([f'{len(colours) - len(named)} other actions'] if len(named) <
                                           len(colours) else [])
    width = SINGLE_COLUMN if len(panels) == 1 else DOUBLE_COLUMN
    columns = max(1, int(width / (0.05 * max(map(len, entries)) + 0.3)))  # 7 pt text
    height = width / len(panels) + 0.4 + 0.13 * -(-len(entries) // columns)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), squeeze=False)
    for ax, (label, (features, labels)) in zip(axes[0], panels.items()):
        perplexity = min(30., (len(features) - 1) / 3)
        points = TSNE(2, perplexity=perplexity, init='pca', random_state=seed).fit_transform(features)
        others = np.isin(labels, [c for c in colours if c not in named])
        if others.any():  # below the named actions
            ax.scatter(*points[others].T, s=5, color=OTHERS, linewidths=0)
        for c in named:
            ax.scatter(*points[labels == c].T, s=7, color=colours[c], linewidths=0)
        ax.set(title=label, xticks=[], yticks=[], aspect='equal', adjustable='datalim')
    handles = [Line2D([], [], ls='', color=colours[c], marker='o', ms=3.5, label=names[c]) for c in named]
    if len(named) < len(colours):
        handles.append(Line2D([], [], ls='', color=OTHERS, marker='o', ms=3.5, label=entries[-1]))
    fig.legend(handles=handles, loc='outside lower center', ncols=columns, handletextpad=0.1, columnspacing=0.8)
    if title:
        fig.suptitle(title)
    return fig


def timeline_figure(rows, names, length, title):
    """Segments of one recording as rows of bars over its frames: rows [(row label, [(action, start, end, ...)])],
    e.g. the true and the predicted ones; each action its own colour (class_colours), alike in every row, and
    named on the bar (in the legend when the bar is too short for the name). A second axis gives the time at 30
    fps."""
    frames = {}  # action -> its frames over the rows: class_colours names the largest when there are over 20
    for _, segments in rows:
        for action, start, end, *_ in segments:
            frames[int(action)] = frames.get(int(action), 0) + end - start
    colours = class_colours(frames)
    bars, shown = [], {}  # (y, action, start, end, named on the bar); actions named in the legend
    for y, (_, segments) in enumerate(reversed(rows)):
        for action, start, end, *_ in segments:
            on_bar = (end - start) / max(length, 1) * DOUBLE_COLUMN * 72 > 4.2 * len(names[int(action) - 1])
            bars.append((y, int(action), start, end, on_bar))
            if not on_bar:
                shown[int(action)] = colours[int(action)]
    legend_rows = -(-len(shown) // 4)
    fig, ax = plt.subplots(figsize=(DOUBLE_COLUMN, 1.3 + 0.35 * len(rows) + 0.2 * legend_rows))
    for y, action, start, end, on_bar in bars:
        ax.broken_barh([(start, end - start)], (y - 0.35, 0.7), facecolors=colours[action], edgecolors='none')
        if on_bar:
            ax.text((start + end) / 2, y, names[action - 1], ha='center', va='center', fontsize=6)
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)])
    ax.set_xlim(0, length)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    ax.set_xlabel('frame')
    seconds = ax.secondary_xaxis('top', functions=(lambda f: f / 30, lambda s: s * 30))
    seconds.set_xlabel('time (s, 30 fps)')
    if shown:
        fig.legend(handles=[matplotlib.patches.Patch(color=c, label=names[a - 1]) for a, c in sorted(shown.items())],
                   loc='outside lower center', ncol=4)
    ax.set_title(title)
    return fig
