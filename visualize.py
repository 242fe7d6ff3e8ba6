"""Pictures of the data, of motion-aware masking, of the features and of the errors; each sub-command writes one
file (PNG, or GIF / MP4 for an animation) and prints its path.

    python visualize.py sequence --npz data/ntu/NTU60_XSub.npz --index 0 --out seq.gif
                                 (or --name S001C001P001R001A001, or --skeleton S001C001P001R001A001.skeleton;
                                 --split train)
    python visualize.py masking --config config/ntu60_xsub/pretrain_mamp.yaml --checkpoint CKPT --index 0 \
                                --out masking.png
    python visualize.py tsne --config config/ntu60_xsub/linear.yaml --encoder MAMP=CKPT --encoder random= --out tsne.png
    python visualize.py confusion --config config/ntu60_xsub/finetune.yaml --checkpoint CKPT --out confusion.png
                                  (and confusion.csv: per-class accuracy, worst first)

Action names come from the data file's name or the class count (util/actions.py); --dataset names the dataset.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from util import config, data, figures, knn, misc, runner
from util.actions import action_names, dataset_of
from util.checkpoint import load_checkpoint
from util.config import fail


def names_for(args, data_path, num_classes):
    return action_names(args.dataset or dataset_of(data_path, num_classes))


def sample_at(dataset, index, where):
    """Item `index` of a feeder, failing with one line when it is out of range."""
    if not 0 <= index < len(dataset):
        fail(f"--index {index}: {where} has {len(dataset)} samples (0 to {len(dataset) - 1})")
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
        title = Path(args.skeleton).stem
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
        elif not 0 <= index < len(x):
            fail(f"--index {index}: the {args.split} split of {args.npz} has {len(x)} samples (0 to {len(x) - 1})")
        label = int(np.argmax(onehot[index]))
        action = names_for(args, args.npz, onehot.shape[1])[label]
        joints = x[index]
        title = f"{names[index] if names else f'{args.split} {index}'}: {action}"
    else:
        fail("sequence: give --npz FILE (with --index or --name) or --skeleton FILE")
    return figures.save(figures.sequence_animation(joints, title, args.fps), args.out)


def checkpoint_state(path):
    try:
        checkpoint = load_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        fail(f"--checkpoint {path}: {e}")
    return checkpoint.get('model', checkpoint)


def masking(args):
    """Motion, keep probability, one mask and the prediction of a pre-trained MAMP, motion-aware and random."""
    cfg = parse_config('pretrain', args)
    state = checkpoint_state(args.checkpoint)
    if 'decoder_pred.weight' not in state:
        fail(f"--checkpoint {args.checkpoint}: not a pre-training checkpoint (no decoder); the masking picture "
             f"needs one written by main_pretrain.py")
    model = config.resolve_class('model', cfg.model, f"{cfg.config}: model")(**cfg.model_args)
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
    rows = {f'motion-aware (tau {cfg.motion_aware_tau:g})': figures.masking_arrays(
                model, x, cfg.mask_ratio, cfg.motion_aware_tau, cfg.motion_stride, args.seed),
            'random (tau 0)': figures.masking_arrays(model, x, cfg.mask_ratio, 0., cfg.motion_stride, args.seed)}
    title = f"{Path(args.checkpoint).name}: {args.split} sample {args.index} ({action}), mask ratio {cfg.mask_ratio:g}"
    return figures.save(figures.masking_figure(rows, title), args.out)


def tsne(args):
    """t-SNE of the test-set features of one or more encoders (LABEL=CHECKPOINT; an empty path: random init)."""
    cfg = parse_config('knn', args)
    device = misc.resolve_device(cfg.device)
    evaluate = knn.KNN(cfg)
    index = knn.bank_subset(len(evaluate.queries), args.max_samples)
    names = names_for(args, evaluate.queries.data_path, evaluate.queries.num_classes)
    panels = {}
    for item in args.encoder:
        label, _, cfg.finetune = item.partition('=')
        misc.seed_everything(cfg.seed)
        model = runner.build_model(cfg).to(device)
        features, labels = evaluate.features(knn.PooledFeatures(model), evaluate.queries, index, device)
        panels[label] = (features.numpy(), labels.numpy())
    title = (f"t-SNE of the pooled encoder features, {len(index)} test samples of "
             f"{Path(evaluate.queries.data_path).name}")
    return figures.save(figures.tsne_figure(panels, names, title, args.seed), args.out)


def classifier(cfg, path):
    """The config's classifier with the weights of a linear-probe or fine-tune checkpoint."""
    from main_linprobe import prepare_model
    model = config.resolve_class('model', cfg.model, f"{cfg.config}: model")(**cfg.model_args)
    if cfg.model_args.get('protocol') == 'linprobe':
        prepare_model(model)
    state = checkpoint_state(path)
    if 'decoder_pred.weight' in state:
        fail(f"--checkpoint {path}: a pre-training checkpoint; the confusion matrix needs a classifier "
             f"(from main_linprobe.py or main_finetune.py)")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        fail(f"--checkpoint {path}: does not fit the model of {cfg.config} ({str(e).splitlines()[1].strip()})")
    return model


