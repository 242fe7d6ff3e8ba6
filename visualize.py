"""Pictures of the data, of motion-aware masking, of the features and of the errors; each sub-command writes one
file, PNG, PDF or SVG by the suffix of --out (a sequence also as a GIF / MP4 animation), and prints its path.

    python visualize.py sequence --npz data/ntu/NTU60_XSub.npz --index 0 --out seq.gif
                                 (or --name S001C001P001R001A001, or --skeleton S001C001P001R001A001.skeleton;
                                 --split train; --out seq.pdf: a strip of --frames frames)
    python visualize.py masking --config config/ntu60_xsub/pretrain_mamp.yaml --checkpoint CKPT --index 0 \
                                --out masking.png
    python visualize.py tsne --config config/ntu60_xsub/linear.yaml --encoder MAMP=CKPT --encoder random= --out tsne.png
    python visualize.py confusion --config config/ntu60_xsub/finetune.yaml --checkpoint CKPT --out confusion.png
                                  (and confusion.csv: per-class accuracy, worst first)
    python visualize.py timeline --labels data/pku_raw/v1/label/0002-L.txt \
                                 --proposals output/pku_v1/detect/proposals/0002-L.txt --out timeline.png

Action names come from the data file's name or the class count (util/actions.py); --dataset names the dataset.
Titles name the run: the checkpoint's folder and epoch. Figures are sized for a paper (util/figures.py).
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from matplotlib import animation
from torch.utils.data import DataLoader

from data.pipeline import DataError
from util import config, data, devices, figures, knn, runner, skeleton_figures
from util.actions import action_names, dataset_of, sample_title
from util.checkpoint import load_checkpoint
from util.config import fail
from util.flags import HelpFormatter, Range
from util.model_args import run_checks
from util.output import check_new_output_file


def names_for(args, data_path, num_classes):
    return action_names(args.dataset or dataset_of(data_path, num_classes))


def check_index(where, count, index=0):
    """Fail with one line when `where` has no sample, or none at --index `index`."""
    if count == 0:
        fail(f"{where} has no sample; the picture needs at least one")
    if not 0 <= index < count:
        fail(f"--index {index}: {where} has {count} samples (0 to {count - 1})")


def sample_at(dataset, index, where):
    """Item `index` of a feeder, failing with one line when it is out of range."""
    check_index(where, len(dataset), index)
    return dataset[index]


def sequence(args):
    """A skeleton sample animated in 3D: a row of a preprocessed .npz (by index or name) or a raw .skeleton."""
    if args.skeleton:
        from data.ntu import process_file
        from data.pipeline import DataError
        try:
            joints = process_file(args.skeleton)[0].get('joints')
        except (OSError, DataError) as e:
            fail(f"--skeleton {args.skeleton}: {e}")
        if joints is None:
            fail(f"--skeleton {args.skeleton}: no body in the file")
        title = sample_title(Path(args.skeleton).stem, args.dataset)
        source = f"--skeleton {args.skeleton}"
    elif args.npz:
        from feeder.feeder_ntu import load_npz
        keys = (f'x_{args.split}', f'y_{args.split}', f'names_{args.split}')
        try:
            arrays, present = load_npz(args.npz, keys)
        except (OSError, ValueError) as e:
            fail(f"--npz {args.npz}: {e}")
        if keys[0] not in arrays:
            fail(f"--npz {args.npz}: no array {keys[0]} (arrays: {', '.join(present)})")
        x, onehot = arrays[keys[0]], arrays[keys[1]]
        names = [str(n) for n in arrays.get(keys[2], [])]
        index = args.index
        if args.name:
            if args.name not in names:
                fail(f"--name {args.name}: not a sample of the {args.split} split of {args.npz}")
            index = names.index(args.name)
        else:
            check_index(f"the {args.split} split of {args.npz}", len(x), index)
        label = int(np.argmax(onehot[index]))
        action = names_for(args, args.npz, onehot.shape[1])[label]
        joints = x[index]
        title = f"{names[index] if names else f'{args.split} {index}'}: {action}"
        source = f"sample {index} of the {args.split} split of {args.npz}"
    else:
        fail("sequence: give --npz FILE (with --index or --name) or --skeleton FILE")
    try:
        if Path(args.out).suffix.lower() in figures.ANIMATIONS:
            picture = skeleton_figures.sequence_animation(joints, title, args.fps)
        else:
            picture = skeleton_figures.sequence_figure(joints, title, args.frames)
    except ValueError as e:
        fail(f"{source}: {e}")
    return figures.save(picture, args.out, args.dpi)


def checkpoint_state(path):
    """The checkpoint dict at `path` (its weights under 'model', or a bare state dict)."""
    try:
        checkpoint = load_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        fail(f"--checkpoint {path}: {e}")
    return checkpoint


def run_title(path, checkpoint):
    """The run a checkpoint comes from: its folder's name and, when it holds one, its epoch."""
    path = Path(path).resolve()
    epoch = checkpoint.get('epoch')
    return f"{path.parent.name}, epoch {epoch}" if isinstance(epoch, int) else f"{path.parent.name}/{path.name}"


