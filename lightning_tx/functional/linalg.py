"""Small linear-algebra kernels shared by the estimators."""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import blas
from torch import Tensor


def as_float64(features: Tensor) -> Tensor:
    """``features`` in float64. On the CPU the cast goes through numpy: torch's CPU threads
    keep spinning for a while after an op and would slow the BLAS threads that run next."""
    if features.dtype == torch.float64:
        return features
    if features.device.type != "cpu":
        return features.to(torch.float64)
    if features.dtype not in (torch.float16, torch.float32):  # e.g. bfloat16, which numpy lacks
        return features.detach().to(torch.float64)
    return torch.from_numpy(features.detach().contiguous().numpy().astype(np.float64))


def add_gram_(gram_upper: Tensor, features: Tensor) -> Tensor:
    """Add ``F^T F`` of ``[N, D]`` features to a ``[D, D]`` float64 accumulator, in place.

    Only the upper triangle is guaranteed to be updated (on the CPU this is one BLAS
    ``dsyrk``: half the flops of a matrix product); read the result with
    :func:`symmetric_from_upper`. Returns ``gram_upper``.
    """
    features = as_float64(features)
    if features.shape[0] == 0:
        return gram_upper
    if features.device.type != "cpu" or not gram_upper.is_contiguous():
        return gram_upper.add_(features.T @ features)
    rows = features.detach().contiguous().numpy()
    # Transposes of C-ordered arrays are Fortran-ordered views, which BLAS updates in place:
    # the lower triangle of gram_upper.T is the upper triangle of gram_upper.
    target = gram_upper.numpy().T
    result = blas.dsyrk(1.0, rows.T, beta=1.0, c=target, trans=0, lower=1, overwrite_c=1)
    if not np.shares_memory(result, target):  # defensive: BLAS wrapper made a copy
        target[...] = result
    return gram_upper


def symmetric_from_upper(matrix: Tensor) -> Tensor:
    """The symmetric matrix whose upper triangle (diagonal included) is ``matrix``'s."""
    upper = matrix.triu()
    return upper + upper.triu(1).T


def gram_matrix(features: Tensor) -> Tensor:
    """``[D, D]`` float64 ``F^T F`` of ``[N, D]`` features."""
    dim = features.shape[1]
    accumulator = torch.zeros(dim, dim, dtype=torch.float64, device=features.device)
    return symmetric_from_upper(add_gram_(accumulator, features))
