"""Mean class accuracy: the per-class top-1 accuracy averaged over the classes that have a test sample."""
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from util.scores import class_accuracy, mean_class_accuracy


def one_hot_logits(predictions, num_classes):
    return np.eye(num_classes, dtype=np.float32)[predictions]


def test_known_answer_with_a_class_without_test_sample():
    # class 0: 4 samples, 3 right; class 1: 1 sample, wrong; class 2: no sample (but predicted once);
    # class 3: 2 samples, both right. Top-1 = 5 / 7; mean class = (75 + 0 + 100) / 3.
    labels = np.array([0, 0, 0, 0, 1, 3, 3])
    predictions = np.array([0, 0, 0, 2, 0, 3, 3])
    accuracy, counts = class_accuracy(predictions, labels, 4)
    assert counts.tolist() == [4, 1, 0, 2]
    assert accuracy[[0, 1, 3]].tolist() == [75.0, 0.0, 100.0] and np.isnan(accuracy[2])
    assert mean_class_accuracy(one_hot_logits(predictions, 4), labels) == pytest.approx(175 / 3)


def test_equals_scikit_learn_balanced_accuracy():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(200, 9)), rng.integers(0, 9, 200)
    expected = 100 * balanced_accuracy_score(labels, logits.argmax(1))
    assert mean_class_accuracy(logits, labels) == pytest.approx(expected, abs=1e-9)