def trained_setting(checkpoint, cfg, key, path):
    """A pre-training setting as the checkpoint's run had it (its stored arguments, checked as the flag of that
    name is), else as the config has it."""
    stored = checkpoint.get('args') or {}
    stored = vars(stored) if isinstance(stored, argparse.Namespace) else stored
    value = config.stored_setting('pretrain', stored if isinstance(stored, dict) else {}, key, f"--checkpoint {path}")
    return getattr(cfg, key) if value is None else value


def masking(args):
    """Motion, keep probability, one mask and the prediction of a pre-trained model, under the masking it was
    trained with (its stored settings: motion-aware with its tau, or uniform random for the MAE baseline) and,
    for motion-aware masking, under uniform random masking."""
    cfg = parse_config('pretrain', args)
    checkpoint = checkpoint_state(args.checkpoint)
    state = checkpoint.get('model', checkpoint)
    if 'decoder_pred.weight' not in state:
        fail(f"--checkpoint {args.checkpoint}: not a pre-training checkpoint (no decoder); the masking picture "
             f"needs one written by main_pretrain.py")
    mask_ratio, tau, stride = (trained_setting(checkpoint, cfg, key, args.checkpoint)
                               for key in ('mask_ratio', 'motion_aware_tau', 'motion_stride'))
    cls = config.resolve_class('model', cfg.model, f"{cfg.config}: model")
    try:
        run_checks(cls, getattr(cls, 'OPTION_CHECKS', ()), cfg.model_args, mask_ratio=mask_ratio, motion_stride=stride)
    except ValueError as e:
        fail(f"--checkpoint {args.checkpoint}: args: {e}")
    model = cls(**cfg.model_args)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        fail(f"--checkpoint {args.checkpoint}: does not fit the model of {args.config} "
             f"({str(e).splitlines()[1].strip()})")
    key, _, test = knn.feeder_settings(cfg)
    dataset = data.build_dataset(cfg, key, split=args.split, **{k: v for k, v in test.items() if k != 'split'})
    x, label, _ = sample_at(dataset, args.index, f"the {args.split} split of {dataset.data_path}")
    x = torch.from_numpy(x)[None]
    action = names_for(args, dataset.data_path, dataset.num_classes)[label]
    title = (f"{run_title(args.checkpoint, checkpoint)}: {args.split} sample {args.index} ({action}), "
             f"mask ratio {mask_ratio:g}")
    return figures.save(figures.masking_figure(model, x, mask_ratio, tau, stride, args.title and title, args.seed),
                        args.out, args.dpi)


def encoder_spec(item):
    """(label, checkpoint) of an --encoder value: LABEL=CHECKPOINT, LABEL= (random initialisation: no
    checkpoint) or CHECKPOINT alone (labelled with its run)."""
    if Path(item).is_file():
        label, path = '', item
    elif '=' in item:
        label, _, path = item.partition('=')
        if path and not Path(path).exists():
            fail(f"--encoder {item}: no checkpoint file {path}")
    else:
        fail(f"--encoder {item}: no such checkpoint file; give LABEL=CHECKPOINT, CHECKPOINT, or LABEL= for a "
             f"randomly initialised encoder")
    return label or (run_title(path, checkpoint_state(path)) if path else 'random init'), path


