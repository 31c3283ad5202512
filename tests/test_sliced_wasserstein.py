import numpy as np
import ot
import pytest
import torch
from scipy.stats import wasserstein_distance

from lightning_tx.functional import random_projections, sliced_wasserstein, wasserstein_1d
from lightning_tx.metrics import SlicedWasserstein


def _clouds(n=700, m=450, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    source = torch.randn(n, d, generator=g, dtype=torch.float64)
    target = 1.5 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.4
    return source, target


@pytest.mark.parametrize("p", [1, 2, 3])
def test_matches_pot_given_projections(p):
    source, target = _clouds()
    projections = torch.randn(16, 30, dtype=torch.float64)
    projections /= projections.norm(dim=0)
    ours = sliced_wasserstein(source, target, projections=projections, p=p)
    expected = ot.sliced_wasserstein_distance(source.numpy(), target.numpy(), projections=projections.numpy(), p=p)
    assert float(ours) == pytest.approx(float(expected), rel=1e-10)


def test_default_directions_are_pots_for_the_seed():
    source, target = _clouds()
    expected = ot.sliced_wasserstein_distance(source.numpy(), target.numpy(), n_projections=50, seed=42, p=2)
    assert float(sliced_wasserstein(source, target)) == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("m", [300, 301])  # equal sizes take a shortcut
def test_float32_frames_match_pot_on_float64(m):
    g = torch.Generator().manual_seed(3)
    source, target = torch.randn(300, 24, generator=g), torch.randn(m, 24, generator=g) * 2 + 1
    ours = sliced_wasserstein(source, target, num_projections=20)
    expected = ot.sliced_wasserstein_distance(source.double().numpy(), target.double().numpy(), n_projections=20,
                                              seed=42)  # fmt: skip
    assert float(ours) == pytest.approx(float(expected), rel=1e-7)  # float32 products
    exact = sliced_wasserstein(source.double(), target.double(), num_projections=20)
    assert float(exact) == pytest.approx(float(expected), rel=1e-12)


def test_gradients_flow_through_the_torch_sort():
    source = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    sliced_wasserstein(source, torch.randn(30, 5, dtype=torch.float64)).backward()
    assert source.grad is not None and bool(source.grad.abs().sum() > 0)


def test_wasserstein_1d_matches_scipy_with_unequal_sizes():
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(37, 3, generator=g), torch.rand(91, 3, generator=g) * 3
    ours = wasserstein_1d(u, v, p=1)
    for col in range(3):
        assert float(ours[col]) == pytest.approx(wasserstein_distance(u[:, col], v[:, col]), rel=1e-10)


def test_closed_form_for_isotropic_gaussians():
    """theta.x ~ N(theta.m, s^2): W_2^2 = (theta.(m1 - m2))^2 + (s1 - s2)^2 per direction."""
    d, n = 8, 200_000
    g = torch.Generator().manual_seed(2)
    m1, m2 = torch.zeros(d, dtype=torch.float64), torch.linspace(-1, 1, d, dtype=torch.float64)
    source = m1 + 1.0 * torch.randn(n, d, generator=g, dtype=torch.float64)
    target = m2 + 2.0 * torch.randn(n, d, generator=g, dtype=torch.float64)
    projections = random_projections(d, 50, seed=42)
    exact = np.sqrt(float((((m2 - m1) @ projections) ** 2 + 1.0).mean()))
    assert float(sliced_wasserstein(source, target, projections=projections)) == pytest.approx(exact, rel=1e-2)


def test_normalized_form_is_scale_and_offset_invariant():
    source, target = _clouds()
    base = sliced_wasserstein(source, target, normalize=True)
    moved = sliced_wasserstein(300 * source + 50, 300 * target + 50, normalize=True)
    assert float(moved) == pytest.approx(float(base), rel=1e-9)
    raw = sliced_wasserstein(300 * source, 300 * target)
    assert float(raw) == pytest.approx(300 * float(sliced_wasserstein(source, target)), rel=1e-9)


def test_identical_clouds_have_zero_distance():
    source, _ = _clouds()
    assert float(sliced_wasserstein(source, source.flip(0))) == pytest.approx(0.0, abs=1e-12)


def test_metric_streams_to_the_functional_value_below_the_cap():
    source, target = _clouds()
    metric = SlicedWasserstein(16, max_samples=1000, normalize=False)
    for chunk in source.split(100):
        metric.update(chunk, domain="source")
    for chunk in target.split(64):
        metric.update(chunk.float(), domain="target")
    expected = sliced_wasserstein(source, target.float().double())
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-12)
    assert int(metric.source_frames) == 700 and int(metric.target_frames) == 450


