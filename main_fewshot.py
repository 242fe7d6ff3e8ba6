"""Few-shot evaluation (n-way k-shot episodes, util/fewshot.py) of a frozen encoder on actions held out from its
pre-training and tuning: a pre-training or tuning checkpoint (--finetune), or the randomly initialised encoder.

    python main_fewshot.py --config config/ntu60_xsub/fewshot.yaml \
        --finetune output/ntu60_xsub/tune/checkpoint-19.pth --output_dir output/ntu60_xsub/fewshot_tune
    python main_fewshot.py --config config/real_pku/fewshot.yaml --data_path PKUv1_XSub.npz --finetune CKPT \
        [--ways 4 --shots 1 5 --queries 15 --episodes 1000]

The held-out actions (held_out_actions, numbered from 1) are read with the config's val_feeder_args (centre
crop). Prints the mean accuracy and its 95% interval for each --shots and writes output_dir/fewshot.json:
{"ways", "queries", "episodes", "held_out_actions", "classes", "finetune", "by_shots": {"1": {"acc", "ci95"}}}
(accuracies in %).
"""
import numpy as np

from util import actions, config, data, fewshot, knn, runner
from util.config import fail


def check_args(args):
    """Fail with one line on a config without held-out actions (the episode settings' ranges are util.flags')."""
    if not args.held_out_actions:
        fail(f"{args.config}: no held_out_actions: list the action numbers held out from pre-training and tuning")


def held_out(args, dataset):
    """(the held-out classes with samples enough for every episode, the indices of their samples); fails with
    one line on an action the data does not have and when fewer than --ways classes are left."""
    try:
        labels = actions.action_labels(args.held_out_actions, dataset.num_classes)
    except ValueError as e:
        fail(f"held_out_actions (--held_out_actions, or in {args.config}): {e} in {dataset.data_path}")
    needed = max(args.shots) + args.queries
    classes = fewshot.usable_classes(dataset.label, labels, needed)
    if len(classes) < args.ways:
        fail(f"--ways {args.ways}: only {len(classes)} of the {len(labels)} held-out actions have {needed} samples "
             f"(shots + queries) in the {dataset.split} split of {dataset.data_path}; lower --ways, --shots or "
             f"--queries")
    return classes, np.flatnonzero(np.isin(dataset.label, classes))


def main(args):
    check_args(args)
    dataset = data.build_dataset(args, 'val_feeder_args')
    classes, index = held_out(args, dataset)
    device = runner.setup(args, training=False)
    model = runner.build_model(args).to(device)
    features, labels = knn.features(knn.PooledFeatures(model), dataset, index, device, knn.loader_options(args),
                                    args.amp)
    features, labels = features.numpy(), labels.numpy()
    by_shots = {}
    for shots in args.shots:
        accuracies = fewshot.episode_accuracies(features, labels, classes, args.ways, shots, args.queries,
                                                args.episodes, args.seed)
        mean, half = fewshot.interval(accuracies)
        by_shots[str(shots)] = {'acc': 100 * mean, 'ci95': 100 * half}
        print(f"{args.ways}-way {shots}-shot ({args.queries} queries a class, {args.episodes} episodes over "
              f"{len(classes)} held-out actions, {len(index)} samples): {100 * mean:.2f} +- {100 * half:.2f}%")
    stats = {'ways': args.ways, 'queries': args.queries, 'episodes': args.episodes,
             'held_out_actions': sorted(args.held_out_actions), 'classes': len(classes), 'finetune': args.finetune,
             'by_shots': by_shots}
    return runner.finish_evaluation(args, 'fewshot.json', stats)


if __name__ == '__main__':
    main(config.parse_args('fewshot'))