def tsne(args):
    """t-SNE of the test-set features of one or more encoders (LABEL=CHECKPOINT or CHECKPOINT; LABEL=: random
    initialisation)."""
    encoders = [encoder_spec(item) for item in args.encoder]
    cfg = parse_config('knn', args)
    device = devices.resolve_device(cfg.device)
    evaluate = knn.KNN(cfg)
    where = f"the test split of {evaluate.queries.data_path}"
    check_index(where, len(evaluate.queries))
    index = knn.bank_subset(len(evaluate.queries), args.max_samples)
    if len(index) < 2:
        fail(f"--max_samples {args.max_samples}: t-SNE needs 2 samples or more ({where} has {len(evaluate.queries)})")
    names = names_for(args, evaluate.queries.data_path, evaluate.queries.num_classes)
    panels = {}
    for label, cfg.finetune in encoders:
        devices.seed_everything(cfg.seed)
        model = runner.build_model(cfg).to(device)
        features, labels = knn.features(knn.PooledFeatures(model), evaluate.queries, index, device,
                                        evaluate.loader_options, evaluate.amp)
        panels[label] = (features.numpy(), labels.numpy())
    data_file = shown_path(evaluate.queries.data_path)
    title = f"t-SNE of the pooled encoder features, {len(index)} test samples of {data_file}"
    return figures.save(figures.tsne_figure(panels, names, args.title and title, args.seed), args.out, args.dpi)


def shown_path(path):
    """A data file as a title names it: relative to the working folder when inside it, else as given (its name
    alone would call any data NTU60_XSub.npz, the demo's synthetic data too)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def classifier(cfg, path, checkpoint):
    """The config's classifier with the weights of a linear-probe or fine-tune checkpoint."""
    from main_linprobe import prepare_model
    model = config.resolve_class('model', cfg.model, f"{cfg.config}: model")(**cfg.model_args)
    if cfg.model_args.get('protocol') == 'linprobe':
        prepare_model(model)
    state = checkpoint.get('model', checkpoint)
    if 'decoder_pred.weight' in state:
        fail(f"--checkpoint {path}: a pre-training checkpoint; the confusion matrix needs a classifier "
             f"(from main_linprobe.py or main_finetune.py)")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        fail(f"--checkpoint {path}: does not fit the model of {cfg.config} ({str(e).splitlines()[1].strip()})")
    return model


def confusion(args):
    """Test-set confusion matrix of a classification checkpoint and per-class accuracy (CSV, worst first)."""
    from util.evaluation import predict
    cfg = parse_config('finetune', args)
    device = devices.resolve_device(cfg.device)
    checkpoint = checkpoint_state(args.checkpoint)
    model = classifier(cfg, args.checkpoint, checkpoint).to(device)
    dataset = data.build_dataset(cfg, 'val_feeder_args')
    check_index(f"the test split of {dataset.data_path}", len(dataset))
    logits, labels = predict(DataLoader(dataset, batch_size=cfg.batch_size), model, device, cfg)
    names = names_for(args, dataset.data_path, dataset.num_classes)
    matrix = figures.confusion(labels.numpy(), logits.argmax(1).numpy(), dataset.num_classes)
    accuracy = 100 * np.trace(matrix) / matrix.sum()
    csv_path = figures.write_per_class_csv(matrix, names, Path(args.out).with_suffix('.csv'))
    print(csv_path)
    title = f"{run_title(args.checkpoint, checkpoint)}: {len(labels)} test samples, top-1 {accuracy:.1f}%"
    return figures.save(figures.confusion_figure(matrix, names, args.title and title), args.out, args.dpi)


def timeline(args):
    """True and predicted action segments of a PKU-MMD recording: its label file and a proposal file."""
    from util.detection import read_intervals
    if args.length is not None and args.length < 1:
        fail(f"--length {args.length}: expected the recording's number of frames, at least 1")
    rows = []
    for label, path in (('true', args.labels), ('predicted', args.proposals)):
        try:
            rows.append((label, read_intervals(path)))
        except (OSError, DataError) as e:
            fail(f"--{'labels' if label == 'true' else 'proposals'} {path}: {e}")
    length = args.length or max([end for _, segments in rows for _, _, end, _ in segments] + [1])
    title = f"{Path(args.labels).stem}: {len(rows[0][1])} true and {len(rows[1][1])} predicted action(s)"
    return figures.save(figures.timeline_figure(rows, action_names('pku'), length, title), args.out, args.dpi)


def parse_config(protocol, args):
    """The settings of --config as entry point `protocol` reads them, with this command's flags; data loading in
    this process."""
    flags = ['--config', args.config, '--device', args.device, '--seed', str(args.seed), '--batch_size',
             str(args.batch_size), '--num_workers', '0', '--no-pin_mem']
    flags += (['--data_path', args.data_path] if args.data_path else []) + (['--opts', *args.opts] if args.opts else [])
    return config.parse_args(protocol, flags)


