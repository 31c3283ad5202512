"""The leave-one-speaker-out voice probe against refitting it once per speaker, with the
evidence's penalty found by a numerical optimiser (tests/reference.py)."""

import csv

import numpy as np
import pytest
import torch
from conftest import classification_data
from reference import reference_shared_evidence_penalty, reference_voice_probe

from lightning_tx.data import SpeechDataModule
from lightning_tx.encoders import Filterbank
from lightning_tx.functional import (
    UndefinedScore,
    evidence_ridge_penalty,
    logistic_probe_accuracy,
    ridge_probe_accuracy,
    voice_probe_accuracy,
)
from lightning_tx.metrics import LabelledSampleMetric, get_estimator
from lightning_tx.scoring import EncoderFrames, LayerScorer, TaskLabels
from lightning_tx.scoring.frames import speaker_ids


def _zscored(features):
    x = features.to(torch.float64)
    return (x - x.mean(0)) / x.std(0, correction=0)


@pytest.mark.parametrize(("m", "d", "c"), [(60, 5, 3), (40, 70, 4)])
def test_the_penalty_maximises_the_evidence(m, d, c):
    features, labels = classification_data(m, d, c, seed=4)
    x = _zscored(features)
    targets = torch.nn.functional.one_hot(labels, c).to(torch.float64)
    expected = reference_shared_evidence_penalty(x.numpy(), targets.numpy())
    penalty = float(evidence_ridge_penalty(x, targets - targets.mean(0)))
    assert penalty == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("m", "d", "c", "voices"), [(72, 6, 3, 6), (48, 60, 4, 4)])
def test_matches_refitting_without_each_speaker(m, d, c, voices):
    features, labels = classification_data(m, d, c, seed=5, scale=20.0, offset=3.0)
    features = features * torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    speakers = torch.arange(m) % voices  # every class spoken by several voices
    x = _zscored(features)
    targets = torch.nn.functional.one_hot(labels, c).to(torch.float64)
    penalty = float(evidence_ridge_penalty(x, targets - targets.mean(0)))
    expected = reference_voice_probe(features.numpy(), labels.numpy(), speakers.numpy(), c, penalty)
    assert float(voice_probe_accuracy(features, labels, speakers, num_classes=c)) == pytest.approx(expected, abs=1e-12)
    loo = reference_voice_probe(features.numpy(), labels.numpy(), None, c, penalty)
    assert float(voice_probe_accuracy(features, labels, None, num_classes=c)) == pytest.approx(loo, abs=1e-12)


