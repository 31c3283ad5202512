"""Standardized LogME, segment pooling, k-NN, class SWD and the ensemble, each against an
independent float64 implementation, and through the scoring engine."""

import numpy as np
import pytest
import torch
from conftest import classification_data
from reference import reference_class_swd, reference_knn, reference_logme_standardized

from lightning_tx.functional import (
    Segments,
    class_sliced_wasserstein,
    knn_accuracy,
    logme,
    random_projections,
    segment_means,
    selected_frames,
)
from lightning_tx.metrics import KNNAccuracy, LogME, build_metric
from lightning_tx.scoring import LayerScorer, add_layer_ensemble, rank_average


@pytest.mark.parametrize(("n", "d", "c"), [(600, 12, 3), (1500, 40, 6)])
def test_standardized_logme_matches_reference(n, d, c):
    features, labels = classification_data(n, d, c, scale=50.0, offset=7.0)
    ours = float(logme(features, labels, standardize=True))
    assert ours == pytest.approx(reference_logme_standardized(features.numpy(), labels.numpy()), rel=1e-6)


def test_standardized_logme_is_invariant_to_affine_maps_where_logme_is_not():
    features, labels = classification_data(800, 16, 4)
    # Raw moments lose about log10(offset^2 / variance) digits: keep that well under 16 here.
    scale = torch.logspace(-2, 3, 16, dtype=torch.float64)
    shifted = features * scale + 5.0
    assert float(logme(shifted, labels, standardize=True)) == pytest.approx(
        float(logme(features, labels, standardize=True)), rel=1e-9
    )
    assert float(logme(shifted, labels)) != pytest.approx(float(logme(features, labels)), rel=1e-2)
    constant = torch.cat([features, torch.full((800, 1), 3.0, dtype=torch.float64)], 1)
    assert float(logme(constant, labels, standardize=True)) == pytest.approx(
        float(logme(features, labels, standardize=True)), rel=1e-12
    )


def test_standardized_logme_metric_streams():
    features, labels = classification_data(900, 10, 3)
    metric = LogME(10, 3, standardize=True)
    for f, y in zip(features.split(200), labels.split(200), strict=False):
        metric.update(f, y)
    assert float(metric.compute()) == pytest.approx(float(logme(features, labels, standardize=True)), rel=1e-10)


def test_segment_means_pool_runs_of_one_label():
    features = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)
    labels = torch.tensor([[1, 1, 2, 2, 1], [0, 0, 0, 3, 3]])
    mask = torch.tensor([[True, True, True, False, True], [True, True, True, True, False]])
    means, segment_labels, rows = segment_means(features, labels, mask)
    assert means.flatten().tolist() == [0.5, 2.0, 4.0, 6.0, 8.0]
    assert segment_labels.tolist() == [1, 2, 1, 0, 3] and rows.tolist() == [0, 0, 0, 1, 1]


def test_frames_by_index_are_the_masked_frames_and_segments_are_found_once():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 7, 4, generator=generator)
    mask = torch.rand(3, 7, generator=generator) > 0.3
    labels = torch.randint(0, 2, (3, 7), generator=generator)
    index = selected_frames(mask)
    assert torch.equal(features.flatten(0, 1).index_select(0, index), features[mask])
    segments = Segments.find(labels, mask, index)
    # the segments from their definition: maximal runs of counted frames with one label
    runs = []
    for row in range(3):
        for t in range(7):
            if not mask[row, t]:
                continue
            if t and mask[row, t - 1] and labels[row, t] == labels[row, t - 1]:
                runs[-1][2].append(t)
            else:
                runs.append((row, int(labels[row, t]), [t]))
    assert segments.labels.tolist() == [label for _, label, _ in runs]
    assert segments.utterances.tolist() == [row for row, _, _ in runs]
    for layer in (features, 2 * features + 1):  # another layer of the batch reuses the segments
        expected = torch.stack([layer[row, steps].double().mean(0) for row, _, steps in runs])
        torch.testing.assert_close(segments.means(layer), expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"labels and mask \[B, T\]"):
        Segments.find(labels[:, :3], mask)


