r"""A linear probe in closed form: the leave-one-out accuracy of a ridge classifier.

What a team confirms an encoder with is a linear head trained on its frozen features. This
estimates that head's held-out accuracy without training it: a ridge regression from
z-scored features to one-hot class targets (an unpenalised intercept), its penalty chosen by
leave-one-out squared error, scored by the leave-one-out accuracy of its arg-max. Both
leave-one-out quantities are exact for ridge regression, from one SVD of the ``[M, D]``
sample: with the hat matrix :math:`H = \tfrac1M \mathbf 1\mathbf 1^T + X(X^TX + \lambda I)^{-1}X^T`
of the centred features, the prediction for sample :math:`i` by the model fitted without it is

.. math:: \hat y_{-i} = \frac{\hat y_i - H_{ii}\, y_i}{1 - H_{ii}}

(the least-squares classifier of LDA's family; cf. Hastie, Tibshirani, Friedman, *The
Elements of Statistical Learning*, 7.10 and 4.2). Invariant to the scale and offset of every
feature dimension (the z-scoring); higher is better, in [0, 1]. It is meant for pooled
vectors (one per utterance or token): on frames, leave-one-out would keep the left-out
frame's near-duplicate neighbours of the same utterance in the fit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_tx.functional.validation import UndefinedScore, check_labelled_frames

# Penalties tried, relative to the mean squared singular value of the z-scored features
# (= the mean eigenvalue of X^T X, so the grid means the same for any M and D).
RELATIVE_PENALTIES = tuple(10.0**k for k in range(-4, 5))


def ridge_probe_accuracy(
    features: Tensor,
    labels: Tensor,
    *,
    num_classes: int | None = None,
    penalties: tuple[float, ...] = RELATIVE_PENALTIES,
) -> Tensor:
    """Leave-one-out accuracy of a ridge classifier on ``[M, D]`` features for ``[M]`` class ids.

    Args:
        features: ``[M, D]`` pooled vectors (any float dtype; computed in float64).
        labels: ``[M]`` class ids.
        num_classes: the task's classes (default ``labels.max() + 1``).
        penalties: ridge penalties to choose from (by leave-one-out squared error), relative
            to the mean eigenvalue of ``X^T X``.

    Returns:
        Scalar float64 in [0, 1]: the fraction of samples the model fitted without them
        classifies correctly.
    """
    num_classes = check_labelled_frames(features, labels, num_classes)
    count = features.shape[0]
    if count < 3:
        raise UndefinedScore(f"the probe needs at least 3 samples to leave one out, got {count}")
    x = zscored_samples(features)
    labels = labels.to(x.device).long()
    targets = torch.nn.functional.one_hot(labels, num_classes).to(torch.float64)
    centred_targets = targets - targets.mean(0)
    u, squares, singular = left_singular_vectors(x)
    projected = u.T @ centred_targets  # [r, C]
    mean_eigenvalue = (singular**2).sum() / x.shape[1]
    best_error, best_accuracy = None, None
    for relative in penalties:
        shrink = squares / (squares + relative * mean_eigenvalue)  # [r]
        fitted = targets.mean(0) + u @ (shrink.unsqueeze(1) * projected)  # [M, C]
        leverage = 1.0 / count + (u.pow(2) * shrink).sum(1)  # H_ii
        if float(leverage.max()) >= 1 - 1e-9:  # a sample fitted exactly: no penalty left to leave it out
            continue
        left_out = (fitted - leverage.unsqueeze(1) * targets) / (1 - leverage).unsqueeze(1)
        error = (left_out - targets).pow(2).sum()
        if best_error is None or float(error) < float(best_error):
            best_error = error
            best_accuracy = (left_out.argmax(1) == labels).to(torch.float64).mean()
    if best_accuracy is None:
        raise UndefinedScore("every penalty fits some sample exactly: too few samples for a leave-one-out probe")
    return best_accuracy


def zscored_samples(features: Tensor) -> Tensor:
    """``[M, D']`` float64: each dimension of ``[M, D]`` samples that varies, centred and
    divided by its standard deviation over them (constant dimensions dropped)."""
    x = features.to(torch.float64)
    spread = x.std(0, correction=0)
    varying = spread > 0
    if not bool(varying.any()):
        raise UndefinedScore("the features are constant over the samples: the probe has nothing to fit")
    return (x[:, varying] - x[:, varying].mean(0)) / spread[varying]


def left_singular_vectors(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(u [M, r], squares [r], singular [min(M, D)])`` of ``[M, D]`` ``x``: the left singular
    vectors of its ``r`` non-zero singular values (above round-off), their squares, and
    every singular value."""
    u, singular, _ = torch.linalg.svd(x, full_matrices=False)
    keep = singular > singular.max() * max(x.shape) * torch.finfo(torch.float64).eps
    return u[:, keep], singular[keep] ** 2, singular
