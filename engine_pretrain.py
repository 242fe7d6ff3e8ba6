"""Pre-training epoch: the masked motion prediction loss of MAMP (or the joint reconstruction loss of MAE), and
the monitor that shows what the encoder learns (kNN accuracy, the masking figure)."""
import torch

from util import data, dist, engine, figures, knn


def train_one_epoch(model, data_loader, optimizer, device, epoch, loss_scaler, args, log_writer=None,
                    augment=None, position=None):
    """One epoch over (samples (N, 3, T, 25, 2), labels, index) batches; the labels are not used."""
    def compute_loss(samples, targets):
        loss, _, _ = model(samples, mask_ratio=args.mask_ratio, motion_stride=args.motion_stride,
                           motion_aware_tau=args.motion_aware_tau)
        return loss

    return engine.train_one_epoch(model, compute_loss, data_loader, optimizer, device, epoch, loss_scaler, args,
                                  log_writer, augment, position)


class Monitor:
    """The runner's after_epoch hook: every args.knn_every epochs and after the last, the kNN accuracy of the
    encoder (log.txt knn_acc1 / knn_acc5 / knn_mean_class_acc / knn_bank / knn_time, TensorBoard knn/*, with the
    monitor's name, which gives its bank, as the text knn/bank); every args.vis_every epochs and after the last,
    the masking figure of the first test sample (centre crop) to TensorBoard ('masking'). The tuning
    (main_tune.py) has no masking figure: no vis_every."""

    def __init__(self, args):
        self.args, self.knn, self.sample = args, None, None
        self.vis_every = getattr(args, 'vis_every', 0)

    def due(self, every, epoch):
        return every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == self.args.epochs)

    def knn_name(self):
        """The kNN monitor's name (print line and TensorBoard text), with its bank beside main_knn.py's, which
        is the whole training set: a smaller bank gives a lower accuracy on the same encoder."""
        bank, total = len(self.knn.bank_index), len(self.knn.bank)
        if bank < total:
            return f"kNN monitor (bank of {bank} training samples; main_knn.py uses all {total})"
        return f"kNN monitor (bank of all {total} training samples, as main_knn.py)"

    def __call__(self, model, epoch, device, log_writer, **_):
        args, stats = self.args, {}
        if self.due(args.knn_every, epoch):
            self.knn = self.knn or knn.KNN(args)
            name = self.knn_name()
            stats = {f'knn_{k}': v for k, v in self.knn(model, device, name).items()}
            if log_writer is not None:  # the same tags whatever the bank, so that runs overlay; the bank in the text
                for key in ('acc1', 'acc5', 'mean_class_acc', 'bank', 'time'):
                    log_writer.add_scalar(f'knn/{key}', stats[f'knn_{key}'], epoch)
                log_writer.add_text('knn/bank', name, epoch)
        if self.due(self.vis_every, epoch) and dist.is_main_process():
            if self.sample is None:
                key, _, test = knn.feeder_settings(args)
                self.sample = torch.from_numpy(data.build_dataset(args, key, **test)[0][0])[None]
            x = self.sample.to(device)
            fig = figures.masking_figure(model, x, args.mask_ratio, args.motion_aware_tau, args.motion_stride,
                                         f'epoch {epoch}: test sample 0')
            log_writer.add_figure('masking', fig, epoch)
        return stats
