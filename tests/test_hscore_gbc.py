import importlib

import numpy as np
import pytest
import torch
from conftest import classification_data
from reference import reference_gbc, reference_hscore, reference_hscore_shrinkage, reference_ledoit_wolf

from lightning_tx.functional import class_statistics, gbc, hscore, ledoit_wolf_shrinkage


@pytest.mark.parametrize(("n", "d", "c", "scale", "offset"), [(600, 12, 3, 1, 0), (2000, 40, 8, 300, 50)])
def test_hscore_matches_reference(n, d, c, scale, offset):
    features, labels = classification_data(n, d, c, scale=scale, offset=offset)
    expected = reference_hscore(features.numpy(), labels.numpy())
    assert float(hscore(features, labels)) == pytest.approx(expected, rel=1e-8)


def test_hscore_is_bounded_by_classes_minus_one():
    features, labels = classification_data(500, 10, 4)
    assert 0 < float(hscore(features, labels)) <= 3 + 1e-9


@pytest.mark.parametrize(("n", "d", "offset"), [(300, 10, 0.0), (40, 60, 0.0), (400, 16, 50.0)])
def test_ledoit_wolf_shrinkage_matches_reference(n, d, offset):
    features, labels = classification_data(n, d, 3, offset=offset)
    stats = class_statistics(features, labels, 3, with_gram=True, with_fourth_moments=True)
    expected = reference_ledoit_wolf(features.numpy())
    assert float(ledoit_wolf_shrinkage(stats)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("n", "d"), [(500, 12), (50, 80)])
def test_shrinkage_hscore_matches_reference(n, d):
    features, labels = classification_data(n, d, 4, seed=4)
    expected = reference_hscore_shrinkage(features.numpy(), labels.numpy())
    assert float(hscore(features, labels, shrinkage=True)) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("gaussian_type", ["diagonal", "spherical"])
@pytest.mark.parametrize(("scale", "offset"), [(1.0, 0.0), (300.0, 50.0)])
def test_gbc_matches_reference(gaussian_type, scale, offset):
    features, labels = classification_data(900, 6, 5, scale=scale, offset=offset)
    expected = reference_gbc(features.numpy(), labels.numpy(), spherical=gaussian_type == "spherical")
    assert float(gbc(features, labels, gaussian_type=gaussian_type)) == pytest.approx(expected, rel=1e-7)


def test_gbc_closed_form_two_gaussians():
    """Two classes, unit variance, means 2 apart in one of D dims: D_B = 4/8, GBC = -2 e^-0.5."""
    n = 200_000
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    features = torch.randn(n, 3, generator=g, dtype=torch.float64)
    features[:, 0] += 2.0 * labels
    assert float(gbc(features, labels)) == pytest.approx(-2 * np.exp(-0.5), rel=2e-2)


def test_scores_follow_separability():
    features, labels = classification_data(800, 8, 4)
    shuffled = labels[torch.randperm(800)]
    assert float(hscore(features, labels)) > float(hscore(features, shuffled))
    assert float(gbc(features, labels)) > float(gbc(features, shuffled))


def test_errors():
    with pytest.raises(ValueError, match="at least 2 classes"):
        hscore(torch.randn(10, 3), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="gaussian_type"):
        gbc(torch.randn(10, 3), torch.arange(10) % 2, gaussian_type="full")
    with pytest.raises(ValueError, match="NaN or Inf"):
        gbc(torch.tensor([[1.0], [float("inf")]]), torch.tensor([0, 1]))


@pytest.mark.parametrize("shrinkage", [False, True])
@pytest.mark.parametrize(("offset", "path"), [(0.0, "gram"), (1e3, "covariance")])
def test_both_solution_paths_match_the_reference(shrinkage, offset, path, monkeypatch):
    """H-score reads LogME's eigendecomposition of the Gram matrix (a rank-one downdate) unless
    the mean lies far out in units of the spread, where it decomposes the covariance: both
    paths agree with the reference, and the guard picks the expected one."""
    module = importlib.import_module("lightning_tx.functional.hscore")  # the package exports a function of that name
    features, labels = classification_data(2000, 40, 8, offset=offset)
    taken = []
    fast = module._trace_of_inverse_times_from_gram
    monkeypatch.setattr(module, "_trace_of_inverse_times_from_gram",
                        lambda *a: taken.append(r := fast(*a)) or r)  # fmt: skip
    value = float(hscore(features, labels, shrinkage=shrinkage))
    reference = reference_hscore_shrinkage if shrinkage else reference_hscore
    assert value == pytest.approx(reference(features.numpy(), labels.numpy()), rel=1e-5 if offset else 1e-10)
    assert (taken[0] is not None) == (path == "gram")


@pytest.mark.parametrize(
    ("estimator", "offset"),
    [
        ("hscore", 1e7),
        ("halpha", 1e4),  # the fourth moments cancel twice the digits the covariance does
        ("gbc", 1e7),
        ("logme_standardized", 1e7),
    ],
)
def test_offsets_beyond_float64_resolution_raise_instead_of_scoring_round_off(estimator, offset):
    from lightning_tx.functional import UndefinedScore, logme

    scores = {
        "hscore": lambda f, y: hscore(f, y),
        "halpha": lambda f, y: hscore(f, y, shrinkage=True),
        "gbc": lambda f, y: gbc(f, y),
        "logme_standardized": lambda f, y: logme(f, y, standardize=True),
    }
    features, labels = classification_data(500, 8, 3)
    exact = float(scores[estimator](features, labels))
    # an offset the estimators still resolve gives the offset-free value (all four are shift-invariant)
    assert float(scores[estimator](features + offset / 1e3, labels)) == pytest.approx(exact, rel=1e-3)
    with pytest.raises(UndefinedScore, match="offset"):
        scores[estimator](features + offset, labels)


def test_standardized_logme_drops_a_dimension_whose_variance_is_round_off():
    from lightning_tx.functional import logme

    features, labels = classification_data(500, 8, 3)
    unresolved = 1e9 + 1e-6 * torch.randn(500, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with_it = logme(torch.cat([features, unresolved], 1), labels, standardize=True)
    assert float(with_it) == pytest.approx(float(logme(features, labels, standardize=True)), rel=1e-12)
