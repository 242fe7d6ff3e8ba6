"""kNN evaluation of a frozen encoder: a pre-training checkpoint, a classification checkpoint or (without
--finetune, or with --finetune '' where the config names a start checkpoint) the randomly initialised encoder.

    python main_knn.py --config config/ntu60_xsub/linear.yaml \
        --finetune output/ntu60_xsub/pretrain_mamp/checkpoint-399.pth [--k 20 --t 0.07]
    torchrun --nproc_per_node=4 main_knn.py --config ... --finetune ...   (one shard of the features per process)

Prints top-1, top-5 and the mean class accuracy and writes them to output_dir/knn.json.
"""
import json
from pathlib import Path

from util import config, dist, knn, misc, runner


def main(args):
    device = runner.setup(args, training=False)
    evaluate = knn.KNN(args)
    model = runner.build_model(args).to(device)
    stats = {f'knn_{k}': v for k, v in evaluate(model, device).items()}
    stats.update(knn_k=args.knn_k, knn_t=args.knn_t, finetune=args.finetune)
    print(json.dumps(stats))
    if dist.is_main_process():
        path = Path(args.output_dir) / 'knn.json'
        misc.atomic_write(path, lambda tmp: tmp.write_text(json.dumps(stats) + '\n'))
        print(f"Wrote {path}")
    misc.release_output_dirs()
    dist.cleanup()
    return stats


if __name__ == '__main__':
    main(config.parse_args('knn'))
