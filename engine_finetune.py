"""Classification epoch (linear probe and fine-tuning) and the final evaluation after the last epoch (per-class
accuracy, scores, confusion matrix); the test-set evaluation itself is util/evaluation.py."""
import numpy as np

from util import engine, figures
from util.evaluation import action_names, predict, write_test_outputs


def train_one_epoch(model, criterion, data_loader, optimizer, device, epoch, loss_scaler, args, log_writer=None,
                    augment=None, position=None):
    """One epoch of `criterion(model(samples), labels)` over (samples (N, 3, T, 25, 2), labels, index) batches."""
    def compute_loss(samples, targets):
        return criterion(model(samples), targets)

    return engine.train_one_epoch(model, compute_loss, data_loader, optimizer, device, epoch, loss_scaler, args,
                                  log_writer, augment, position)


class FinalEvaluation:
    """The runner's after_epoch hook of linear probe and fine-tuning: after the last epoch, one prediction pass
    over the test set for write_test_outputs (per_class.csv, scores.npz) and the confusion matrix with action
    names in TensorBoard ('confusion'; not when the names are unknown)."""

    def __init__(self, args):
        self.args, self.names = args, action_names(args)
        if self.names is None:
            print(f"No confusion matrix at the end: no action names for {args.val_feeder_args.get('data_path')} "
                  f"with {args.model_args.get('num_classes')} classes")

    def __call__(self, model, epoch, device, log_writer, loader_val, **_):
        if epoch + 1 < self.args.epochs:
            return {}
        logits, labels = predict(loader_val, model, device, self.args)
        matrix = write_test_outputs(self.args, loader_val.dataset, logits, labels, self.names)
        if log_writer is not None and self.names is not None:
            title = f"epoch {epoch}: top-1 {100 * np.trace(matrix) / matrix.sum():.1f}% on {len(labels)} test samples"
            log_writer.add_figure('confusion', figures.confusion_figure(matrix, self.names, title), epoch)
        return {}
