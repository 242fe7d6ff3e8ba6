"""The life of a training run, shared by main_pretrain.py, main_linprobe.py and main_finetune.py.

set-up (device, processes, seeds, output folders, resolved config) -> datasets and loaders -> model (from a
pre-training checkpoint with --finetune) -> optimiser -> DDP / torch.compile -> resume -> epochs of
training, evaluation, log.txt, TensorBoard and checkpoints. The entry points give the parts that differ.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from util import config, data, devices, dist, malloc, output, preemption
from util.checkpoint import (first_problem, load_checkpoint, load_model, resume_path, run_checkpoints, save_model,
                             save_preempted)
from util.evaluation import evaluate_and_save


def setup(args, training=True):
    """Device, process group, output folders and the derived settings; returns the torch.device.

    Derived: num_workers (0 on CPU, up to 8 per process on CUDA), pin_mem (on CUDA); for training also lr =
    blr * effective batch / 256 when no lr is given and log_dir (output_dir). Unless --eval, rank 0 creates and
    locks the output folders (output.lock_output_dir). On CPU, freed memory is kept in the heap for reuse. On CUDA
    the process uses cuda:LOCAL_RANK under torchrun (else the --device given), and float32 matmuls stay in full
    float32: TF32 (Ampere and later) would change the numbers of the published fp32 runs, and --amp bf16 is
    the faster choice anyway. A training run prints its lr and all its settings (also in config.yaml); an
    evaluation (`training` False) only its processes, device and batch.
    """
    device = dist.process_device(devices.resolve_device(args.device))
    dist.init_distributed_mode(device.type)
    world = dist.get_world_size()
    if device.type == 'cuda':
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision('highest')  # no TF32: fp32 runs are the published arithmetic,
        torch.backends.cudnn.allow_tf32 = False  # in the matmuls and in the patch-embedding convolution
    else:
        malloc.keep_freed_memory()  # reuse freed activations instead of page-faulting them in on every step
    if args.num_workers is None:
        per_process = len(os.sched_getaffinity(0)) // int(os.environ.get('LOCAL_WORLD_SIZE', 1))
        args.num_workers = min(8, max(per_process - 1, 0)) if device.type == 'cuda' else 0
    if args.pin_mem is None:
        args.pin_mem = device.type == 'cuda'
    devices.seed_everything(args.seed)  # the model's initial weights: the same in every run with this seed
    if config.eval_only(args) and not resume_path(args):
        config.fail("--eval needs the checkpoint to evaluate: --resume PATH")
    if not training:  # --eval or an evaluation tool: no lr, TensorBoard or checkpoints; --eval writes nothing
        if dist.is_main_process() and not config.eval_only(args):
            output.lock_output_dir(args.output_dir)
        print(f"{Path(sys.argv[0]).name}: {world} process(es) on {device}, batch {args.batch_size} per process")
        return device
    eff_batch_size = args.batch_size * args.accum_iter * world
    if args.lr is None:
        args.lr = args.blr * eff_batch_size / 256
    args.log_dir = args.log_dir or args.output_dir
    if dist.is_main_process():
        output.lock_output_dir(args.output_dir)
        output.make_dir(args.log_dir, '--log_dir')
    print(f"{Path(sys.argv[0]).name}: {world} process(es) on {device}, effective batch {eff_batch_size}, "
          f"lr {args.lr:.3g}")
    note = published_batch_note(args, world)
    if note:
        print(note)
    print(json.dumps(vars(args), default=str))
    return device


def earlier_run(args):
    """The checkpoints of an earlier run in output_dir that this run starts afresh over (no --resume, nothing
    for --auto_resume); stops with one line when there are some and --overwrite is not given."""
    earlier = [] if resume_path(args) else run_checkpoints(args.output_dir)
    if earlier and not args.overwrite:
        named = ', '.join(p.name for p in earlier[:2]) + (f' and {len(earlier) - 2} more' if len(earlier) > 2 else '')
        config.fail(f"--output_dir {args.output_dir}: holds an earlier run ({named}); --auto_resume continues "
                    f"it, --overwrite starts afresh and replaces it, or give another folder")
    return earlier


def remove_earlier_run(args, earlier):
    """--overwrite, once the new run's inputs are checked: exactly the files the earlier run's writers name
    (output.run_files: its checkpoints, log.txt, config.yaml, scores and tables, and its TensorBoard events when
    they are in output_dir; a --log_dir elsewhere may be shared) go, so that neither --auto_resume nor
    TensorBoard mixes the two runs. Every one is checked to be removable before any is removed."""
    same = Path(args.log_dir).resolve() == Path(args.output_dir).resolve()
    paths = output.run_files(args.output_dir, events=same)
    problem = output.unremovable(args.output_dir, paths)
    if problem:
        config.fail(f"--overwrite: {problem}; nothing removed: remove the earlier run by hand or give another "
                    f"--output_dir")
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            config.fail(f"--overwrite: cannot remove {path} ({e.strerror}); remove the rest of the earlier run by "
                        f"hand or give another --output_dir")
    events = sum(output.EVENTS.fullmatch(p.name) is not None for p in paths)
    print(f"--overwrite: removed the earlier run's {len(earlier)} checkpoint(s), {events} TensorBoard event "
          f"file(s) and {len(paths) - len(earlier) - events} other file(s) from {args.output_dir}")


def finish_evaluation(args, name, stats):
    """The end of an evaluation entry point (main_knn.py, main_fewshot.py): `stats` printed as one JSON line and
    written to output_dir/`name`, the output folder released, the processes' group closed; returns `stats`."""
    output.write_json(args, name, stats)
    output.release_output_dirs()
    dist.cleanup()
    return stats


