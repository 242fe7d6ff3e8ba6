"""Few-shot evaluation (n-way k-shot episodes, util/fewshot.py) of a frozen encoder on actions held out from its
pre-training and tuning: a pre-training or tuning checkpoint (--finetune), or the randomly initialised encoder.

    python main_fewshot.py --config config/ntu60_xsub/fewshot.yaml \
        --finetune output/ntu60_xsub/tune/checkpoint-19.pth --output_dir output/ntu60_xsub/fewshot_tune
    python main_fewshot.py --config config/real_pku/fewshot.yaml --data_path PKUv1_XSub.npz --finetune CKPT \
        [--ways 4 --shots 1 5 --queries 15 --episodes 1000]

The held-out actions (held_out_actions, numbered from 1) are read with the config's val_feeder_args (centre crop)
from the splits of --fewshot_splits: by default both, as STARS evaluates on every NTU-120 cross-subject sample of
the actions NTU-60 lacks. Prints the mean accuracy and its 95% interval for each --shots and writes
output_dir/fewshot.json:
{"ways", "queries", "episodes", "held_out_actions", "classes", "samples", "splits", "finetune",
"by_shots": {"1": {"acc", "ci95"}}}
(accuracies in %).
"""
import numpy as np

from util import actions, config, data, fewshot, knn, runner
from util.config import fail


def check_args(args):
    """Fail with one line on a config without held-out actions (the episode settings' ranges are util.flags')."""
    if not args.held_out_actions:
        fail(f"{args.config}: no held_out_actions: list the action numbers held out from pre-training and tuning")


def held_out(args, datasets):
    """The held-out classes with samples enough for every episode over the `datasets` (one per split); fails with
    one line on an action the data does not have and when fewer than --ways classes are left."""
    first = datasets[0]
    try:
        labels = actions.action_labels(args.held_out_actions, first.num_classes)
    except ValueError as e:
        fail(f"held_out_actions (--held_out_actions, or in {args.config}): {e} in {first.data_path}")
    needed = max(args.shots) + args.queries
    classes = fewshot.usable_classes(np.concatenate([d.label for d in datasets]), labels, needed)
    if len(classes) < args.ways:
        fail(f"--ways {args.ways}: only {len(classes)} of the {len(labels)} held-out actions have {needed} samples "
             f"(shots + queries) in the {' + '.join(args.fewshot_splits)} split(s) of {first.data_path}; lower "
             f"--ways, --shots or --queries")
    return classes


def main(args):
    check_args(args)
    datasets = [data.build_dataset(args, 'val_feeder_args', split=split) for split in args.fewshot_splits]
    classes = held_out(args, datasets)
    device = runner.setup(args, training=False)
    model = runner.build_model(args).to(device)
    parts = [knn.features(knn.PooledFeatures(model), dataset, np.flatnonzero(np.isin(dataset.label, classes)),
                          device, knn.loader_options(args), args.amp) for dataset in datasets]
    features = np.concatenate([f.numpy() for f, _ in parts])
    labels = np.concatenate([y.numpy() for _, y in parts])
    by_shots = {}
    for shots in args.shots:
        accuracies = fewshot.episode_accuracies(features, labels, classes, args.ways, shots, args.queries,
                                                args.episodes, args.seed)
        mean, half = fewshot.interval(accuracies)
        by_shots[str(shots)] = {'acc': 100 * mean, 'ci95': 100 * half}
        print(f"{args.ways}-way {shots}-shot ({args.queries} queries a class, {args.episodes} episodes over "
              f"{len(classes)} held-out actions, {len(labels)} samples of the {' + '.join(args.fewshot_splits)} "
              f"split(s)): {100 * mean:.2f} +- {100 * half:.2f}%")
    stats = {'ways': args.ways, 'queries': args.queries, 'episodes': args.episodes,
             'held_out_actions': sorted(args.held_out_actions), 'classes': len(classes), 'samples': len(labels),
             'splits': list(args.fewshot_splits), 'finetune': args.finetune, 'by_shots': by_shots}
    return runner.finish_evaluation(args, 'fewshot.json', stats)


if __name__ == '__main__':
    main(config.parse_args('fewshot'))
