import math

import numpy as np
import pytest
import torch
from conftest import classification_data
from reference import max_log_evidence, reference_logme

from lightning_tx.functional import logme, logme_from_statistics, logme_statistics


def _reference_score(f, y, regression=False):
    return float(np.mean([e for e, _, _ in reference_logme(f, y, regression)]))


@pytest.mark.parametrize(
    ("n", "d", "c", "scale", "offset"),
    [(500, 16, 3, 1.0, 0.0), (2000, 64, 10, 1.0, 0.0), (1500, 32, 5, 300.0, 50.0), (400, 20, 2, 1e-3, 0.0)],
)
def test_matches_reference_when_n_exceeds_d(n, d, c, scale, offset):
    features, labels = classification_data(n, d, c, scale=scale, offset=offset)
    ours = float(logme(features, labels))
    expected = _reference_score(features.numpy(), labels.numpy())
    assert ours == pytest.approx(expected, rel=1e-6)


def test_float32_input_and_num_classes():
    features, labels = classification_data(800, 24, 4)
    ours = logme(features.float(), labels, num_classes=4)
    assert ours.dtype == torch.float64
    expected = _reference_score(features.float().double().numpy(), labels.numpy())
    assert float(ours) == pytest.approx(expected, rel=1e-6)


def test_regression_matches_reference():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(600, 12, generator=g, dtype=torch.float64)
    targets = features[:, :3] @ torch.randn(3, 2, generator=g, dtype=torch.float64)
    targets = targets + 0.3 * torch.randn(600, 2, generator=g, dtype=torch.float64)
    ours = float(logme(features, targets, regression=True))
    assert ours == pytest.approx(_reference_score(features.numpy(), targets.numpy(), True), rel=1e-6)


@pytest.mark.parametrize(("n", "d"), [(40, 64), (64, 64), (30, 200)])
def test_rank_deficient_adds_the_dropped_log_alpha_term(n, d):
    """N <= D: the reference drops -(D-k)/2 log(alpha) from each column's evidence."""
    features, labels = classification_data(n, d, 3, seed=1)
    ours = logme_from_statistics(*logme_statistics(features, labels, num_classes=3), reduction="none")
    for c, (ref_evidence, alpha, k) in enumerate(reference_logme(features.numpy(), labels.numpy())):
        corrected = ref_evidence - (d - k) / 2 * math.log(alpha) / n
        assert float(ours[c]) == pytest.approx(corrected, rel=1e-6)


@pytest.mark.parametrize(("n", "d", "duplicate"), [(300, 10, False), (25, 40, False), (300, 10, True)])
def test_converged_solver_maximises_the_exact_evidence(n, d, duplicate):
    """Iterated to convergence (and without the reference's 1e-5), our value is the maximum
    over (alpha, beta) of the evidence computed from its definition, also for N < D and for
    duplicated (rank-deficient) dimensions."""
    features, labels = classification_data(n, d, 2, seed=2)
    if duplicate:
        features = torch.cat([features, features[:, :4]], dim=1)
    ours = logme_from_statistics(
        *logme_statistics(features, labels, num_classes=2),
        max_iter=10_000,
        tol=1e-13,
        epsilon=0.0,
        reduction="none",
    )
    for c in range(2):
        expected = max_log_evidence(features.numpy(), (labels.numpy() == c).astype(np.float64))
        assert float(ours[c]) == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_statistics_are_additive():
    features, labels = classification_data(1000, 16, 4)
    parts = [
        logme_statistics(f, y, num_classes=4) for f, y in zip(features.split(137), labels.split(137), strict=False)
    ]
    summed = [sum(p[i] for p in parts) for i in range(4)]
    assert float(logme_from_statistics(*summed)) == pytest.approx(float(logme(features, labels)), rel=1e-12)


def test_informative_features_score_higher():
    features, labels = classification_data(1000, 16, 4)
    shuffled = labels[torch.randperm(1000)]
    assert float(logme(features, labels)) > float(logme(features, shuffled))


@pytest.mark.parametrize(
    ("features", "labels", "kwargs", "message"),
    [
        (torch.full((10, 3), float("nan")), torch.zeros(10, dtype=torch.long), {}, "NaN or Inf"),
        (torch.randn(10, 3), torch.arange(10) % 2, {"num_classes": 1}, r"\[0, 1\] but num_classes=1"),
        (torch.randn(10, 3), torch.arange(10) % 2 - 1, {}, "class ids"),
        (torch.randn(10, 3), torch.arange(10) % 2, {"num_classes": 3}, "classes \\[2\\] of num_classes=3"),
        (torch.randn(10, 3), torch.zeros(10, dtype=torch.long), {}, "at least 2 classes"),
        (torch.randn(10, 3), torch.zeros(9, dtype=torch.long), {}, "10 frames but `targets` has 9"),
        (torch.randn(10), torch.zeros(10, dtype=torch.long), {}, r"shape \[N, D\]"),
        (torch.randn(10, 3), torch.zeros(10), {}, "integer class ids"),
        (torch.randn(1, 3), torch.zeros(1, dtype=torch.long), {}, "at least 2 frames"),
    ],
)
def test_bad_input_raises_clear_error(features, labels, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        logme(features, labels, **kwargs)