def test_metric_bounded_sample_error_is_small():
    """The documented error: 2,000 kept of 20,000 frames per domain, 64-dim Gaussians."""
    g = torch.Generator().manual_seed(5)
    source = torch.randn(20_000, 64, generator=g, dtype=torch.float64)
    target = 1.3 * torch.randn(20_000, 64, generator=g, dtype=torch.float64) + 0.3
    metric = SlicedWasserstein(64, max_samples=2000)
    for chunk in source.split(1000):
        metric.update(chunk, domain="source")
    for chunk in target.split(1000):
        metric.update(chunk, domain="target")
    full = float(sliced_wasserstein(source, target, normalize=True))
    assert metric.source_projections.shape[0] == 2000
    assert abs(float(metric.compute()) - full) < 0.05


def test_metric_sampling_is_deterministic_and_reset_safe():
    source, target = _clouds(3000, 3000)
    values = []
    metric = SlicedWasserstein(16, max_samples=500)
    for _ in range(2):
        metric.update(source, domain="source")
        metric.update(target, domain="target")
        values.append(float(metric.compute()))
        metric.reset()
    assert values[0] == values[1]


def test_metric_errors():
    metric = SlicedWasserstein(4)
    with pytest.raises(ValueError, match="domain"):
        metric.update(torch.randn(5, 4), domain="train")
    metric.update(torch.randn(5, 4), domain="target")
    with pytest.raises(ValueError, match="at least 2 source frames"):
        metric.compute()
    with pytest.raises(ValueError, match="num_features=4"):
        metric.update(torch.randn(5, 3), domain="source")
    with pytest.raises(ValueError, match="same width"):
        sliced_wasserstein(torch.randn(5, 3), torch.randn(5, 4))


def test_metric_merge_state_equals_one_metric():
    source, target = _clouds()
    whole, left, right = (SlicedWasserstein(16, max_samples=2000) for _ in range(3))
    whole.update(source, domain="source")
    whole.update(target, domain="target")
    left.update(source[:300], domain="source")
    left.update(target, domain="target")
    right.update(source[300:], domain="source")
    left.merge_state(right)
    assert float(left.compute()) == pytest.approx(float(whole.compute()), rel=1e-12)


def test_time_step_and_utterance_variants_equal_their_definitions():
    """The paper's per-time-step TIH-SWD (median over steps) and the per-utterance median,
    through the streaming metric on padded batches, against direct computation with POT."""
    import ot

    from lightning_tx.functional import random_projections
    from lightning_tx.metrics import SlicedWasserstein

    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(6, 9, 4, generator=g), torch.randn(5, 9, 4, generator=g) + 0.5
    source_lengths, target_lengths = torch.tensor([9, 7, 9, 5, 8, 9]), torch.tensor([9, 6, 9, 9, 4])
    directions = random_projections(4, 10, seed=42).numpy()

    def sw(a, b):
        return np.sqrt(np.mean([ot.wasserstein_1d(a @ directions[:, i], b @ directions[:, i], p=2)
                                for i in range(directions.shape[1])]))  # fmt: skip

    per_step = [
        sw(source[source_lengths > t, t].double().numpy(), target[target_lengths > t, t].double().numpy())
        for t in range(9)
        if (source_lengths > t).sum() >= 2 and (target_lengths > t).sum() >= 2
    ]
    all_source = torch.cat([source[i, :n] for i, n in enumerate(source_lengths)]).double().numpy()
    per_utterance = [sw(all_source, target[i, :n].double().numpy()) for i, n in enumerate(target_lengths)]
    for reduction, expected in (("time_steps", per_step), ("utterances", per_utterance)):
        metric = SlicedWasserstein(4, num_projections=10, normalize=False, reduction=reduction)
        metric.update(source[:3], domain="source", lengths=source_lengths[:3])
        metric.update(source[3:], domain="source", lengths=source_lengths[3:])
        metric.update(target, domain="target", lengths=target_lengths)
        assert float(metric.compute()) == pytest.approx(float(torch.tensor(expected).median()), rel=1e-9)


def test_forward_and_metric_collection():
    """forward() on one domain's batch returns NaN and accumulates it; in a MetricCollection
    the metric takes the label metrics' arguments (targets ignored, the task's domain)."""
    from torchmetrics import MetricCollection

    from lightning_tx.metrics import LogME, SlicedWasserstein

    g = torch.Generator().manual_seed(0)
    target, source = torch.randn(40, 4, generator=g), torch.randn(30, 4, generator=g) + 1
    metric = SlicedWasserstein(4)
    assert torch.isnan(metric(target[:20]))
    metric(target[20:])
    metric.update(source, domain="source")
    assert float(metric.compute()) == pytest.approx(float(sliced_wasserstein(source, target, normalize=True)))
    collection = MetricCollection({"logme": LogME(4, 2), "swd": SlicedWasserstein(4)})
    collection.update(target, torch.arange(40) % 2)
    collection["swd"].update(source, domain="source")
    assert set(collection.compute()) == {"logme", "swd"}
