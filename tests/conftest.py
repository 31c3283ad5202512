import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def classification_data(n: int, d: int, c: int, seed: int = 0, scale: float = 1.0, offset: float = 0.0):
    """Features whose class means differ, so every estimator has signal to find."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % c  # every class present
    labels = labels[torch.randperm(n, generator=g)]
    centers = torch.randn(c, d, generator=g, dtype=torch.float64)
    features = centers[labels] * 0.7 + torch.randn(n, d, generator=g, dtype=torch.float64)
    return features * scale + offset, labels
