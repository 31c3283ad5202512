import pytest
import torch
from conftest import classification_data
from torchmetrics import MetricCollection

from lightning_tx.functional import flatten_frames, gbc, hscore, logme
from lightning_tx.metrics import GBC, HScore, LogME, SlicedWasserstein

FUNCTIONAL = {
    "logme": (lambda d, c: LogME(d, c), lambda f, y, c: logme(f, y, num_classes=c)),
    "hscore": (lambda d, c: HScore(d, c), lambda f, y, c: hscore(f, y, num_classes=c)),
    "halpha": (
        lambda d, c: HScore(d, c, shrinkage=True),
        lambda f, y, c: hscore(f, y, num_classes=c, shrinkage=True),
    ),
    "gbc": (lambda d, c: GBC(d, c), lambda f, y, c: gbc(f, y, num_classes=c)),
}


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_streamed_batches_equal_the_functional(name):
    make, functional = FUNCTIONAL[name]
    features, labels = classification_data(1200, 16, 5)
    metric = make(16, 5)
    for f, y in zip(features.split(250), labels.split(250), strict=False):
        metric.update(f.float(), y)
    expected = functional(features.float().double(), labels, 5)
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_padded_utterances_with_lengths(name):
    make, functional = FUNCTIONAL[name]
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(6, 40, 8, generator=g)
    lengths = torch.tensor([40, 33, 12, 40, 5, 27])
    utterance_labels = torch.tensor([0, 1, 2, 0, 1, 2])
    hidden += utterance_labels.view(6, 1, 1) * 0.5
    metric = make(8, 3)
    metric.update(hidden, utterance_labels, lengths=lengths)
    frames = flatten_frames(hidden, lengths=lengths)
    frame_labels = torch.repeat_interleave(utterance_labels, lengths)
    assert float(metric.compute()) == pytest.approx(float(functional(frames, frame_labels, 3)), rel=1e-10)


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_merge_state_equals_one_metric(name):
    make, _ = FUNCTIONAL[name]
    features, labels = classification_data(900, 8, 3)
    whole, left, right = make(8, 3), make(8, 3), make(8, 3)
    whole.update(features, labels)
    left.update(features[:200], labels[:200])
    right.update(features[200:], labels[200:])
    left.merge_state(right)
    assert float(left.compute()) == pytest.approx(float(whole.compute()), rel=1e-10)


def test_forward_returns_batch_value_and_accumulates():
    features, labels = classification_data(600, 8, 3)
    metric = LogME(8, 3)
    batch_value = metric(features[:300], labels[:300])
    assert float(batch_value) == pytest.approx(float(logme(features[:300], labels[:300], num_classes=3)))
    metric(features[300:], labels[300:])
    assert float(metric.compute()) == pytest.approx(float(logme(features, labels, num_classes=3)), rel=1e-10)


def test_state_size_does_not_grow_with_frames():
    metric = LogME(8, 3)
    features, labels = classification_data(3000, 8, 3)
    sizes = []
    for f, y in zip(features.split(1000), labels.split(1000), strict=False):
        metric.update(f, y)
        sizes.append(sum(v.numel() for v in metric.metric_state.values()))
    assert sizes[0] == sizes[-1] == 8 * 8 + 8 * 3 + 3 + 1


def test_metric_collection_scores_one_layer_with_every_estimator():
    features, labels = classification_data(500, 8, 3)
    collection = MetricCollection({"logme": LogME(8, 3), "hscore": HScore(8, 3), "gbc": GBC(8, 3)})
    collection.update(features, labels)
    results = collection.compute()
    assert set(results) == {"logme", "hscore", "gbc"}


def test_regression_metric():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(400, 6, generator=g, dtype=torch.float64)
    targets = features[:, :2] + 0.1 * torch.randn(400, 2, generator=g, dtype=torch.float64)
    metric = LogME(6, num_targets=2, regression=True)
    metric.update(features[:150], targets[:150])
    metric.update(features[150:], targets[150:])
    assert float(metric.compute()) == pytest.approx(float(logme(features, targets, regression=True)), rel=1e-10)


@pytest.mark.parametrize("make", [lambda: LogME(4, 3), lambda: HScore(4, 3), lambda: GBC(4, 3)])
def test_metric_errors(make):
    metric = make()
    with pytest.raises(ValueError, match="at least 2 frames"):
        metric.compute()
    with pytest.raises(ValueError, match="num_features=4"):
        metric.update(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\] but num_classes=3"):
        metric.update(torch.randn(5, 4), torch.arange(5) % 4)
    with pytest.raises(ValueError, match="NaN or Inf"):
        metric.update(torch.full((5, 4), float("nan")), torch.zeros(5, dtype=torch.long))
    metric.update(torch.randn(6, 4), torch.arange(6) % 2)
    with pytest.raises(ValueError, match=r"classes \[2\] of num_classes=3 have no frames"):
        metric.compute()


def test_constructor_errors():
    with pytest.raises(ValueError, match="num_classes"):
        LogME(4, 1)
    with pytest.raises(ValueError, match="num_features"):
        HScore(0, 3)
    with pytest.raises(ValueError, match="num_targets"):
        LogME(4, regression=True)
    with pytest.raises(ValueError, match="max_samples"):
        SlicedWasserstein(4, max_samples=1)