def published_batch_note(args, world):
    """The line saying that the effective batch (processes x batch_size x accum_iter) differs from the
    config's published_batch, with how to match it; None when it matches or the config names none."""
    eff_batch_size = args.batch_size * args.accum_iter * world
    if not args.published_batch or eff_batch_size == args.published_batch:
        return None
    hint = ''
    if args.published_batch % (world * args.batch_size) == 0:
        hint = f" (here: --accum_iter {args.published_batch // (world * args.batch_size)})"
    return (f"note: effective batch {eff_batch_size} ({world} process(es) x batch_size {args.batch_size} x "
            f"accum_iter {args.accum_iter}) differs from the published {args.published_batch} of {args.config} "
            f"at lr {args.lr:.3g}; to reproduce it, make GPUS x --batch_size x --accum_iter = "
            f"{args.published_batch}{hint}")


def build_model(args):
    """The configured model; with --finetune (and nothing to resume) initialised from that checkpoint."""
    model = config.resolve_class('model', args.model, f"{args.config}: model")(**args.model_args)
    finetune = getattr(args, 'finetune', '')
    resumed = hasattr(args, 'resume') and resume_path(args)  # the evaluation tools resume nothing
    if finetune and not config.eval_only(args) and not resumed:
        from model_transformer import load_pretrained
        try:
            load_pretrained(model, finetune)
        except (ValueError, KeyError, RuntimeError) as e:  # unreadable; weights missing; shapes differ
            config.fail(f"--finetune {finetune}: {first_problem(e) if isinstance(e, RuntimeError) else e}")
        print(f"Loaded pre-trained weights from {finetune}")
    return model


def optimizer_options(args):
    """Keyword arguments selecting the fused (default) or the foreach kernel of a torch optimiser."""
    return {'fused': True} if args.fused_optim else {'foreach': True}


def trim_log(args):
    """Drop log.txt lines of epochs at or after args.start_epoch (written before an interrupted checkpoint),
    and any line cut short by a failed write (not JSON)."""
    path = Path(args.output_dir) / 'log.txt'
    if not dist.is_main_process() or not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get('epoch', -1) < args.start_epoch:
                kept.append(line + '\n')
        except json.JSONDecodeError:
            continue
    text = ''.join(kept)
    output.atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def stop_preempted(args, log_writer, where):
    """After the checkpoint of a preempted run: wait for every rank, then exit with PREEMPTED_EXIT."""
    preemption.barrier()
    if log_writer is not None:
        log_writer.close()
    dist.cleanup()
    print(f"preempted at {where}: {Path(args.output_dir) / 'checkpoint-last.pth'} written; rerun with "
          f"--auto_resume to continue from there", file=sys.stderr)
    raise SystemExit(preemption.PREEMPTED_EXIT)


