r"""GBC: Gaussian Bhattacharyya coefficient.

Pandy, Agostinelli, Uijlings, Ferrari, Mensink, "Transferability Estimation using
Bhattacharyya Class Separability" (CVPR 2022). Each class is modelled as a Gaussian with
diagonal (or spherical) covariance; with :math:`\Sigma = (\Sigma_i + \Sigma_j)/2`,

.. math::

    D_B(i, j) = \tfrac18 (\mu_i - \mu_j)^\top \Sigma^{-1} (\mu_i - \mu_j)
               + \tfrac12 \ln \frac{\det\Sigma}{\sqrt{\det\Sigma_i \det\Sigma_j}},
    \qquad \mathrm{GBC} = -\sum_{i \ne j} e^{-D_B(i, j)}

over ordered pairs of classes. GBC <= 0; higher (closer to 0) means better separated
classes. Variances are population variances (1/n_c). The paper first reduces features
to 64 dimensions with PCA; that needs every class's full covariance, which does not
stream in bounded memory, so we score the features as given (reduce them upstream if
you want the paper's setting). A variance floor of ``1e-12`` times the mean variance
keeps constant dimensions finite.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_tx.functional.class_statistics import ClassStatistics, check_spread_resolved, class_statistics
from lightning_tx.functional.validation import (
    UndefinedScore,
    check_classes_present,
    check_enough_frames,
    check_labelled_frames,
)

_GAUSSIAN_TYPES = ("diagonal", "spherical")
MIN_FRAMES_PER_CLASS = 3


def gbc_from_statistics(stats: ClassStatistics, *, gaussian_type: str = "diagonal") -> Tensor:
    """GBC from per-class counts, sums and squared sums (scalar float64, <= 0)."""
    if gaussian_type not in _GAUSSIAN_TYPES:
        raise ValueError(f"`gaussian_type` must be one of {_GAUSSIAN_TYPES}, got {gaussian_type!r}")
    if stats.class_sq_sums is None:
        raise ValueError("GBC needs statistics accumulated with per-class squared sums")
    check_enough_frames(int(stats.num_frames))
    check_classes_present(stats.class_counts)
    scarce = (stats.class_counts < MIN_FRAMES_PER_CLASS).nonzero().flatten().tolist()
    if scarce:
        raise UndefinedScore(
            f"GBC estimates a variance per class and needs at least {MIN_FRAMES_PER_CLASS} frames of each; classes "
            f"{scarce} have fewer (with 1-2 frames any classes look separable): score more data"
        )
    counts = stats.class_counts.unsqueeze(1)
    means = stats.class_sums / counts  # [C, D]
    variances = (stats.class_sq_sums / counts - means**2).clamp_min(0)
    check_spread_resolved(
        (variances * counts).sum() / stats.num_frames, stats.class_sq_sums.sum() / stats.num_frames, "GBC"
    )
    if gaussian_type == "spherical":
        variances = variances.mean(1, keepdim=True).expand_as(means)
    floor = variances.mean().clamp_min(torch.finfo(torch.float64).tiny) * 1e-12
    variances = variances.clamp_min(floor)

    log_det = variances.log().sum(-1)  # [C]
    total = torch.zeros((), dtype=torch.float64, device=means.device)
    for i in range(means.shape[0]):  # one row of class pairs at a time: O(C * D) memory
        pair_var = (variances[i] + variances) / 2  # [C, D]
        distance = ((means[i] - means) ** 2 / pair_var).sum(-1) / 8 + 0.5 * (
            pair_var.log().sum(-1) - 0.5 * (log_det[i] + log_det)
        )
        coefficient = torch.exp(-distance)
        total = total + coefficient.sum() - coefficient[i]
    return -total


def gbc(
    features: Tensor,
    labels: Tensor,
    *,
    num_classes: int | None = None,
    gaussian_type: str = "diagonal",
) -> Tensor:
    """GBC of ``[N, D]`` features for ``[N]`` class ids (higher, i.e. nearer 0, is better)."""
    num_classes = check_labelled_frames(features, labels, num_classes)
    stats = class_statistics(features, labels, num_classes, with_sq_sums=True)
    return gbc_from_statistics(stats, gaussian_type=gaussian_type)
