"""Temporal action detection in untrimmed recordings: a frame-wise classifier over background and the actions,
on windows read by a pre-trained (or randomly initialised) encoder, then segments and the PKU-MMD mAP.

    python -m data.pku --phase 1 --raw-dir data/pku_raw/v1 --out-dir data/pku_v1   # also PKUv1_XSub_untrimmed.npz
    python main_detect.py --config config/pku_v1/detect.yaml --mode linear \
        --finetune output/pku_v1/pretrain_mamp/checkpoint-399.pth --output_dir output/pku_v1/detect_linear
    torchrun --nproc_per_node=4 main_detect.py --config config/pku_v1/detect.yaml --mode finetune \
        --finetune CKPT --output_dir output/pku_v1/detect_finetune

--mode linear: the encoder is frozen; the pooled features of its windows are computed once (cached in
output_dir/features, keyed by the weights, the data file and the window settings) and a linear head (after a
non-affine BatchNorm, as in main_linprobe.py) learns from them. --mode finetune: the whole network learns from
the training windows. After the last epoch the test recordings are detected (engine_detect.py):
output_dir/proposals/<recording>.txt and output_dir/detection.json (mAP_a and mAP_v at each --thetas, frame
accuracy, in percent; also in log.txt). docs/detection.md gives the protocol.
"""
import torch
import torch.nn as nn

import engine_detect
import engine_finetune
from feeder.untrimmed import CachedWindows
from model_transformer import prepare_linear_probe
from util import config, data, runner
from util.checkpoint import first_problem, load_checkpoint, resume_candidates


def make_optimizer(model, args):
    """SGD with momentum 0.9 (Nesterov by default, as published) over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=args.lr, momentum=0.9, nesterov=args.nesterov, weight_decay=args.weight_decay,
                           **runner.optimizer_options(args))


def frozen_encoder(args, device):
    """The model of the run as it starts (from --finetune, or the --resume checkpoint's weights), prepared as a
    linear probe, in eval mode on `device`: the encoder whose features the linear mode caches. The random
    state is restored after building it, so that the runner's model, built next, starts from the same weights."""
    with torch.random.fork_rng(devices=[]):
        model = prepare_linear_probe(runner.build_model(args))
    for path in resume_candidates(args):  # --auto_resume: the newest readable one, as util.checkpoint.load_model
        try:
            checkpoint = load_checkpoint(path)
        except ValueError as e:
            if args.resume or not args.auto_resume:
                config.fail(f"--resume: {e}")
            continue
        try:
            model.load_state_dict(checkpoint.get('model', checkpoint))
        except RuntimeError as e:
            config.fail(f"--resume {path}: does not fit the model of {args.config} ({first_problem(e)})")
        break
    return model.to(device).eval()


def feature_settings(args, feeder, device):
    """The keyword arguments of engine_detect.split_features / cached_features but the window length."""
    return dict(hop=feeder.hop, window_size=feeder.window_size, p_interval=feeder.p_interval, device=device,
                amp=args.amp, batch_size=args.feature_batch)


class LinearMode:
    """The frozen-encoder protocol: cached features of the training windows of each length (train_windows) and
    of the test windows."""

    def __init__(self, args, test):
        self.args, self.test, self.device = args, test, None

    def cache(self, model, feeder, window):
        return engine_detect.cached_features(model, feeder.recordings, f"{self.args.output_dir}/features",
                                             window=window, **feature_settings(self.args, feeder, self.device))

    def train_set(self, args, device):
        self.device = device
        feeder = data.build_dataset(args, 'train_feeder_args')
        model = frozen_encoder(args, device)
        cached = {w: self.cache(model, feeder, w) for w in sorted(set(feeder.train_windows))}
        return CachedWindows(feeder, {w: f for w, (f, _) in cached.items()}, {w: o for w, (_, o) in cached.items()})

    def test_features(self, model):
        return self.cache(model, self.test, self.test.window)


class FinetuneMode:
    """The whole network learns from the training windows; the test features come from the trained encoder."""

    def __init__(self, args, test):
        self.args, self.test, self.device = args, test, None

    def train_set(self, args, device):
        self.device = device
        return data.build_dataset(args, 'train_feeder_args')

    def test_features(self, model):
        return engine_detect.split_features(model, self.test.recordings, window=self.test.window,
                                            desc='test features', **feature_settings(self.args, self.test,
                                                                                     self.device))


def main(args):
    if args.gpu_aug:
        config.fail("--gpu_aug: not for detection (the training windows are read from the recordings)")
    test = data.build_dataset(args, 'val_feeder_args')
    mode = (LinearMode if args.mode == 'linear' else FinetuneMode)(args, test)
    criterion = nn.CrossEntropyLoss()
    return runner.run(args, lambda **kw: engine_finetune.train_one_epoch(criterion=criterion, **kw), make_optimizer,
                      prepare_model=prepare_linear_probe if args.mode == 'linear' else None,
                      after_epoch=engine_detect.DetectionEvaluation(args, test, mode.test_features),
                      build_train_set=mode.train_set)


if __name__ == '__main__':
    main(config.parse_args('detect'))
