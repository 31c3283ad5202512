r"""k-nearest-neighbour accuracy: a non-parametric probe of how well features separate classes.

Renggli, Pinto, Rimanic, Puigcerver, Riquelme, Zhang, Lucic, "Which Model to Transfer?
Finding the Needle in the Growing Haystack" (CVPR 2022) found the k-NN accuracy of frozen
features a strong, cheap proxy of fine-tuned accuracy. Here it is the leave-one-group-out
accuracy of a k-NN majority vote on a sample of labelled frames (or pooled segments):

.. math:: \mathrm{kNN} = \frac1M \sum_i \mathbb 1\big[\,y_i = \mathrm{vote}\{y_j : j \in
          \mathrm{NN}_k(i),\ g_j \ne g_i\}\big]

Neighbours of the same group ``g`` (the same utterance) are never counted: adjacent frames
of one utterance are near duplicates and would make any feature look separable. Distances
are Euclidean after z-scoring each dimension over the sample, so the score is invariant to
the scale and offset of every dimension. Votes are ties broken towards nearer neighbours.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_tx.functional.validation import UndefinedScore, check_labelled_frames


def knn_accuracy(
    features: Tensor,
    labels: Tensor,
    groups: Tensor | None = None,
    *,
    k: int = 5,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """Leave-one-group-out k-NN accuracy of ``[M, D]`` features for ``[M]`` class ids.

    Args:
        features: ``[M, D]`` frames or pooled segments.
        labels: ``[M]`` class ids.
        groups: ``[M]`` group ids (utterances); neighbours of the own group are excluded
            (default: every sample its own group, plain leave-one-out).
        k: neighbours that vote.
        num_classes: the task's classes (default ``labels.max() + 1``).
        chunk_size: rows of the distance matrix computed at once (memory ``chunk_size * M``).

    Returns:
        Scalar float64 in [0, 1]: the fraction of samples whose neighbours' vote is their label.
    """
    num_classes = check_labelled_frames(features, labels, num_classes)
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}")
    count = features.shape[0]
    groups = torch.arange(count, device=features.device) if groups is None else groups.to(features.device)
    if groups.shape != (count,):
        raise ValueError(f"`groups` must have shape [M]=[{count}], got {tuple(groups.shape)}")
    if int(torch.unique(groups).numel()) < 2:
        raise UndefinedScore("k-NN needs samples of at least 2 groups (utterances): every neighbour is excluded")
    x = features.to(torch.float64)
    x = (x - x.mean(0)) / x.std(0, correction=0).clamp_min(torch.finfo(torch.float64).tiny)
    labels = labels.to(features.device).long()
    norms = (x * x).sum(1)
    correct = x.new_zeros(())
    # Nearer neighbours weigh a hair more, so ties go to the class of the nearest.
    weights = 1.0 + torch.arange(k, 0, -1, dtype=torch.float64, device=x.device) * 1e-6
    for start in range(0, count, chunk_size):
        rows = slice(start, start + chunk_size)
        distances = norms[rows].unsqueeze(1) + norms.unsqueeze(0) - 2 * x[rows] @ x.T
        distances = distances.masked_fill(groups[rows].unsqueeze(1) == groups.unsqueeze(0), float("inf"))
        nearest = distances.topk(min(k, count - 1), dim=1, largest=False)
        usable = torch.isfinite(nearest.values)
        votes = x.new_zeros(distances.shape[0], num_classes)
        votes.scatter_add_(1, labels[nearest.indices], weights[: nearest.indices.shape[1]] * usable)
        correct += (votes.argmax(1) == labels[rows]).sum()
    return correct / count
