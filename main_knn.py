"""kNN evaluation of a frozen encoder: a pre-training checkpoint, a classification checkpoint or (without
--finetune, or with --finetune '' where the config names a start checkpoint) the randomly initialised encoder.

    python main_knn.py --config config/ntu60_xsub/linear.yaml \
        --finetune output/ntu60_xsub/pretrain_mamp/checkpoint-399.pth [--k 20 --t 0.07]   (--k 1 20: both)
    torchrun --nproc_per_node=4 main_knn.py --config ... --finetune ...   (one shard of the features per process)

Prints top-1, top-5 and the mean class accuracy and writes them to output_dir/knn.json: knn_acc1, knn_acc5,
knn_mean_class_acc and knn_k of the first k given, and under by_k those of every k
({"1": {"acc1": ..., "acc5": ..., "mean_class_acc": ...}, "20": ...}).
"""
from util import config, knn, runner


def main(args):
    device = runner.setup(args, training=False)
    evaluate = knn.KNN(args)
    model = runner.build_model(args).to(device)
    by_k, elapsed = evaluate.accuracies(model, device)
    first = evaluate.ks[0]
    stats = {**{f'knn_{key}': value for key, value in by_k[first].items()}, 'knn_bank': len(evaluate.bank_index),
             'knn_time': elapsed, 'knn_k': first, 'knn_t': args.knn_t, 'finetune': args.finetune,
             'by_k': {str(k): v for k, v in by_k.items()}}
    return runner.finish_evaluation(args, 'knn.json', stats)


if __name__ == '__main__':
    main(config.parse_args('knn'))
