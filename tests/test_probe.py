"""The leave-one-out ridge probe against refitting it M times (tests/reference.py)."""

import pytest
import torch
from conftest import classification_data
from reference import reference_ridge_probe

from lightning_tx.functional import UndefinedScore, ridge_probe_accuracy
from lightning_tx.functional.probe import RELATIVE_PENALTIES
from lightning_tx.scoring import LayerScorer


@pytest.mark.parametrize(("m", "d", "c", "scale", "offset"), [(60, 5, 3, 1.0, 0.0), (40, 70, 4, 30.0, -5.0)])
def test_matches_refitting_without_each_sample(m, d, c, scale, offset):
    features, labels = classification_data(m, d, c, seed=3, scale=scale, offset=offset)
    features = features * torch.linspace(0.5, 2.0, d, dtype=torch.float64)  # dimensions of different scales
    expected = reference_ridge_probe(features.numpy(), labels.numpy(), c, RELATIVE_PENALTIES)
    assert float(ridge_probe_accuracy(features, labels, num_classes=c)) == pytest.approx(expected, abs=1e-12)


def test_follows_separability_and_ignores_scale():
    features, labels = classification_data(90, 6, 3)
    separable = float(ridge_probe_accuracy(features, labels))
    shuffled = float(ridge_probe_accuracy(features, labels[torch.randperm(90)]))
    assert separable > shuffled
    rescaled = float(ridge_probe_accuracy(features * torch.arange(1.0, 7.0) + 100.0, labels))
    assert rescaled == pytest.approx(separable, abs=1e-12)


def test_undefined_cases():
    with pytest.raises(UndefinedScore, match="constant"):
        ridge_probe_accuracy(torch.ones(10, 3), torch.arange(10) % 2)
    with pytest.raises(UndefinedScore, match="at least 3 samples"):
        ridge_probe_accuracy(torch.randn(2, 3), torch.tensor([0, 1]))


def test_pooled_probe_in_the_engine_scores_utterance_means():
    """The engine's pooled_probe is the probe of the mean-pooled utterances."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(24, 7, 5, generator=g, dtype=torch.float64)
    labels = torch.arange(24) % 3
    hidden[:, :, 0] += labels.unsqueeze(1)
    mask = torch.ones(24, 7, dtype=torch.bool)
    mask[::2, 5:] = False
    scorer = LayerScorer([5], ["pooled_probe"], 3)
    scorer.update([hidden], mask, labels.unsqueeze(1).expand(-1, 7))
    pooled = torch.stack([hidden[i][mask[i]].mean(0) for i in range(24)])
    assert scorer.compute()["pooled_probe"][0] == pytest.approx(float(ridge_probe_accuracy(pooled, labels)), abs=1e-12)