def stop_interrupted(args):
    """Ctrl-C: one line on stderr saying what checkpoint-last.pth holds (read back, so it is what a resume
    would get), then exit with status 130 (128 + SIGINT, as a shell reports it)."""
    preemption.restore()
    output.release_output_dirs()
    last = Path(args.output_dir) / 'checkpoint-last.pth'
    try:
        checkpoint = load_checkpoint(last) if last.is_file() and not config.eval_only(args) else {}
    except ValueError:
        checkpoint = {}
    if 'epoch' in checkpoint:
        inside = checkpoint.get('position')
        held = f"epoch {checkpoint['epoch']}" + (f" and step {inside['step']} of epoch {checkpoint['epoch'] + 1}"
                                                  if inside else '')
        line = f"interrupted; {last} holds {held}; rerun with --auto_resume to continue"
    else:
        line = "interrupted" + ("" if config.eval_only(args) else f" before any checkpoint in {args.output_dir}")
    if dist.is_main_process():
        print(line, file=sys.stderr)
    raise SystemExit(130)


def run(args, train_one_epoch, make_optimizer, evaluate=None, prepare_model=None, after_epoch=None,
        build_train_set=None):
    """`train`, where Ctrl-C ends the run in one line with exit status 130 (stop_interrupted)."""
    try:
        return train(args, train_one_epoch, make_optimizer, evaluate, prepare_model, after_epoch, build_train_set)
    except KeyboardInterrupt:
        stop_interrupted(args)