def confusion(args):
    """Test-set confusion matrix of a classification checkpoint (PNG) and per-class accuracy (CSV, worst first)."""
    from util.evaluation import predict
    cfg = parse_config('finetune', args)
    device = misc.resolve_device(cfg.device)
    model = classifier(cfg, args.checkpoint).to(device)
    dataset = data.build_dataset(cfg, 'val_feeder_args')
    logits, labels = predict(DataLoader(dataset, batch_size=cfg.batch_size), model, device, cfg)
    names = names_for(args, dataset.data_path, dataset.num_classes)
    matrix = figures.confusion(labels.numpy(), logits.argmax(1).numpy(), dataset.num_classes)
    accuracy = 100 * np.trace(matrix) / matrix.sum()
    csv_path = figures.write_per_class_csv(matrix, names, Path(args.out).with_suffix('.csv'))
    print(csv_path)
    title = f"{Path(args.checkpoint).name}: {len(labels)} test samples, top-1 {accuracy:.1f}%"
    return figures.save(figures.confusion_figure(matrix, names, title), args.out)


def parse_config(protocol, args):
    """The settings of --config as entry point `protocol` reads them, with this command's flags; data loading in
    this process."""
    flags = ['--config', args.config, '--device', args.device, '--seed', str(args.seed), '--batch_size',
             str(args.batch_size), '--num_workers', '0', '--no-pin_mem']
    flags += (['--data_path', args.data_path] if args.data_path else []) + (['--opts', *args.opts] if args.opts else [])
    return config.parse_args(protocol, flags)


def get_args_parser():
    parser = argparse.ArgumentParser('visualize.py', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    run = {}
    for name, fn, out in (('sequence', sequence, 'sequence.gif'), ('masking', masking, 'masking.png'),
                          ('tsne', tsne, 'tsne.png'), ('confusion', confusion, 'confusion.png')):
        p = commands.add_parser(name, help=fn.__doc__.splitlines()[0], description=fn.__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument('--out', default=out, help='file to write')
        p.add_argument('--dataset', default=None, help='ntu60, ntu120 or pku for the action names (default: '
                                                       'from the data file name or the class count)')
        p.add_argument('--seed', type=int, default=0)
        run[name] = p
        p.set_defaults(fn=fn)
    run['sequence'].add_argument('--npz', help='preprocessed data file')
    run['sequence'].add_argument('--skeleton', help='raw NTU RGB+D .skeleton file')
    run['sequence'].add_argument('--name', help='sample name in the .npz (e.g. S001C001P001R001A001)')
    run['sequence'].add_argument('--fps', type=float, default=15)
    for name in ('sequence', 'masking'):
        run[name].add_argument('--index', type=int, default=0, help='sample index in the split')
        run[name].add_argument('--split', choices=('train', 'test'), default='test')
    for name in ('masking', 'tsne', 'confusion'):
        p = run[name]
        p.add_argument('--config', required=True, help='YAML config of the run (model and data)')
        p.add_argument('--data_path', default=None, help="data file instead of the config's")
        p.add_argument('--device', default='auto')
        p.add_argument('--batch_size', type=int, default=64)
        p.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE', help='config overrides')
    for name in ('masking', 'confusion'):
        run[name].add_argument('--checkpoint', required=True)
    run['tsne'].add_argument('--encoder', action='append', required=True, metavar='LABEL=CHECKPOINT',
                             help='an encoder to show (repeat for several); LABEL= alone: random initialisation')
    run['tsne'].add_argument('--max_samples', type=int, default=2000, help='test samples shown, a fixed subset')
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    path = args.fn(args)
    print(path)
    return path


if __name__ == '__main__':
    main()
