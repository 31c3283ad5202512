r"""The confirming head itself, cross-validated: the held-out accuracy of a softmax classifier
on z-scored pooled vectors, held out a speaker at a time.

What a team confirms a layer with is a linear softmax head on its frozen, mean-pooled,
z-scored features. The ridge probes (:mod:`~lightning_tx.functional.probe`,
:mod:`~lightning_tx.functional.voice_probe`) estimate that head in closed form with a
least-squares classifier, which fits one-hot targets rather than class probabilities and so
under-rates features whose classes are separable but not linearly regressable (a few
dimensions, as in MFCCs). This estimator fits the head's own model, multinomial logistic
regression, in every fold:

.. math:: \min_{W, b}\ \sum_{i \in \text{train}} -\log \operatorname{softmax}(W^\top x_i + b)_{y_i}
    + \tfrac{1}{2} \lVert W \rVert_F^2

(the maximum a posteriori weights under a standard normal prior on the z-scored features'
weights, a flat one on the intercept; scikit-learn's default ``C = 1``) over the classes its
training samples have (one the fold lacks cannot be predicted), strictly convex, so each
fold's fit is unique whatever the solver's start. Every fold is fitted at once by
L-BFGS on the sum of the folds' objectives (their parameters do not interact), in float64,
in coordinates preconditioned by the features' covariance, until the largest entry of the
gradient of each fold's mean objective (per training sample) in those coordinates is below
``tolerance``.

**Folds.** The speakers are held out as in :func:`~lightning_tx.functional.voice_probe.held_out_groups`
(one speaker per fold, scored on the samples whose class other speakers speak too); where the
speakers are unknown or no class has two of them, the samples are dealt, class by class,
into ``max_folds`` folds (stratified k-fold), in the order of their projections on a fixed
random direction: the folds depend on the samples, not on the order they come in, so the
score is the same however the work was split over processes. More groups than
``max_folds`` are merged into that many folds.

The score is the fraction of scored samples whose held-out arg-max is their class.
Invariant to the scale and offset of every feature dimension (the z-scoring, with the
statistics of all samples); higher is better, in [0, 1].
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from lightning_tx.functional.probe import zscored_samples
from lightning_tx.functional.validation import UndefinedScore, check_labelled_frames
from lightning_tx.functional.voice_probe import held_out_groups


def logistic_probe_accuracy(
    features: Tensor,
    labels: Tensor,
    speakers: Tensor | None = None,
    *,
    num_classes: int | None = None,
    max_folds: int = 10,
    tolerance: float = 1e-7,
    max_iterations: int = 500,
) -> Tensor:
    """Cross-validated accuracy of the L2-penalised softmax classifier (see the module).

    Args:
        features: ``[M, D]`` pooled vectors (any float dtype; computed in float64).
        labels: ``[M]`` class ids.
        speakers: ``[M]`` integer speaker ids (any values; None: unknown, stratified folds).
        num_classes: the task's classes (default ``labels.max() + 1``).
        max_folds: at most this many folds (groups beyond are merged).
        tolerance: stop when every entry of the gradient of each fold's mean objective
            (per training sample, in the preconditioned coordinates) is below this.
        max_iterations: L-BFGS iterations at most.

    Returns:
        Scalar float64 in [0, 1]: the fraction of the scored samples that the classifier
        fitted without their fold classifies correctly.
    """
    num_classes = check_labelled_frames(features, labels, num_classes)
    count = features.shape[0]
    if count < 3:
        raise UndefinedScore(f"the logistic probe needs at least 3 samples to hold some out, got {count}")
    if max_folds < 2:
        raise ValueError(f"`max_folds` must be at least 2, got {max_folds}")
    x = zscored_samples(features)
    labels = labels.to(x.device).long()
    fold_of, scored = held_out_folds(x, labels, speakers, num_classes, max_folds)
    train = fold_of != torch.arange(int(fold_of.max()) + 1, device=x.device).unsqueeze(1)  # [F, M]
    logits = fit_softmax_folds(x, labels, train, num_classes, tolerance, max_iterations)  # [F, M, C]
    predicted = logits[fold_of, torch.arange(count, device=x.device)].argmax(1)  # by the fold without it
    return (predicted == labels)[scored].to(torch.float64).mean()


def held_out_folds(
    x: Tensor, labels: Tensor, speakers: Tensor | None, num_classes: int, max_folds: int
) -> tuple[Tensor, Tensor]:
    """The fold that holds out each row (``[M]`` ids from 0, every fold non-empty), and which
    rows are scored (``[M]`` bool): the speakers of :func:`held_out_groups` merged into at
    most ``max_folds`` folds, or, where it holds out single samples, the samples of ``x``
    ([M, D] float64) dealt class by class into ``max_folds`` folds, in the order of their
    projections on a fixed random direction."""
    groups, scored = held_out_groups(labels, speakers, num_classes)
    fold_of = torch.empty_like(labels)
    if len(groups) == labels.shape[0]:  # single samples: stratified folds
        generator = torch.Generator().manual_seed(0)
        direction = torch.randn(x.shape[1], generator=generator, dtype=torch.float64).to(x.device)
        order = torch.argsort(x @ direction, stable=True)
        order = order[torch.argsort(labels[order], stable=True)]  # by class, then by projection
        fold_of[order] = torch.arange(labels.shape[0], device=labels.device) % max_folds
        return fold_of, scored
    for group, rows in enumerate(groups):  # speakers, in turn into the folds
        fold_of[rows] = group % max_folds
    return fold_of, scored


def fit_softmax_folds(
    x: Tensor, labels: Tensor, train: Tensor, num_classes: int, tolerance: float, max_iterations: int
) -> Tensor:
    """Fit the penalised softmax classifier of the module once per fold, all folds at once.

    Args:
        x: ``[M, D]`` float64 features.
        labels: ``[M]`` class ids.
        train: ``[F, M]`` bool, the training rows of each fold.
        num_classes: C.
        tolerance, max_iterations: the stopping rule of L-BFGS (see
            :func:`logistic_probe_accuracy`).

    Returns:
        ``[F, M, C]`` float64 logits of every sample under each fold's fit (``-inf`` for
        the classes the fold's training rows lack).
    """
    folds, dims = train.shape[0], x.shape[1]
    # L-BFGS runs in preconditioned coordinates U, W = Q U: with Q = (X^T X / C + I)^(-1/2)
    # (and (M / C)^(-1/2) for the intercept), the curvature of the objective at the start
    # (uniform class probabilities, whose softmax Hessian is about I / C) is about I, where in
    # W it spans the eigenvalues of X^T X / C + I. The optimum is the same; only the path
    # to it is shorter.
    eigenvalues, eigenvectors = torch.linalg.eigh(x.T @ x)
    scales = (eigenvalues.clamp_min(0) / num_classes + 1).rsqrt()
    precondition = torch.zeros(dims + 1, dims + 1, dtype=torch.float64, device=x.device)
    precondition[:dims, :dims] = (eigenvectors * scales) @ eigenvectors.T
    precondition[dims, dims] = (x.shape[0] / num_classes) ** -0.5
    basis = torch.cat([x, torch.ones_like(x[:, :1])], 1) @ precondition  # [M, D + 1]
    coordinates = torch.zeros(folds, dims + 1, num_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    mask = train.to(torch.float64)
    sizes = mask.sum(1)  # [F]
    counts = mask @ torch.nn.functional.one_hot(labels, num_classes).to(torch.float64)  # [F, C]
    absent = (counts == 0).unsqueeze(1)  # [F, 1, C]: classes a fold cannot learn get no logit
    optimizer = torch.optim.LBFGS(
        [coordinates],
        lr=1.0,
        max_iter=max_iterations,
        tolerance_grad=tolerance,
        tolerance_change=0.0,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> Tensor:
        optimizer.zero_grad()
        logits = torch.matmul(basis, coordinates).masked_fill(absent, -math.inf)  # [F, M, C]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, num_classes), labels.repeat(folds), reduction="none"
        ).reshape(folds, -1)
        nll = nll.masked_fill(~train, 0.0)  # a held-out sample of an absent class: inf, not fitted
        weight = torch.matmul(precondition[:dims, :dims], coordinates[:, :dims])  # [F, D, C]
        penalty = 0.5 * (weight**2).sum((1, 2))  # [F]: the intercept is not penalised
        loss = ((nll.sum(1) + penalty) / sizes).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
        objective()
    largest = float(coordinates.grad.abs().max())
    if largest > tolerance:
        warnings.warn(
            f"the logistic probe's L-BFGS (at most {max_iterations} iterations) stopped at a gradient entry of "
            f"{largest:.1e}, above the tolerance {tolerance:.0e}: its folds' fits are approximate",
            RuntimeWarning,
            stacklevel=3,
        )
    with torch.no_grad():
        return torch.matmul(basis, coordinates).masked_fill(absent, -math.inf)
