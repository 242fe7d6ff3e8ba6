"""Export a linear-probe or fine-tune checkpoint for use outside training.

    python export.py output/ntu60_xsub/finetune/checkpoint-last.pth --out exported/ntu60_xsub

writes into --out:
    model.safetensors  the classifier's weights (no optimiser state)
    config.json        {'model': class, 'model_args': its arguments, 'input': the test-time preprocessing}
    model.pt2          a torch.export program of the classifier, (N, 3, T, 25, 2) float32 -> logits (N, classes)
                       for any batch size N, that runs without this repository:
                       torch.export.load('model.pt2').module()(x)
model_transformer.load_exported(DIR) rebuilds the classifier from model.safetensors and config.json.
"""
import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from model_transformer import classifier_from_checkpoint
from util.config import fail
from util.misc import atomic_write

INPUT_KEYS = ('p_interval', 'window_size', 'bone', 'vel')
MAX_BATCH = 65536


def export_program(model, num_bodies=2):
    """torch.export program of `model` with a dynamic batch dimension."""
    example = torch.zeros(2, model.dim_in, model.num_frames, model.num_joints, num_bodies)
    batch = torch.export.Dim('batch', min=1, max=MAX_BATCH)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def export(checkpoint, out_dir):
    """Write model.safetensors, config.json and model.pt2 of `checkpoint` into out_dir; returns the model."""
    try:
        model, settings = classifier_from_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {'model': settings['model'], 'model_args': settings['model_args'],
              'input': {k: v for k, v in settings.get('val_feeder_args', {}).items() if k in INPUT_KEYS}}
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(out_dir / 'model.safetensors', lambda tmp: save_file(state, tmp))
    atomic_write(out_dir / 'config.json', lambda tmp: tmp.write_text(json.dumps(config, indent=2, default=str)))
    with torch.no_grad():
        program = export_program(model)
    atomic_write(out_dir / 'model.pt2', lambda tmp: torch.export.save(program, tmp))
    return model


def main(argv=None):
    parser = argparse.ArgumentParser('export.py', description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='checkpoint of main_linprobe.py or main_finetune.py')
    parser.add_argument('--out', required=True, help='folder for model.safetensors, config.json and model.pt2')
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out)
    print(f"Exported {args.checkpoint} to {args.out}: model.safetensors, config.json, model.pt2")


if __name__ == '__main__':
    main()