def get_args_parser():
    parser = argparse.ArgumentParser('visualize.py', description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    run = {}
    for name, fn, out in (('sequence', sequence, 'sequence.gif'), ('masking', masking, 'masking.png'),
                          ('tsne', tsne, 'tsne.png'), ('confusion', confusion, 'confusion.png'),
                          ('timeline', timeline, 'timeline.png')):
        p = commands.add_parser(name, help=fn.__doc__.splitlines()[0], description=fn.__doc__,
                                formatter_class=HelpFormatter)
        p.add_argument('--out', default=out, help='file to write: .png, .pdf or .svg' +
                       (' (a strip of frames), .gif or .mp4 (an animation)' if name == 'sequence' else ''))
        p.add_argument('--dpi', type=int, default=None, help=f"pixels per inch of a PNG (default "
                       f"{figures.DPI['picture']}), GIF or MP4 (default {figures.DPI['animation']})")
        p.add_argument('--dataset', default=None, help='ntu60, ntu120 or pku for the action names (default: '
                                                       'from the data file name or the class count)')
        p.add_argument('--seed', type=int, default=0)
        run[name] = p
        p.set_defaults(fn=fn)
    run['sequence'].add_argument('--npz', help='preprocessed data file')
    run['sequence'].add_argument('--skeleton', help='raw NTU RGB+D .skeleton file')
    run['sequence'].add_argument('--name', help='sample name in the .npz (e.g. S001C001P001R001A001)')
    run['sequence'].add_argument('--fps', type=float, default=15)
    run['sequence'].add_argument('--frames', type=int, default=6, help='frames shown in a PNG / PDF / SVG strip')
    for name in ('sequence', 'masking'):
        run[name].add_argument('--index', type=int, default=0, help='sample index in the split')
        run[name].add_argument('--split', choices=('train', 'test'), default='test')
    for name in ('masking', 'tsne', 'confusion'):
        p = run[name]
        p.add_argument('--title', action=argparse.BooleanOptionalAction, default=True,
                       help='a title naming the run and the data (--no-title: none, for a paper)')
        p.add_argument('--config', required=True, help='YAML config of the run (model and data)')
        p.add_argument('--data_path', default=None, help="data file instead of the config's")
        p.add_argument('--device', default='auto')
        p.add_argument('--batch_size', type=int, default=64)
        p.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE', help='config overrides')
    for name in ('masking', 'confusion'):
        run[name].add_argument('--checkpoint', required=True)
    run['tsne'].add_argument('--encoder', action='append', required=True, metavar='LABEL=CHECKPOINT',
                             help='an encoder to show (repeat for several); CHECKPOINT alone: labelled with its '
                                  'run; LABEL= alone: random initialisation')
    run['timeline'].add_argument('--labels', required=True, help='PKU-MMD label file of the recording (true)')
    run['timeline'].add_argument('--proposals', required=True, help='its proposal file (main_detect.py, predict.py)')
    run['timeline'].add_argument('--length', type=Range(int, 1), default=None,
                                 help='frames of the recording (default: the last segment end)')
    run['tsne'].add_argument('--max_samples', type=int, default=2000, help='test samples shown, a fixed subset')
    return parser


def check_output(args):
    """Fail with one line, before any work, on an --out that cannot be written (a missing folder is created when
    the picture is written, as the confusion matrix's .csv beside it), a --dpi or a --frames."""
    suffix = Path(args.out).suffix.lower()
    allowed = figures.PICTURES + (figures.ANIMATIONS if args.command == 'sequence' else ())
    if suffix not in allowed:
        fail(f"--out {args.out}: expected a file ending in {', '.join(allowed)}")
    if suffix == '.mp4' and not animation.writers.is_available('ffmpeg'):
        fail(f"--out {args.out}: writing MP4 needs ffmpeg on the PATH, which is not there: install ffmpeg, "
             f"or write a .gif")
    if args.dpi is not None and args.dpi <= 0:
        fail(f"--dpi {args.dpi}: expected a positive number of pixels per inch")
    if getattr(args, 'frames', 1) < 1:
        fail(f"--frames {args.frames}: expected at least 1 frame in the strip")
    check_new_output_file(args.out, '--out')


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    check_output(args)
    path = args.fn(args)
    print(path)
    return path


if __name__ == '__main__':
    main()
