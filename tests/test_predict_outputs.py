"""util.evaluation.predict: per-sample logits and labels in the dataset's order, whatever the loader's order."""
import argparse

import pytest
import torch
from torch.utils.data import DataLoader

from util import evaluation
from feeder.feeder_ntu import Feeder
from model_transformer import SkeletonTransformer
from train_fixtures import TINY_ENCODER, TINY_WINDOW, write_npz


@pytest.fixture(scope='module')
def test_set(tmp_path_factory):
    path = write_npz(tmp_path_factory.mktemp('predict') / 'data.npz', num_test=10)
    return Feeder(str(path), split='test', p_interval=[0.95], window_size=TINY_WINDOW)


def test_predict_rows_follow_the_dataset_and_match_evaluate(test_set):
    torch.manual_seed(0)
    model = SkeletonTransformer(num_classes=60, protocol='finetune', **TINY_ENCODER).eval()
    args = argparse.Namespace(amp='none', dist_eval=False, model_args={'num_classes': 60})
    device = torch.device('cpu')
    reversed_loader = DataLoader(test_set, batch_size=3, sampler=list(reversed(range(len(test_set)))))
    logits, labels = evaluation.predict(reversed_loader, model, device, args)
    assert logits.shape == (10, 60) and labels.tolist() == [i % 4 for i in range(10)]
    with torch.no_grad():
        for i in (0, 7):
            sample = torch.as_tensor(test_set[i][0])[None]
            torch.testing.assert_close(logits[i], model(sample)[0], rtol=0, atol=1e-6)
    stats = evaluation.evaluate(DataLoader(test_set, batch_size=4), model, device, args)
    assert stats['acc1'] == pytest.approx(100 * (logits.argmax(1) == labels).float().mean().item())
