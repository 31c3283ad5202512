"""The ready-to-compose callback configs of callbacks/ in a user's own LightningCLI script."""

import csv
import math
import os
import subprocess
import sys

import pytest
import yaml

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A user's folder with the built-in corpus (tiny: English task, German source) at data/corpus."""
    from lightning_tx.data.corpus import build_corpus

    root = tmp_path_factory.mktemp("user")
    build_corpus(root / "data" / "corpus", speakers_per_language=2, words_per_language=3, repetitions=3,
                 workers=1, progress=False)  # fmt: skip
    theirs = {
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "accelerator": "cpu", "enable_progress_bar": False,
                    "enable_checkpointing": False, "default_root_dir": "runs",
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]},
        "model": {"num_classes": 3},
        "data": {"manifest": "data/corpus/manifest-en.csv", "batch_size": 4},
    }  # fmt: skip
    (root / "theirs.yaml").write_text(yaml.safe_dump(theirs))
    return root


def _fit(workdir, *configs, extra=()):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "WANDB_MODE": "disabled"}
    args = [sys.executable, os.path.join(HERE, "user_lightning_cli.py"), "fit", "--config", "theirs.yaml"]
    for config in configs:
        args += ["--config", os.path.join(ROOT, "callbacks", config)]
    subprocess.run([*args, *extra], check=True, cwd=workdir, env=env, timeout=300)
    logs = sorted((workdir / "runs" / "lightning_logs").glob("version_*/metrics.csv"))[-1]
    return next(csv.DictReader(open(logs)))


@pytest.mark.slow
def test_callback_config_composes_with_a_users_config(workdir):
    row = _fit(workdir, "transferability.yaml")
    for estimator in ("pooled_logme_standardized", "logme", "halpha"):
        assert math.isfinite(float(row[f"transfer/{estimator}/layer_0"])), estimator


@pytest.mark.slow
def test_callback_config_with_source_audio(workdir):
    row = _fit(workdir, "transferability-swd.yaml")
    assert float(row["transfer/sliced_wasserstein/layer_0"]) > 0
    # The source can be given on the command line too (identical audio would be at distance 0).
    row = _fit(workdir, "transferability-swd.yaml",
               extra=["--trainer.callbacks.source", "data/corpus/manifest.csv"])  # fmt: skip
    assert float(row["transfer/sliced_wasserstein/layer_0"]) > 0
