"""The cross-validated softmax probe against refitting each fold alone with a general-purpose
optimiser (tests/reference.py), and the folds it holds out (in the scoring engine:
tests/test_voice_probe.py)."""

import pytest
import torch
from conftest import classification_data
from reference import reference_logistic_probe

from lightning_tx.functional import UndefinedScore, logistic_probe_accuracy, ridge_probe_accuracy
from lightning_tx.functional.logistic_probe import held_out_folds
from lightning_tx.functional.probe import zscored_samples


@pytest.mark.parametrize(("m", "d", "c", "voices"), [(72, 6, 3, 6), (60, 25, 5, 4)])
def test_matches_refitting_without_each_speaker(m, d, c, voices):
    features, labels = classification_data(m, d, c, seed=5, scale=20.0, offset=3.0)
    features = features * torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    speakers = torch.arange(m) % voices  # every class spoken by several voices
    expected = reference_logistic_probe(features.numpy(), labels.numpy(), speakers.numpy(), c)
    got = logistic_probe_accuracy(features, labels, speakers, num_classes=c, tolerance=1e-8)
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_without_speakers_the_folds_are_dealt_class_by_class():
    features, labels = classification_data(53, 5, 4, seed=2)
    fold_of, scored = held_out_folds(zscored_samples(features), labels, None, 4, max_folds=10)
    assert sorted(set(fold_of.tolist())) == list(range(10)) and bool(scored.all())
    for c in range(4):  # each class spread over the folds as evenly as it can be
        counts = torch.bincount(fold_of[labels == c], minlength=10)
        assert int(counts.max() - counts.min()) <= 1
    expected = reference_logistic_probe(features.numpy(), labels.numpy(), fold_of.numpy(), 4)
    assert float(logistic_probe_accuracy(features, labels, tolerance=1e-8)) == pytest.approx(expected, abs=1e-12)


def test_the_score_does_not_depend_on_the_order_of_the_samples():
    features, labels = classification_data(47, 6, 3, seed=9)
    order = torch.randperm(47, generator=torch.Generator().manual_seed(1))
    for speakers in (None, torch.arange(47) % 6):
        shuffled = None if speakers is None else speakers[order]
        base = float(logistic_probe_accuracy(features, labels, speakers))
        again = float(logistic_probe_accuracy(features[order], labels[order], shuffled))
        assert again == pytest.approx(base, abs=1e-12)


def test_speakers_beyond_max_folds_are_merged_and_lone_classes_not_scored():
    features, labels = classification_data(90, 4, 3, seed=3)
    speakers = torch.arange(90) % 15
    speakers[labels == 2] = 99  # class 2: one speaker alone, so it cannot be predicted without them
    fold_of, scored = held_out_folds(zscored_samples(features), labels, speakers, 3, max_folds=4)
    assert sorted(set(fold_of.tolist())) == list(range(4))
    assert torch.equal(scored, labels != 2)
    for speaker in speakers.unique():  # a speaker's samples all in one fold
        assert len(set(fold_of[speakers == speaker].tolist())) == 1
    expected = reference_logistic_probe(features.numpy(), labels.numpy(), fold_of.numpy(), 3, scored.numpy())
    got = logistic_probe_accuracy(features, labels, speakers, max_folds=4, tolerance=1e-8)
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_a_class_a_fold_lacks_is_not_predicted_in_it():
    """Class 3 has one sample, so the fold that holds it out cannot learn it: that fold fits
    the other classes (no logit for it, which would have no finite optimum)."""
    features, labels = classification_data(41, 5, 3, seed=4)
    labels = torch.cat([labels[:40], torch.tensor([3])])
    fold_of, _ = held_out_folds(zscored_samples(features), labels, None, 4, max_folds=10)
    expected = reference_logistic_probe(features.numpy(), labels.numpy(), fold_of.numpy(), 4)
    got = logistic_probe_accuracy(features, labels, num_classes=4, tolerance=1e-8)
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_a_fit_stopped_before_the_tolerance_says_so():
    features, labels = classification_data(60, 6, 3, seed=7)
    with pytest.warns(RuntimeWarning, match="at most 2 iterations"):
        logistic_probe_accuracy(features, labels, max_iterations=2)


def test_few_dimensions_that_separate_the_classes_but_not_by_least_squares():
    """Five classes on a line, at 0, 1, 2, 3 and 10: softmax separates them all; a
    least-squares fit of one-hot targets on one feature cannot give the middle classes the
    largest output, so the ridge probe loses them."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 5
    position = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0], dtype=torch.float64)[labels]
    features = (position + 0.05 * torch.randn(200, generator=g, dtype=torch.float64)).unsqueeze(1)
    assert float(ridge_probe_accuracy(features, labels)) <= 0.6
    assert float(logistic_probe_accuracy(features, labels)) >= 0.95


def test_voices_the_fit_has_not_heard():
    """Each voice says each class its own way: held out by utterance, near perfect; held out
    by voice, near chance."""
    g = torch.Generator().manual_seed(0)
    voices, classes, repeats, dim = 6, 3, 4, 40
    codes = torch.randn(voices, classes, dim, generator=g, dtype=torch.float64)
    speakers = torch.arange(voices).repeat_interleave(classes * repeats)
    labels = torch.arange(classes).repeat_interleave(repeats).repeat(voices)
    features = codes[speakers, labels] + 0.05 * torch.randn(len(labels), dim, generator=g, dtype=torch.float64)
    assert float(logistic_probe_accuracy(features, labels)) > 0.95
    assert float(logistic_probe_accuracy(features, labels, speakers)) < 0.6


def test_ignores_scale_and_offset():
    features, labels = classification_data(60, 6, 3, seed=7)
    speakers = torch.arange(60) % 5
    base = float(logistic_probe_accuracy(features, labels, speakers))
    scaled = features * torch.arange(1.0, 7.0, dtype=torch.float64) - 50.0
    assert float(logistic_probe_accuracy(scaled, labels, speakers)) == pytest.approx(base, abs=1e-12)


def test_undefined_and_bad_inputs():
    with pytest.raises(UndefinedScore, match="constant"):
        logistic_probe_accuracy(torch.ones(10, 3), torch.arange(10) % 2)
    with pytest.raises(UndefinedScore, match="at least 3 samples"):
        logistic_probe_accuracy(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="speakers"):
        logistic_probe_accuracy(torch.randn(6, 3), torch.arange(6) % 2, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="max_folds"):
        logistic_probe_accuracy(torch.randn(6, 3), torch.arange(6) % 2, max_folds=1)
