"""Small linear-algebra kernels shared by the estimators."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def as_float64(features: Tensor) -> Tensor:
    """``features`` in float64. On the CPU the cast goes through numpy: torch's CPU threads
    keep spinning for a while after an op and slow what runs next (two separate runs of
    ``benchmarks/gram_threads.py`` on 2 cores: a LogME pass of a 96-wide encoder took 1.50 s
    with torch's cast and 1.19 s with numpy's; not compared within one process)."""
    if features.dtype == torch.float64:
        return features
    if features.device.type != "cpu":
        return features.to(torch.float64)
    if features.dtype not in (torch.float16, torch.float32):  # e.g. bfloat16, which numpy lacks
        return features.detach().to(torch.float64)
    return torch.from_numpy(features.detach().contiguous().numpy().astype(np.float64))


def add_gram_(gram_upper: Tensor, features: Tensor) -> Tensor:
    """Add ``F^T F`` of ``[N, D]`` features to a ``[D, D]`` float64 accumulator, in place.

    The whole matrix is updated, but callers read it with :func:`symmetric_from_upper`, so
    only its upper triangle is part of the contract (a kernel that updates half may replace
    this one). Returns ``gram_upper``.

    One torch ``addmm`` on every device. An earlier version called BLAS ``dsyrk`` through
    SciPy on the CPU (half the flops), but SciPy's BLAS threads and torch's threads then spin
    against each other between the encoder's ops and the statistics: on 2 cores a frozen pass
    of a 144-wide encoder with LogME took 3-5 times longer (``benchmarks/gram_threads.py``).
    """
    features = as_float64(features)
    if features.shape[0] == 0:
        return gram_upper
    return gram_upper.addmm_(features.T, features)


def symmetric_from_upper(matrix: Tensor) -> Tensor:
    """The symmetric matrix whose upper triangle (diagonal included) is ``matrix``'s."""
    upper = matrix.triu()
    return upper + upper.triu(1).T


def gram_matrix(features: Tensor) -> Tensor:
    """``[D, D]`` float64 ``F^T F`` of ``[N, D]`` features."""
    dim = features.shape[1]
    accumulator = torch.zeros(dim, dim, dtype=torch.float64, device=features.device)
    return symmetric_from_upper(add_gram_(accumulator, features))
