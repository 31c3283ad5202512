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


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """18 utterances of the built-in corpus: 1 language, 2 speakers, 3 words, 3 repetitions."""
    from lightning_tx.data.corpus import build_corpus

    root = tmp_path_factory.mktemp("corpus")
    return build_corpus(
        root,
        languages=("en",),
        speakers_per_language=2,
        words_per_language=3,
        repetitions=3,
        workers=1,
        progress=False,
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")
