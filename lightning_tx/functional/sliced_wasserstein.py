r"""Sliced Wasserstein distance (SWD) between two clouds of frames.

.. math::

    SW_p(\mu, \nu) = \Big(\frac1L \sum_{l=1}^{L} W_p^p(\theta_l\#\mu, \theta_l\#\nu)\Big)^{1/p}

over ``L`` random unit directions :math:`\theta_l`; each 1-D problem is solved exactly with
quantile functions (sorting), so the two clouds may have different sizes. This is POT's
``ot.sliced_wasserstein_distance``: with the same ``projections`` the values agree (float32
frames are projected with float32 products: to about 1e-9), and our
default directions (``seed=42``, 50 directions, as in arXiv 2306.01015) are the ones POT
draws for ``seed=42`` (``numpy.random.RandomState(seed).randn(D, L)``, columns normalised).

**Scale.** SW has the units of the features: a model whose activations are ten times
larger is ten times "farther" from any domain. ``normalize=True`` divides each direction's
:math:`W_p` by the average within-domain standard deviation along it,
:math:`s_\theta = \sqrt{(\mathrm{var}(\theta\#\mu) + \mathrm{var}(\theta\#\nu))/2}`, so the
distance is measured in units of the features' own spread along :math:`\theta` and is
invariant to ``f -> a f + b`` applied to both domains. Rankings across models use the
normalised form; the raw form is for comparisons within one feature space.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lightning_tx.functional.validation import UndefinedScore, check_features, check_labelled_frames


def random_projections(
    num_features: int,
    num_projections: int = 50,
    seed: int = 42,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """``[D, L]`` unit directions, identical for a seed on every process and device.

    Drawn with ``numpy.random.RandomState(seed)`` as POT's ``get_random_projections`` does.
    """
    if num_features < 1 or num_projections < 1:
        raise ValueError(f"need num_features >= 1 and num_projections >= 1, got {num_features}, {num_projections}")
    directions = np.random.RandomState(seed).randn(num_features, num_projections)
    directions /= np.sqrt((directions**2).sum(0, keepdims=True))
    return torch.as_tensor(directions, dtype=dtype, device=device)


def wasserstein_1d(source: Tensor, target: Tensor, p: float = 2) -> Tensor:
    """``W_p^p`` between the uniform empirical distributions of each column.

    Args:
        source: ``[N, L]`` samples of ``L`` 1-D distributions.
        target: ``[M, L]`` samples of the same ``L`` distributions' counterparts.
        p: the ground cost exponent, ``p >= 1``.

    Returns:
        ``[L]`` float64: the integral over ``t`` in (0, 1] of ``|F^-1(t) - G^-1(t)|^p``.
    """
    _check_projected(source, target)
    return _wasserstein_1d_of_sorted(_sorted_rows(source.T), _sorted_rows(target.T), p)


def _check_projected(source: Tensor, target: Tensor) -> None:
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"expected [N, L] and [M, L] projections, got {tuple(source.shape)} and {tuple(target.shape)}")
    if source.shape[0] == 0 or target.shape[0] == 0:
        raise ValueError(
            f"cannot compare an empty sample: source has {source.shape[0]} frames, target has {target.shape[0]}"
        )


def _wasserstein_1d_of_sorted(source: Tensor, target: Tensor, p: float) -> Tensor:
    """``[L]`` float64 ``W_p^p`` of ``[L, N]`` and ``[L, M]`` float64 rows, each sorted."""
    n, m = source.shape[1], target.shape[1]
    if n == m:  # the quantile functions step at the same levels k / n
        return (source - target).abs().pow(p).mean(dim=1)
    device = source.device
    source_levels = torch.arange(1, n + 1, dtype=torch.float64, device=device) / n
    target_levels = torch.arange(1, m + 1, dtype=torch.float64, device=device) / m
    levels = torch.cat([source_levels, target_levels]).sort().values
    # The quantile at level t is the first sample whose cumulative weight reaches t.
    source_index = torch.searchsorted(source_levels, levels).clamp_max(n - 1)
    target_index = torch.searchsorted(target_levels, levels).clamp_max(m - 1)
    widths = torch.diff(levels, prepend=levels.new_zeros(1))
    gaps = (source[:, source_index] - target[:, target_index]).abs().pow(p)
    return gaps @ widths


def sliced_wasserstein_from_projections(
    source: Tensor, target: Tensor, *, p: float = 2, normalize: bool = False
) -> Tensor:
    """SW_p from already projected frames ``[N, L]`` and ``[M, L]`` (scalar float64)."""
    _check_projected(source, target)
    return _sliced_wasserstein_of_rows(source.T, target.T, p, normalize)


def _sliced_wasserstein_of_rows(source: Tensor, target: Tensor, p: float, normalize: bool) -> Tensor:
    """SW_p from ``[L, N]`` and ``[L, M]`` projections, one row per direction. On the CPU four
    rows at a time are sorted, cast to float64 and compared: memory beyond the projections
    stays at ``4 * (N + M)`` float64 values, and each chunk stays in cache (on other devices,
    where every launch costs, all rows at once)."""
    rows_per_chunk = 4 if source.device.type == "cpu" else max(1, source.shape[0])
    per_direction, spread = [], []
    for start in range(0, source.shape[0], rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        sorted_source, sorted_target = _sorted_rows(source[rows]), _sorted_rows(target[rows])
        per_direction.append(_wasserstein_1d_of_sorted(sorted_source, sorted_target, p))
        if normalize:
            spread.append((sorted_source.var(1, correction=0) + sorted_target.var(1, correction=0)) / 2)
    distances = torch.cat(per_direction)
    if normalize:
        spreads = torch.cat(spread)
        if not bool((spreads > 0).all()):
            raise UndefinedScore(
                "the frames do not vary along some projection (constant features): the normalised distance, "
                "in units of their spread, is undefined; use normalize=False"
            )
        distances = distances / spreads.sqrt() ** p
    return distances.mean() ** (1.0 / p)


def sliced_wasserstein(
    source: Tensor,
    target: Tensor,
    *,
    num_projections: int = 50,
    p: float = 2,
    seed: int = 42,
    projections: Tensor | None = None,
    normalize: bool = False,
) -> Tensor:
    """Sliced Wasserstein distance between ``[N, D]`` source and ``[M, D]`` target frames.

    Lower means closer (an easier transfer, in the paper's reading).

    Args:
        source: ``[N, D]`` frames of source-domain audio.
        target: ``[M, D]`` frames of target-task audio; ``M != N`` is fine.
        num_projections: ``L``, the number of random directions (ignored with ``projections``).
        p: ground cost exponent.
        seed: seed of the directions (see :func:`random_projections`).
        projections: ``[D, L]`` directions to use instead of drawing them.
        normalize: the scale-invariant form (see the module docstring).

    Returns:
        Scalar float64 tensor, in feature units (or in units of spread when normalised).
    """
    for frames, name in ((source, "source"), (target, "target")):
        check_features(frames, name, finite=False)  # finiteness: on the projections, below
    if source.shape[1] != target.shape[1]:
        raise ValueError(
            f"source and target frames must have the same width D, got {source.shape[1]} and {target.shape[1]}"
        )
    if p < 1:
        raise ValueError(f"`p` must be >= 1, got {p}")
    if projections is None:
        projections = random_projections(source.shape[1], num_projections, seed, device=source.device)
    elif projections.ndim != 2 or projections.shape[0] != source.shape[1]:
        raise ValueError(
            f"`projections` must have shape [D, L] with D={source.shape[1]}, got {tuple(projections.shape)}"
        )
    rows = []
    for frames, name in ((source, "source"), (target, "target")):
        projected = project(frames, projections)
        # NaN and Inf propagate through the products (even times 0), so the [N, L]
        # projections are checked instead of the [N, D] frames.
        if not bool(torch.isfinite(projected.sum())):
            check_features(frames, name)  # names the first bad frame
            projected = project(frames.to(torch.float64), projections)  # float32 overflowed
        rows.append(projected.T)
    return _sliced_wasserstein_of_rows(*rows, p, normalize)


def project(frames: Tensor, projections: Tensor) -> Tensor:
    """``[N, D] @ [D, L]``: float64 frames in float64; other float frames with float32
    products, without a float64 copy of them (the distance then differs from the float64 one
    by about 1e-9 relative at N = 200,000, D = 768: see ``benchmarks/swd_speed.py``)."""
    dtype = torch.float64 if frames.dtype == torch.float64 else torch.float32
    return frames.to(dtype) @ projections.to(device=frames.device, dtype=dtype)


def _sorted_rows(values: Tensor) -> Tensor:
    """Each row of ``[L, N]`` sorted, as float64. Sorted in their own precision (a cast keeps
    the order; float32 moves half the bytes); on the CPU numpy's vectorised sort is several
    times faster than ``torch.sort`` (it keeps no autograd graph, so only without gradients)."""
    if values.dtype not in (torch.float32, torch.float64):  # e.g. bfloat16, which numpy lacks
        values = values.to(torch.float64)
    if values.device.type == "cpu" and not values.requires_grad:
        return torch.from_numpy(np.sort(values.contiguous().numpy(), axis=1)).to(torch.float64)
    return values.contiguous().sort(dim=1).values.to(torch.float64)


def class_sliced_wasserstein(
    features: Tensor,
    labels: Tensor,
    *,
    num_projections: int = 50,
    p: float = 2,
    seed: int = 42,
    projections: Tensor | None = None,
    num_classes: int | None = None,
) -> Tensor:
    r"""A label-aware optimal-transport score on the task's frames alone (no source domain):
    the mean over pairs of classes of the normalised sliced Wasserstein distance between
    their class-conditional distributions,

    .. math:: \mathrm{classSW} = \binom{C}{2}^{-1} \sum_{i<j} SW_p^{\mathrm{norm}}(\mu_i, \mu_j),

    i.e. how far apart the classes are, along random directions, in units of their own
    spread (see ``normalize`` of :func:`sliced_wasserstein`). Higher is better; invariant
    to ``f -> a f + b``. Classes with fewer than 2 frames are left out of the pairs.

    Args:
        features: ``[M, D]`` frames (or pooled segments).
        labels: ``[M]`` class ids.
        num_projections, p, seed, projections: as in :func:`sliced_wasserstein`.
        num_classes: the task's classes (default ``labels.max() + 1``).

    Returns:
        Scalar float64.
    """
    num_classes = check_labelled_frames(features, labels, num_classes)
    if projections is None:
        projections = random_projections(features.shape[1], num_projections, seed, device=features.device)
    projected = features.to(torch.float64) @ projections.to(device=features.device, dtype=torch.float64)
    labels = labels.to(features.device)
    present = [c for c in range(num_classes) if int((labels == c).sum()) >= 2]
    if len(present) < 2:
        raise UndefinedScore(f"class SWD needs at least 2 classes with 2 or more frames, got {len(present)}")
    groups = {c: projected[labels == c] for c in present}
    distances = [
        sliced_wasserstein_from_projections(groups[a], groups[b], p=p, normalize=True)
        for i, a in enumerate(present)
        for b in present[i + 1 :]
    ]
    return torch.stack(distances).mean()


def grouped_sliced_wasserstein(
    source: Tensor,
    target: Tensor,
    source_groups: Tensor | None,
    target_groups: Tensor,
    *,
    p: float = 2,
    normalize: bool = False,
    min_frames: int = 2,
    max_groups: int = 128,
) -> Tensor:
    """The median over groups of SW_p between projected frames ``[N, L]`` and ``[M, L]``.

    With ``source_groups`` given, group ``g`` compares the source frames of ``g`` with the
    target frames of ``g`` (e.g. groups = time steps: the paper's per-time-step TIH-SWD);
    without, every target group is compared with all source frames (e.g. groups = target
    utterances). Groups with fewer than ``min_frames`` frames on a side are skipped; of more
    than ``max_groups`` groups, ``max_groups`` evenly spaced ones (in id order) are used, which
    bounds the cost (a median is stable long before every utterance is in it).

    Returns:
        Scalar float64: the median of the per-group distances.
    """
    distances = []
    groups = torch.unique(target_groups)
    if groups.numel() > max_groups:
        groups = groups[torch.linspace(0, groups.numel() - 1, max_groups).round().long()]
    for group in groups.tolist():
        target_part = target[target_groups == group]
        source_part = source if source_groups is None else source[source_groups == group]
        if target_part.shape[0] >= min_frames and source_part.shape[0] >= min_frames:
            distances.append(sliced_wasserstein_from_projections(source_part, target_part, p=p, normalize=normalize))
    if not distances:
        raise UndefinedScore(f"no group has {min_frames} or more frames on both sides")
    return torch.stack(distances).median()