@pytest.mark.parametrize("k", [1, 5])
def test_knn_matches_brute_force(k):
    features, labels = classification_data(120, 6, 3, seed=4)
    groups = torch.arange(120) // 4  # utterances of 4 frames
    ours = float(knn_accuracy(features, labels, groups, k=k))
    assert ours == pytest.approx(reference_knn(features.numpy(), labels.numpy(), groups.numpy(), k))
    far_apart = torch.cat([torch.zeros(20, 2), torch.full((20, 2), 100.0)]) + torch.randn(40, 2)
    assert float(knn_accuracy(far_apart, torch.arange(40) // 20, k=3)) == 1.0


def test_class_swd_matches_pot():
    features, labels = classification_data(300, 8, 3, seed=5)
    directions = random_projections(8, 20, seed=1)
    ours = float(class_sliced_wasserstein(features, labels, projections=directions))
    expected = reference_class_swd(features.numpy(), labels.numpy(), directions.numpy())
    assert ours == pytest.approx(expected, rel=1e-9)
    assert float(class_sliced_wasserstein(features * 9 + 4, labels, projections=directions)) == pytest.approx(
        ours, rel=1e-9
    )


def test_sample_metric_below_the_cap_equals_the_functional_on_every_frame():
    features, labels = classification_data(400, 6, 4)
    metric = KNNAccuracy(6, 4, max_samples=1000)
    groups = torch.arange(400) // 8
    for start in range(0, 400, 80):  # batch-local group ids, made unique by the metric
        part = slice(start, start + 80)
        metric.update(features[part], labels[part], groups=groups[part] - groups[start])
    assert float(metric.compute()) == pytest.approx(float(knn_accuracy(features, labels, groups)), rel=1e-12)


def test_engine_pooled_estimators_equal_the_functional_on_segment_means():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(12, 30, 5, generator=g)
    labels = (torch.arange(12) % 3).unsqueeze(1).expand(12, 30).clone()
    hidden += labels.unsqueeze(-1) * 0.3
    mask = torch.ones(12, 30, dtype=torch.bool)
    mask[::2, 20:] = False
    scorer = LayerScorer([5], ["pooled_logme", "pooled_knn", "knn", "logme_standardized"], 3)
    scorer.update([hidden[:6]], mask[:6], labels[:6])
    scorer.update([hidden[6:]], mask[6:], labels[6:])
    results = scorer.compute()
    means, pooled_labels, _ = segment_means(hidden, labels, mask)
    assert means.shape[0] == 12
    assert results["pooled_logme"][0] == pytest.approx(float(logme(means, pooled_labels, num_classes=3)), rel=1e-10)
    assert results["pooled_knn"][0] == pytest.approx(float(knn_accuracy(means, pooled_labels, k=5)))
    rows = torch.arange(12).unsqueeze(1).expand(12, 30)[mask]
    assert results["knn"][0] == pytest.approx(float(knn_accuracy(hidden[mask], labels[mask], rows)))
    assert len(scorer.accumulators) == 4  # statistics and a sample, of frames and of segments


def test_rank_average_ensemble():
    rows = [
        {"logme": 0.1, "gbc": -3.0, "sliced_wasserstein": 0.2},
        {"logme": 0.5, "gbc": -1.0, "sliced_wasserstein": 0.9},
        {"logme": float("nan"), "gbc": -2.0, "sliced_wasserstein": 0.1},
    ]
    assert rank_average(rows, ["logme", "gbc"]) == pytest.approx([0.25, 1.0, 0.25])
    assert rank_average(rows, ["sliced_wasserstein"]) == pytest.approx([0.5, 0.0, 1.0])  # lower is better


def test_layer_ensemble_ranks_one_models_layers():
    # members: pooled_logme, pooled_halpha, knn (all higher is better)
    results = {
        "pooled_logme": {0: 0.1, 1: 0.5, 2: 0.3},
        "pooled_halpha": {0: 1.0, 1: 3.0, 2: 2.0},
        "knn": {0: 0.2, 1: 0.4, 2: 0.9},
    }
    add_layer_ensemble(results, ["pooled_logme"])
    assert "ensemble" not in results
    add_layer_ensemble(results, ["ensemble", "pooled_logme", "pooled_halpha", "knn"])
    assert results["ensemble"] == pytest.approx({0: 0.0, 1: 5 / 6, 2: 4 / 6})


def test_pooled_estimators_are_engine_only():
    with pytest.raises(ValueError, match="scoring engine"):
        build_metric("pooled_logme", 4, 3)
    assert np.isfinite(float(build_metric("knn", 4, 2, max_samples=50).num_features))


def test_engine_serves_every_tih_swd_form_from_one_sample():
    from lightning_tx.metrics import SlicedWasserstein

    g = torch.Generator().manual_seed(1)
    target, source = torch.randn(6, 20, 5, generator=g), torch.randn(4, 20, 5, generator=g) + 0.3
    mask, labels = torch.ones(6, 20, dtype=torch.bool), torch.zeros(6, 20, dtype=torch.long)
    names = ["sliced_wasserstein", "sliced_wasserstein_time_steps", "sliced_wasserstein_utterances"]
    scorer = LayerScorer([5], names, None)
    assert len(scorer.accumulators) == 1 and not scorer.metrics
    scorer.update([target], mask, None)
    scorer.update_source([source], torch.ones(4, 20, dtype=torch.bool))
    results = scorer.compute()
    for name, reduction in zip(names, ["frames", "time_steps", "utterances"], strict=True):
        alone = SlicedWasserstein(5, reduction=reduction)
        alone.update(target, domain="target")
        alone.update(source, domain="source")
        assert results[name][0] == pytest.approx(float(alone.compute()), rel=1e-12), name
    assert labels.sum() == 0
