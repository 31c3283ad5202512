r"""A linear probe on voices it has not heard: the leave-one-speaker-out accuracy of a
ridge classifier whose penalty is set by the Bayesian evidence.

A speech task is usually tested on speakers its training set lacks, and what a confirming
linear head then measures is how well a layer's classes hold across voices. Scores of the
training set alone (LogME, H-score, the leave-one-out probe) cannot see that: an utterance
left out still has its speaker's other utterances in the fit. This estimator holds out a
speaker at a time.

The model is ridge regression from z-scored features :math:`X` ([M, D]) to one-hot class
targets :math:`Y`, with an unpenalised intercept. Its penalty :math:`\lambda = \alpha /
\beta` is the one that maximises the evidence of one Bayesian linear model for all C target
columns (a prior :math:`w_c \sim N(0, \alpha^{-1} I)` and noise precision :math:`\beta`
shared by the columns, on centred targets; :func:`evidence_ridge_penalty`): chosen from the
training data without any held-out split, so the cross-validation below measures the model
rather than choosing it. With :math:`A = [\mathbf 1, X]` and :math:`P = \mathrm{diag}(0,
\lambda I)`, the hat matrix is :math:`H = A (A^\top A + P)^{-1} A^\top`, and the prediction
for the samples :math:`g` of one speaker by the model fitted without them is exactly

.. math:: \hat Y_{-g} = (I - H_{gg})^{-1} (\hat Y_g - H_{gg} Y_g)

(the deletion formula of linear smoothers, then a scaling of each class, below; for one
sample it is the leave-one-out formula of :mod:`lightning_tx.functional.probe`). The score
is the fraction of samples whose held-out arg-max is their class. Invariant to the scale and
offset of every feature dimension (the z-scoring); higher is better, in [0, 1]. Meant for
pooled vectors, one per utterance or token.

**More dimensions than samples.** A large encoder's pooled vectors (768 or 1024 dimensions)
on a few-shot task (60 utterances) span every direction of the centred samples, so they
interpolate any targets, and where the classes separate well the evidence is largest in the
limit of no penalty. The model is then that limit, the minimum-norm interpolator, held out
exactly as before (the hat matrix is the identity there, so wherever the features span the
samples the held-out predictions come from a scaled residual maker instead:
``_left_out_spanning``). These are often the best
features of all; an undefined score would rank them last.

**Each class weighs what it weighs in the whole training set.** A fold lacks the held-out
samples, so its classes are not counted as in the whole set: with two utterances per class
(speaker identification from two recordings), leaving one out halves its class. A ridge fit
counts a class twice, in its intercept (the class's frequency) and in its weights (with a
large penalty, a class's score is the summed similarity to its samples), so the halved class
loses against every other one and the fold counts the held-out sample's class against it.
On the benchmark's speaker identification the uncorrected held-out accuracies were at most
0.23 where the confirming heads reach up to 0.62, and ranked the layers mostly by noise. So
each class :math:`c` of a fold that has :math:`n_c^{(-g)}` of its :math:`n_c` samples gets
the target :math:`n_c / n_c^{(-g)}` instead of 1; a linear fit is linear in its targets, so
this scales the class's held-out column by that ratio:

.. math:: \hat Y_{-g, c} \leftarrow \frac{n_c}{n_c^{(-g)}} \hat Y_{-g, c}

(both the intercept, now proportional to the whole set's class frequencies, and the weights,
now each class's mean similarity times its whole-set count). A class the fold lacks cannot
be predicted. Where every held-out group has the classes in the proportions of the whole set
(a voice speaking every word equally often), every ratio is the same and nothing changes.
Where they differ, the correction is not exact: the held-out class keeps fewer samples, each
counted for more, so its score varies more than the others' and wins by chance a little more
often (on features that say nothing of 10 classes of two samples, 0.15 where chance is 0.10;
0.03 without the correction).

**Groups.** In the scoring engine the speakers are given where the task is tested on voices
its train split lacks (:class:`~lightning_tx.scoring.TaskLabels` ``unseen_speakers``), and
not where its test voices are also in train. Each speaker is held out in turn, and the
accuracy is over the samples whose class other speakers speak too (a class only one speaker
has cannot be predicted without them, by any encoder). Where no class has two speakers
(speaker identification) or the speakers are unknown, each sample is its own group:
leave-one-out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_tx.functional.probe import left_singular_vectors, zscored_samples
from lightning_tx.functional.validation import UndefinedScore, check_labelled_frames


def evidence_ridge_penalty(features: Tensor, targets: Tensor, *, grid: int = 400, refine: int = 80) -> Tensor:
    r"""The ridge penalty :math:`t = \alpha / \beta` of the Bayesian linear model with one
    prior precision :math:`\alpha` and one noise precision :math:`\beta` for every target
    column, at the maximum of its evidence, with an intercept (integrated out under a flat
    prior: the centred data count as :math:`n = M - 1` samples).

    With the non-zero eigenvalues :math:`\sigma_i` of :math:`X^\top X` (``k`` of them), the
    squared projections :math:`x_{ic}` of the targets on them (scaled by
    :math:`1/\sigma_i`) and :math:`\rho` the part of the targets outside the features' span,
    the evidence maximised over :math:`\beta` is, up to a constant,

    .. math:: \tfrac{C}{2}\Big[k \log t - \sum_i \log(t + \sigma_i)\Big]
        - \tfrac{C n}{2} \log\Big(\sum_{i,c} \frac{t\, x_{ic}}{t + \sigma_i} + \rho\Big),

    maximised over :math:`\log t` on a grid from ``1e-6`` of the smallest to ``1e6`` times
    the largest eigenvalue, then by golden-section search around the best grid point (no
    fixed-point iteration, whose path to a maximum at zero would depend on round-off).

    Args:
        features: ``[M, D]`` centred float64 features.
        targets: ``[M, C]`` centred float64 targets.
        grid, refine: grid points, golden-section steps.

    Returns:
        Scalar float64 penalty, in the units of ``X^T X``'s eigenvalues; ``inf`` where the
        evidence is largest at the grid's upper end (the features say nothing of the targets:
        the model is its intercept); ``0`` where it is largest at the lower end and the
        features span every direction of the centred samples (``k = M - 1``: with at least as
        many dimensions as samples they interpolate any targets, :math:`\rho = 0`, and the
        evidence tends to a finite limit as :math:`t \to 0` that no penalty exceeds): the
        model is then the limit of no penalty, the minimum-norm interpolator, which the
        Bayesian model reaches as its noise precision grows without bound. Raises
        :class:`~lightning_tx.functional.UndefinedScore` where the evidence is largest at the
        lower end with fewer dimensions than that (the features reproduce the targets exactly
        in a subspace: the evidence grows without bound).
    """
    count, columns = features.shape[0] - 1, targets.shape[1]
    eigenvalues, eigenvectors = torch.linalg.eigh(features.T @ features)
    nonzero = eigenvalues > eigenvalues.max().clamp_min(0) * max(features.shape) * torch.finfo(torch.float64).eps
    if not bool(nonzero.any()):
        raise UndefinedScore("the features are all zero: there is no evidence to set a ridge penalty from")
    sigma = eigenvalues[nonzero]  # [k]
    projected = ((eigenvectors[:, nonzero].T @ (features.T @ targets)) ** 2).sum(1) / sigma  # [k], summed over C
    outside = ((targets * targets).sum() - projected.sum()).clamp_min(0)

    def log_evidence(log_t: Tensor) -> Tensor:  # [G] -> [G]
        t = log_t.exp().unsqueeze(1)
        fit = (t * projected / (t + sigma)).sum(1) + outside
        return columns / 2 * (sigma.numel() * log_t - torch.log(t + sigma).sum(1)) - columns * count / 2 * fit.log()

    low, high = float(sigma.min().log()) - math.log(1e6), float(sigma.max().log()) + math.log(1e6)
    points = torch.linspace(low, high, grid, dtype=torch.float64, device=features.device)
    best = int(log_evidence(points).argmax())
    if best == 0:
        if sigma.numel() >= count:  # the ridgeless limit (see Returns)
            return torch.zeros((), dtype=torch.float64, device=features.device)
        raise UndefinedScore(
            f"the evidence sets no ridge penalty: it grows without bound as the penalty goes to 0 (the "
            f"{features.shape[1]}-dimensional features reproduce the classes of {features.shape[0]} samples exactly "
            f"in {sigma.numel()} dimensions)"
        )
    if best == grid - 1:  # the features say nothing of the targets: the intercept alone
        return torch.tensor(math.inf, dtype=torch.float64, device=features.device)
    a, b = points[best - 1], points[best + 1]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(refine):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if float(log_evidence(torch.stack([c, d])).diff()) < 0:
            b = d
        else:
            a = c
    return ((a + b) / 2).exp()


def voice_probe_accuracy(
    features: Tensor,
    labels: Tensor,
    speakers: Tensor | None = None,
    *,
    num_classes: int | None = None,
) -> Tensor:
    """Leave-one-speaker-out accuracy of the evidence-tuned ridge classifier (see the module).

    Args:
        features: ``[M, D]`` pooled vectors (any float dtype; computed in float64).
        labels: ``[M]`` class ids.
        speakers: ``[M]`` integer speaker ids (any values; None: unknown, leave-one-out).
        num_classes: the task's classes (default ``labels.max() + 1``).

    Returns:
        Scalar float64 in [0, 1]: the fraction of the scored samples (see the module) that the
        model fitted without their group classifies correctly.
    """
    num_classes = check_labelled_frames(features, labels, num_classes)
    count = features.shape[0]
    if count < 3:
        raise UndefinedScore(f"the voice probe needs at least 3 samples to hold some out, got {count}")
    x = zscored_samples(features)
    labels = labels.to(x.device).long()
    targets = torch.nn.functional.one_hot(labels, num_classes).to(torch.float64)
    penalty = evidence_ridge_penalty(x, targets - targets.mean(0))
    groups, scored = held_out_groups(labels, speakers, num_classes)

    u, squares, _ = left_singular_vectors(x)
    totals = targets.sum(0)  # [C]
    spanning = squares.numel() == count - 1  # the features span every direction of the centred samples
    if spanning and math.isfinite(float(penalty)):
        left_out = _left_out_spanning(u, squares, penalty, targets, groups)
    elif float(penalty) == 0.0:  # the evidence counted the dimensions at another round-off
        raise UndefinedScore(
            f"the evidence chose no ridge penalty, but the {features.shape[1]}-dimensional features span only "
            f"{squares.numel()} of the {count - 1} directions of {count} centred samples"
        )
    else:
        # H = U diag(shrink) U^T + 1/M, used only through H Y and its diagonal blocks: never
        # formed, so memory grows as M r, not M^2
        shrunk = u * (squares / (squares + penalty))  # [M, r]
        fitted = shrunk @ (u.T @ targets) + targets.mean(0)  # H Y
        if len(groups) == count:  # leave-one-out: the deletion formula on the diagonal
            leverage = ((shrunk * u).sum(1) + 1.0 / count).unsqueeze(1)
            left_out = (fitted - leverage * targets) / (1 - leverage)
        else:
            left_out = torch.empty_like(fitted)
            for rows in groups:
                block = shrunk[rows] @ u[rows].T + 1.0 / count  # H_gg
                eye = torch.eye(len(rows), dtype=torch.float64, device=x.device)
                left_out[rows] = torch.linalg.solve(eye - block, fitted[rows] - block @ targets[rows])
    if len(groups) == count:  # [M, C]: each class's count in the fold that holds the sample out
        kept = totals - targets
    else:
        kept = torch.empty_like(targets)
        for rows in groups:
            kept[rows] = totals - targets[rows].sum(0)
    # each class weighs in its fold what it weighs in the whole set (see the module); a class the
    # fold lacks cannot be predicted
    left_out = torch.where(kept > 0, left_out * totals / kept.clamp_min(1), -math.inf)
    return (left_out.argmax(1) == labels)[scored].to(torch.float64).mean()


def _left_out_spanning(u: Tensor, squares: Tensor, penalty: Tensor, targets: Tensor, groups: list[Tensor]) -> Tensor:
    r"""Held-out predictions ``[M, C]`` where the centred features span all ``M - 1``
    directions orthogonal to the constant (``u`` ``[M, M - 1]``, ``squares`` their ``X^T X``
    eigenvalues), for any finite penalty :math:`t \ge 0`, 0 included (the minimum-norm
    interpolator).

    There :math:`I - H = t\, U (S^2 + t)^{-1} U^\top`, which vanishes as :math:`t \to 0`
    (the deletion formula's :math:`I - H_{gg}` divides 0 by 0 at the limit, and loses digits
    near it). The held-out residuals :math:`(I - H)_{gg}^{-1} ((I - H) Y)_g` do not change
    when :math:`I - H` is scaled, so :math:`R = U (S^2 + t)^{-1} U^\top` gives them at every
    :math:`t` (at 0, the pseudo-inverse of the centred Gram matrix), and
    :math:`\hat Y_{-g} = Y_g - R_{gg}^{-1} (R Y)_g`: the same predictions as the deletion
    formula, without the cancellation.
    """
    scaled = u / (squares + penalty)  # R = scaled U^T, used only through R Y and its diagonal blocks
    residuals = scaled @ (u.T @ targets)  # R Y
    if len(groups) == targets.shape[0]:
        return targets - residuals / (scaled * u).sum(1).unsqueeze(1)
    left_out = torch.empty_like(targets)
    for rows in groups:
        left_out[rows] = targets[rows] - torch.linalg.solve(scaled[rows] @ u[rows].T, residuals[rows])
    return left_out


def held_out_groups(labels: Tensor, speakers: Tensor | None, num_classes: int) -> tuple[list[Tensor], Tensor]:
    """The row indices of each held-out group, and which rows are scored (``[M]`` bool):
    per speaker, scoring the samples whose class other speakers also speak; one group per
    sample, scoring all, when speakers are unknown or no class has two speakers."""
    count = labels.shape[0]
    if speakers is not None:
        if speakers.shape != labels.shape:
            raise ValueError(f"`speakers` must have shape [M]={tuple(labels.shape)}, got {tuple(speakers.shape)}")
        _, speaker = torch.unique(speakers.to(labels.device), return_inverse=True)
        stride = int(speaker.max()) + 1
        pairs = torch.unique(labels * stride + speaker)  # the (class, speaker) pairs present
        voices_per_class = torch.bincount(pairs // stride, minlength=num_classes)
        scored = voices_per_class[labels] >= 2
        if bool(scored.any()):
            order = torch.argsort(speaker, stable=True)
            return list(torch.split(order, torch.bincount(speaker).tolist())), scored
    return list(torch.arange(count, device=labels.device).split(1)), torch.ones_like(labels, dtype=torch.bool)