def test_more_dimensions_than_samples_take_the_limit_of_no_penalty():
    """Where the centred features span every direction of the samples (100 dimensions, 30
    samples) the evidence can be largest at no penalty; the probe is then the minimum-norm
    interpolator, held out exactly as refitting it without each speaker (or sample) gives."""
    m, d, c = 30, 100, 3
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(m) % c
    features = 0.3 * torch.randn(c, d, generator=g, dtype=torch.float64)[labels]
    features = features + torch.randn(m, d, generator=g, dtype=torch.float64)
    x = _zscored(features)
    targets = torch.nn.functional.one_hot(labels, c).to(torch.float64)
    assert float(evidence_ridge_penalty(x, targets - targets.mean(0))) == 0.0
    speakers = torch.arange(m) % 4
    expected = reference_voice_probe(features.numpy(), labels.numpy(), speakers.numpy(), c, 0.0)
    assert 0.5 < expected < 1  # some held-out samples wrong, some right: the predictions matter
    assert float(voice_probe_accuracy(features, labels, speakers, num_classes=c)) == pytest.approx(expected, abs=1e-12)
    loo = reference_voice_probe(features.numpy(), labels.numpy(), None, c, 0.0)
    assert float(voice_probe_accuracy(features, labels, None, num_classes=c)) == pytest.approx(loo, abs=1e-12)
    # A large encoder on a few-shot task: 768 dimensions, 5 utterances of each of 12 classes
    # by 4 voices, classes well apart. Defined (not ranked last), and every sample right.
    labels = torch.arange(60) % 12
    centres = 3 * torch.randn(12, 768, generator=g, dtype=torch.float64)
    features = centres[labels] + torch.randn(60, 768, generator=g, dtype=torch.float64)
    assert float(voice_probe_accuracy(features, labels, torch.arange(60) // 15)) == 1.0


def test_a_class_only_one_speaker_has_is_not_scored():
    features, labels = classification_data(60, 5, 3, seed=8)
    speakers = torch.arange(60) % 4
    speakers[labels == 2] = 9  # class 2: one speaker alone
    x = _zscored(features)
    targets = torch.nn.functional.one_hot(labels, 3).to(torch.float64)
    penalty = float(evidence_ridge_penalty(x, targets - targets.mean(0)))
    expected = reference_voice_probe(features.numpy(), labels.numpy(), speakers.numpy(), 3, penalty)
    assert float(voice_probe_accuracy(features, labels, speakers)) == pytest.approx(expected, abs=1e-12)


def test_a_speaker_per_class_falls_back_to_leave_one_out():
    """Speaker identification: holding a speaker out would hold its class out, so each sample is left out alone."""
    features, labels = classification_data(40, 8, 4, seed=6)
    by_class = voice_probe_accuracy(features, labels, labels * 7 + 100)
    assert float(by_class) == float(voice_probe_accuracy(features, labels, None))


def test_voices_the_fit_has_not_heard():
    """Features that carry the class only in a speaker's own way: leaving one utterance out
    keeps its speaker in the fit (near perfect); leaving the speaker out does not (chance)."""
    g = torch.Generator().manual_seed(0)
    voices, classes, repeats, dim = 6, 3, 4, 40
    codes = torch.randn(voices, classes, dim, generator=g, dtype=torch.float64)  # each voice's own class codes
    speakers = torch.arange(voices).repeat_interleave(classes * repeats)
    labels = torch.arange(classes).repeat_interleave(repeats).repeat(voices)
    features = codes[speakers, labels] + 0.05 * torch.randn(len(labels), dim, generator=g, dtype=torch.float64)
    assert float(ridge_probe_accuracy(features, labels)) > 0.95
    assert float(voice_probe_accuracy(features, labels)) > 0.95  # leave-one-out without speakers
    assert float(voice_probe_accuracy(features, labels, speakers)) < 0.6


def test_ignores_scale_and_offset():
    features, labels = classification_data(60, 6, 3, seed=7)
    speakers = torch.arange(60) % 5
    base = float(voice_probe_accuracy(features, labels, speakers))
    assert float(voice_probe_accuracy(features * torch.arange(1.0, 7.0) - 50.0, labels, speakers)) == base


def test_features_unrelated_to_the_classes_leave_the_intercept():
    """Where the evidence is largest at an infinite penalty, each held-out prediction is the
    majority class of the training set."""
    labels = torch.tensor([0, 0, 0, 1] * 10)
    features = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = _zscored(features)
    targets = torch.nn.functional.one_hot(labels, 2).to(torch.float64)
    assert torch.isinf(evidence_ridge_penalty(x, targets - targets.mean(0)))
    assert float(voice_probe_accuracy(features, labels, torch.arange(40) % 5)) == 0.75


def test_two_samples_per_class_estimate_what_new_recordings_measure():
    """Speaker identification from two recordings each (10 speakers, 20 dimensions, speakers
    a little apart): leaving a recording out halves its speaker in the fit, which would count
    the class against it (about 0.4 held out against 0.68 on new recordings here). Each class
    weighs in the fold what it weighs in the whole set, so the held-out accuracy is close to
    what the model fitted on all 20 recordings reaches on 50 new ones per speaker."""
    classes, dim = 10, 20
    estimates, on_new_recordings = [], []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        centres = 0.8 * torch.randn(classes, dim, generator=g, dtype=torch.float64)
        labels, new_labels = torch.arange(classes).repeat(2), torch.arange(classes).repeat(50)
        features = centres[labels] + torch.randn(len(labels), dim, generator=g, dtype=torch.float64)
        new = centres[new_labels] + torch.randn(len(new_labels), dim, generator=g, dtype=torch.float64)
        estimates.append(float(voice_probe_accuracy(features, labels)))
        x = features.numpy()
        mean, std = x.mean(0), x.std(0)
        z = (x - mean) / std
        targets = np.eye(classes)[labels.numpy()]
        penalty = reference_shared_evidence_penalty(z, targets)
        weights = np.linalg.solve(z.T @ z + penalty * np.eye(dim), z.T @ (targets - targets.mean(0)))
        predicted = (((new.numpy() - mean) / std) @ weights + targets.mean(0)).argmax(1)
        on_new_recordings.append(float((predicted == new_labels.numpy()).mean()))
    assert np.mean(estimates) == pytest.approx(np.mean(on_new_recordings), abs=0.08)


def test_undefined_and_bad_inputs():
    with pytest.raises(UndefinedScore, match="constant"):
        voice_probe_accuracy(torch.ones(10, 3), torch.arange(10) % 2)
    labels = torch.arange(30) % 3  # features that are the classes: the evidence has no maximum
    with pytest.raises(UndefinedScore, match="grows without bound"):
        voice_probe_accuracy(torch.nn.functional.one_hot(labels, 3).to(torch.float64), labels)
    with pytest.raises(UndefinedScore, match="at least 3 samples"):
        voice_probe_accuracy(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="speakers"):
        voice_probe_accuracy(torch.randn(6, 3), torch.arange(6) % 2, torch.zeros(5, dtype=torch.long))


def test_speaker_ids_are_stable_and_unknown_speakers_are_none():
    first = speaker_ids(["en-01", "es-02", "en-01"])
    assert first.dtype == torch.long and bool((first >= 0).all())
    assert first[0] == first[2] != first[1]
    assert torch.equal(first, speaker_ids(["en-01", "es-02", "en-01"]))
    assert speaker_ids(["en-01", None]) is None and speaker_ids(["", "a"]) is None and speaker_ids(None) is None


@pytest.mark.parametrize(
    ("name", "probe"),
    [("pooled_voice_probe", voice_probe_accuracy), ("pooled_logistic_probe", logistic_probe_accuracy)],
)
def test_pooled_speaker_probes_in_the_engine_hold_out_each_speaker(name, probe):
    """The engine's pooled_voice_probe (pooled_logistic_probe) is that probe of the mean-pooled
    utterances and their speakers, fed over batches of mixed speakers; without speakers, it
    holds out samples alone (in folds)."""
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(30, 6, 5, generator=g, dtype=torch.float64)
    labels = torch.arange(30) % 3
    hidden[:, :, 0] += labels.unsqueeze(1)
    mask = torch.ones(30, 6, dtype=torch.bool)
    mask[::3, 4:] = False
    speakers = speaker_ids([f"voice-{i % 5}" for i in range(30)])
    frame_labels = labels.unsqueeze(1).expand(-1, 6)
    pooled = torch.stack([hidden[i][mask[i]].mean(0) for i in range(30)])
    for given in (speakers, None):
        scorer = LayerScorer([5], [name, "pooled_probe"], 3)
        for rows in (slice(0, 12), slice(12, 30)):
            scorer.update([hidden[rows]], mask[rows], frame_labels[rows], None if given is None else given[rows])
        expected = float(probe(pooled, labels, given))
        assert scorer.compute()[name][0] == pytest.approx(expected, abs=1e-12)
    assert get_estimator(name).pooled and get_estimator(name).higher_is_better


def test_the_sample_keeps_speakers_and_says_when_any_is_unknown():
    metric = LabelledSampleMetric(2, 2, max_samples=8)
    metric.update(torch.randn(3, 2), torch.tensor([0, 1, 0]), speakers=torch.tensor([5, 6, 5]))
    assert sorted(metric.compute().speakers.tolist()) == [5, 5, 6]
    metric.update(torch.randn(2, 2), torch.tensor([1, 0]))  # speakers unknown
    assert metric.compute().speakers is None
    with pytest.raises(ValueError, match=">= 0"):
        metric.update(torch.randn(1, 2), torch.tensor([1]), speakers=torch.tensor([-3]))
    assert np.isfinite(metric.compute().features.numpy()).all()


def _manifest(tiny_corpus, path, split_of):
    rows = list(csv.DictReader(open(tiny_corpus, encoding="utf-8")))
    for row in rows:
        row["audio"] = str(tiny_corpus.parent / row["audio"])
        row["alignment"] = str(tiny_corpus.parent / row["alignment"])
        row["split"] = split_of(row)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_speakers_reach_the_probe_only_where_the_task_tests_unseen_voices(tiny_corpus, tmp_path):
    """The built-in corpus splits each speaker's repetitions (test voices are train voices):
    no speakers; a split by speaker: the batch's speakers, as stable ids."""
    voices = sorted({row["speaker"] for row in csv.DictReader(open(tiny_corpus, encoding="utf-8"))})
    by_voice = _manifest(
        tiny_corpus, tmp_path / "by-voice.csv", lambda r: "train" if r["speaker"] == voices[0] else "test"
    )
    for manifest, unseen in ((tiny_corpus, False), (by_voice, True)):
        dm = SpeechDataModule(manifest=manifest, batch_size=4)
        labels = TaskLabels.from_datamodule(dm)
        assert labels.unseen_speakers is unseen
        batch = next(iter(dm.train_dataloader()))
        frames = EncoderFrames(Filterbank(n_mels=8), labels)(batch)
        assert (frames.speakers is not None) is unseen
        if unseen:
            assert torch.equal(frames.speakers, speaker_ids(batch["speakers"]))