def train(args, train_one_epoch, make_optimizer, evaluate=None, prepare_model=None, after_epoch=None,
          build_train_set=None):
    """Train (or with --eval only evaluate) as configured by `args`; returns the last stats.

    train_one_epoch(model=, data_loader=, optimizer=, device=, epoch=, loss_scaler=, args=, log_writer=,
    augment=) -> dict of train stats. make_optimizer(model, args) builds the optimiser over the model on its
    device. evaluate(data_loader, model, device, args) -> dict with acc1 / acc5 / mean_class_acc / loss
    (classification only; --eval --save_scores uses evaluation.evaluate_and_save, one pass for both).
    prepare_model(model) adapts the built model before it moves to the device (e.g. freezing).
    after_epoch(model=, epoch=, device=, log_writer=, loader_val=) runs on every rank after each epoch's
    evaluation with the model without DDP (e.g. a kNN monitor, pictures for TensorBoard; log_writer is None
    but on rank 0) and returns a dict added to the epoch's log.txt line. build_train_set(args, device) gives the
    training set instead of the config's feeder (e.g. a frozen encoder's features, main_detect.py).
    """
    device = setup(args, training=not config.eval_only(args))
    earlier = earlier_run(args) if dist.is_main_process() and not config.eval_only(args) else []
    settings = argparse.Namespace(**vars(args))  # written to config.yaml once the inputs are checked
    dataset_train = (build_train_set(args, device) if build_train_set
                     else data.build_dataset(args, 'train_feeder_args'))
    dataset_val = data.build_dataset(args, 'val_feeder_args') if evaluate else None
    loader_train, loader_val = data.build_loaders(args, dataset_train, dataset_val)
    augment = data.batch_augmenter(dataset_train) if args.gpu_aug else None
    trained_on = {}  # stored in every checkpoint beside the weights: what the run was trained on (data.splits)
    if dist.is_main_process() and not config.eval_only(args) and hasattr(dataset_train, 'digests'):
        trained_on['train_digests'] = torch.from_numpy(dataset_train.digests())

    model = build_model(args)
    if prepare_model is not None:
        prepare_model(model)
    model.to(device)
    model_without_ddp = model
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"Model {args.model}: {n_parameters:,} trainable parameters ({n_parameters / 1e6:.2f} M)")
    optimizer = make_optimizer(model, args)
    if dist.get_world_size() > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)
    model_eval = model_without_ddp
    if args.compile:
        from torch._inductor import config as inductor_config
        inductor_config.fallback_random = True  # the eager random draws (masking, drop path)
        model, model_eval = torch.compile(model), torch.compile(model_without_ddp)
    loss_scaler = devices.LossScaler(args, device)
    checkpoint = load_model(args, model_without_ddp, optimizer, loss_scaler) or {}
    dist.check_same_resume(bool(checkpoint), args.start_epoch, getattr(args, 'start_step', 0), device)
    best = {'best_acc1': checkpoint.get('best_acc1', 0.), 'best_epoch': checkpoint.get('best_epoch', -1)}

    if config.eval_only(args):
        test_stats = (evaluate_and_save if args.save_scores else evaluate)(loader_val, model_eval, device, args)
        print(f"Accuracy of the network on the {test_stats['num_samples']} test samples: "
              f"top-1 {test_stats['acc1']:.2f}%, top-5 {test_stats['acc5']:.2f}%, "
              f"mean class accuracy {test_stats['mean_class_acc']:.2f}%")
        print(json.dumps({f'test_{k}': v for k, v in test_stats.items()}))
        dist.cleanup()
        return test_stats

    if earlier:
        remove_earlier_run(args, earlier)
    if dist.is_main_process():
        output.atomic_write(Path(args.output_dir) / 'config.yaml', lambda tmp: config.save_config(settings, tmp))
    trim_log(args)
    preemption.install()
    log_writer = SummaryWriter(log_dir=args.log_dir) if dist.is_main_process() else None
    print(f"Start training for {args.epochs} epochs from epoch {args.start_epoch} step {args.start_step}")
    start_time, stats, position = time.time(), {}, checkpoint.get('position')
    for epoch in range(args.start_epoch, args.epochs):
        loader_train.sampler.set_epoch(epoch, skip=(position or {}).get('step', 0) * args.batch_size)
        train_stats = train_one_epoch(model=model, data_loader=loader_train, optimizer=optimizer, device=device,
                                      epoch=epoch, loss_scaler=loss_scaler, args=args, log_writer=log_writer,
                                      augment=augment, position=position)
        position = train_stats.get('position')
        if position is not None:
            save_preempted(args, epoch, position, model_without_ddp, optimizer, loss_scaler, **best, **trained_on)
            stop_preempted(args, log_writer, f"epoch {epoch} step {position['step']}")
        stats = {**{f'train_{k}': v for k, v in train_stats.items()}, 'epoch': epoch, 'n_parameters': n_parameters}
        scalars = {'train/loss': train_stats['loss'], 'train/lr': train_stats['lr'],
                   'perf/samples_per_s': train_stats['samples_per_s'], 'perf/epoch_time_s': train_stats['epoch_time']}
        line = f"Epoch {epoch}: train loss {train_stats['loss']:.4f}, {train_stats['samples_per_s']:.1f} samples/s"
        if evaluate is not None:
            test_stats = evaluate(loader_val, model_eval, device, args)
            if best['best_epoch'] < 0 or test_stats['acc1'] > best['best_acc1']:
                best = {'best_acc1': test_stats['acc1'], 'best_epoch': epoch}
            stats.update({f'test_{k}': v for k, v in test_stats.items()}, **best)
            scalars.update({f'test/{k}': test_stats[k] for k in ('loss', 'acc1', 'acc5', 'mean_class_acc')})
            line += (f"; on the {test_stats['num_samples']} test samples top-1 {test_stats['acc1']:.2f}%, mean class "
                     f"{test_stats['mean_class_acc']:.2f}% (best top-1 {best['best_acc1']:.2f}% at epoch "
                     f"{best['best_epoch']})")
        print(line)
        if after_epoch is not None:
            stats.update(after_epoch(model=model_without_ddp, epoch=epoch, device=device, log_writer=log_writer,
                                     loader_val=loader_val))
        if log_writer is not None:
            for tag, value in scalars.items():
                log_writer.add_scalar(tag, value, epoch)  # TensorBoard's step axis is the epoch, as in log.txt
            log_writer.flush()
        output.log_stats(args, stats)
        save_model(args, epoch, model_without_ddp, optimizer, loss_scaler, **best, **trained_on)
        if epoch + 1 < args.epochs and preemption.requested():
            stop_preempted(args, log_writer, f"the end of epoch {epoch}")
    preemption.restore()
    if log_writer is not None:
        log_writer.close()
    print(f"Training time {time.strftime('%H:%M:%S', time.gmtime(time.time() - start_time))}")
    output.release_output_dirs()
    dist.cleanup()
    return stats
