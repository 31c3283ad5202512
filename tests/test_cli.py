"""train.py subcommands on tiny settings, W&B modes, rank statistics."""

import csv
import json
import logging
import math
import os
import warnings

import numpy as np
import pytest
import yaml
from scipy import stats
from tiny_models import CONFORMER, save_conformer

from lightning_tx.cli import main
from lightning_tx.loggers import TxWandbLogger
from lightning_tx.ranking import rank_agreement, result_reliability, result_standard_error


def _rank_config(tmp_path, corpus, conformer):
    config = {
        "seed_everything": 0,
        "trainer": {
            "default_root_dir": str(tmp_path),
            "accelerator": "cpu",
            "devices": 1,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
        },
        "model": {
            "class_path": "lightning_tx.ranking.RankingModule",
            "init_args": {
                "estimators": ["logme", "gbc"],
                "candidates": [
                    {"encoder": {"class_path": "lightning_tx.encoders.Filterbank", "init_args": {"n_mels": 24}}},
                    {
                        "name": "tiny-conformer",
                        "layers": [0, -1],
                        "encoder": {
                            "class_path": "lightning_tx.encoders.ConformerEncoder",
                            "init_args": {"state_dict": conformer, **CONFORMER},
                        },
                    },
                ],
            },
        },
        "data": {"manifest": str(corpus), "batch_size": 6},
    }
    path = tmp_path / "rank.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def ranked(tmp_path_factory, tiny_corpus):
    tmp_path = tmp_path_factory.mktemp("rank")
    conformer = save_conformer(str(tmp_path / "conformer.pt"))
    main(["rank", "--config", str(_rank_config(tmp_path, tiny_corpus, conformer))])
    return tmp_path


def test_rank_writes_the_ranking(ranked):
    ranking = json.loads((ranked / "ranking.json").read_text())
    assert ranking["estimators"] == ["logme", "gbc"] and ranking["num_classes"] == 3
    rows = ranking["rows"]
    assert [(r["candidate"], r["layer"]) for r in rows if r["candidate"] == "tiny-conformer"] in (
        [("tiny-conformer", 0), ("tiny-conformer", 2)],
        [("tiny-conformer", 2), ("tiny-conformer", 0)],
    )
    assert len(rows) == 3 and [r["rank"] for r in rows] == [1, 2, 3]
    logme_scores = [r["scores"]["logme"] for r in rows]
    assert logme_scores == sorted(logme_scores, reverse=True)
    for name in ("ranking.csv", "ranking.md", "ranking.png"):
        assert (ranked / name).stat().st_size > 0
    assert rows[0]["encoder"]["class_path"].startswith("lightning_tx.encoders")


def _confirm_args(ranked, tiny_corpus, run_dir, max_epochs: int) -> list[str]:
    """``train.py confirm`` of the ``ranked`` fixture's ranking on the tiny corpus, into ``run_dir``."""
    return [
        "confirm",
        "--model",
        "lightning_tx.finetune.FineTuneModule",
        "--data.manifest",
        str(tiny_corpus),
        "--data.batch_size",
        "6",
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--ranking",
        str(ranked / "ranking.json"),
        "--max_epochs",
        str(max_epochs),
    ]


def test_confirm_all_then_only(ranked, tiny_corpus):
    args = _confirm_args(ranked, tiny_corpus, ranked, max_epochs=1)
    rows = json.loads((ranked / "ranking.json").read_text())["rows"]
    main([*args, "--top_k", "2", "--only", "1"])
    written = sorted(p.name for p in (ranked / "confirm").glob("*.json"))
    assert len(written) == 1 and written[0].startswith(f"{rows[1]['candidate']}-L{rows[1]['layer']}-")
    with pytest.warns(UserWarning, match="only 2 fine-tuned candidates"):
        main([*args, "--top_k", "2"])
    two = json.loads((ranked / "confirm.json").read_text())
    assert two["agreement"]["logme"]["spearman_rho"] is None  # no NaN: undefined with 2 candidates
    main([*args, "--all", "true"])
    report = json.loads((ranked / "confirm.json").read_text())
    assert len(report["runs"]) == 3 and report["result_metric"] == "accuracy"
    assert set(report["agreement"]) == {"logme", "gbc"}
    assert {"spearman_rho", "spearman_p", "kendall_tau", "weighted_tau", "top1_regret"} <= set(
        report["agreement"]["gbc"]
    )
    assert len(list((ranked / "confirm").glob("*.json"))) == 3  # identical fine-tunes were reused
    main([*args, "--all", "true", "--model.learning_rate", "0.02"])  # another recipe: fine-tuned again
    assert len(list((ranked / "confirm").glob("*.json"))) == 6
    assert (ranked / "confirm.png").stat().st_size > 0


def test_confirm_sweeps_learning_rates_on_val_and_averages_seeds(ranked, tiny_corpus, tmp_path, caplog):
    args = _confirm_args(ranked, tiny_corpus, tmp_path, max_epochs=2)
    args += ["--all", "true", "--learning_rates", "[0.0001, 0.05]", "--seeds", "[0, 1, 2]"]
    caplog.set_level(logging.INFO, logger="lightning.pytorch")  # whatever earlier tests left it at
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(args)
    # the frozen encoder is in eval mode on purpose: no Lightning warning about it in each of the 12 runs
    assert not [w for w in caught if "in eval mode at the start of training" in str(w.message)]
    said = [record.getMessage() for record in caplog.records]
    assert sum("GPU available" in line for line in said) == 1  # confirm's own trainer, not one per run
    assert any(line.startswith("[confirm] fine-tuning 3:") for line in said)
    report = json.loads((tmp_path / "confirm.json").read_text())
    assert report["seeds"] == [0, 1, 2] and len(report["runs"]) == 3
    for run in report["runs"]:
        val = {float(rate): value for rate, value in run["val"].items()}
        assert set(val) == {0.0001, 0.05}
        assert run["learning_rate"] == max(val, key=lambda rate: (val[rate], -rate))  # ties: the first listed
        assert len(run["results"]) == 3 and run["result"] == pytest.approx(sum(run["results"]) / 3)
        mean = run["result"]
        assert run["result_std"] == pytest.approx((sum((r - mean) ** 2 for r in run["results"]) / 2) ** 0.5)
    # two rates with the first seed, then two more seeds at the chosen rate: 4 fine-tunes per candidate
    files = list((tmp_path / "confirm").glob("*.json"))
    assert len(files) == 4 * 3
    runs = [json.loads(f.read_text()) for f in files]
    assert {(r["learning_rate"], r["seed"]) for r in runs} >= {(0.0001, 0), (0.05, 0)}
    main(args)  # everything is on disk: nothing trains again, the report is the same
    assert len(list((tmp_path / "confirm").glob("*.json"))) == 12
    assert json.loads((tmp_path / "confirm.json").read_text())["runs"] == report["runs"]
    markdown = (tmp_path / "confirm.md").read_text()
    assert "accuracy (mean ± sd, 3 seeds)" in markdown and "learning rate" in markdown
    # the reliability of these results: their own test set's size and the seeds' spread
    with open(tiny_corpus, encoding="utf-8") as handle:
        test_utterances = sum(row["split"] == "test" for row in csv.DictReader(handle))
    assert report["reliability_test_units"] == test_utterances
    errors = [result_standard_error(r["result"], r["result_std"], 3, test_utterances) for r in report["runs"]]
    expected = result_reliability([r["result"] for r in report["runs"]], errors)
    if math.isnan(expected):
        assert report["reliability"] is None
    else:
        assert report["reliability"] == pytest.approx(expected) and "Reliability of these results" in markdown


def test_fit_subcommand_ctc(tmp_path, tiny_corpus):
    main(
        [
            "fit",
            "--model",
            "lightning_tx.finetune.FineTuneModule",
            "--model.encoder",
            "lightning_tx.encoders.Filterbank",
            "--model.task",
            "ctc",
            "--model.blank_labels",
            "[sil]",
            "--data.manifest",
            str(tiny_corpus),
            "--data.batch_size",
            "6",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.max_epochs",
            "1",
            "--trainer.accelerator",
            "cpu",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_checkpointing",
            "false",
            "--trainer.log_every_n_steps",
            "1",
        ]
    )
    metrics = next(tmp_path.glob("csv/version_*/metrics.csv")).read_text()
    assert "val/per" in metrics and "train/loss" in metrics
    assert next(tmp_path.glob("csv/version_*/config.yaml")).is_file()


def test_print_config(capsys):
    with pytest.raises(SystemExit):
        main(["rank", "--config", "configs/rank.yaml", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "lightning_tx.ranking.RankingModule"


def test_configs_compose_with_repeated_config(tmp_path, capsys):
    override = tmp_path / "more.yaml"
    override.write_text(yaml.safe_dump({"data": {"batch_size": 3}}))
    with pytest.raises(SystemExit):
        main(["rank", "--config", "configs/rank.yaml", "--config", str(override), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["data"]["batch_size"] == 3


def test_wandb_offline_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    with pytest.warns(UserWarning, match="no API key"):
        logger = TxWandbLogger(save_dir=str(tmp_path), online=True, group="g", job_type="rank")
    logger.log_metrics({"transfer/logme/layer_0": 0.5})
    logger.log_table(key="ranking", columns=["a"], data=[[1]])
    logger.experiment.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert "WANDB_MODE" not in os.environ  # the process-wide setting is left alone


def test_wandb_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = TxWandbLogger(save_dir=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.log_metrics({"x": 1.0})
    assert not list(tmp_path.glob("wandb/offline-run-*"))


def test_result_standard_error_and_reliability():
    """The standard error: the seeds' (over sqrt(seeds)) plus the test set's binomial error;
    the reliability: 1 without noise, lower with more of it, and for two results its closed
    form, 2 Phi(d / sqrt(se_1^2 + se_2^2)) - 1 (the redrawn pair keeps the order or not)."""
    assert result_standard_error(0.8, 0.03, 3) == pytest.approx(0.03 / math.sqrt(3))
    assert result_standard_error(0.8, 0.03, 3, 100) == pytest.approx(math.sqrt(0.03**2 / 3 + 0.8 * 0.2 / 100))
    assert result_standard_error(1.2, 0.0, 1, 50) == 0.0  # clipped to [0, 1]: no binomial error
    with pytest.raises(ValueError, match="test_units"):
        result_standard_error(0.5, 0.0, 1, 0)
    results = [0.30, 0.35, 0.40, 0.45, 0.50, 0.55]
    assert result_reliability(results, [0.0] * 6) == pytest.approx(1.0)
    small, large = result_reliability(results, [0.01] * 6), result_reliability(results, [0.05] * 6)
    assert 1.0 > small > large > 0.0
    assert math.isnan(result_reliability([0.5, 0.6], [0.01, 0.01]))  # fewer than 3
    # three results, one far apart from a close pair: the pair decides, so rho is 1 or 0.5
    close = result_reliability([0.50, 0.52, 0.99], [0.01, 0.01, 0.01], draws=20000)
    kept = stats.norm.cdf(0.02 / math.sqrt(2 * 0.01**2))
    assert close == pytest.approx(kept * 1.0 + (1 - kept) * 0.5, abs=0.01)
    with pytest.raises(ValueError, match="equal-length"):
        result_reliability([0.1, 0.2, 0.3], [0.01, 0.01])


def test_rank_agreement_against_scipy():
    g = np.random.default_rng(0)
    scores, results = g.normal(size=8), g.normal(size=8)
    out = rank_agreement(scores, results)
    assert out["spearman_rho"] == pytest.approx(stats.spearmanr(scores, results).statistic)
    assert out["kendall_tau"] == pytest.approx(stats.kendalltau(scores, results).statistic)
    assert out["weighted_tau"] == pytest.approx(stats.weightedtau(scores, results).statistic)
    assert rank_agreement([3, 2, 1], [0.9, 0.5, 0.1])["top1_regret"] == 0
    assert rank_agreement([1, 2, 3], [0.8, 0.5, 0.4])["top1_regret"] == pytest.approx(0.5)
    # Tied best scores: the expected regret of a pick among them, whatever their order.
    assert rank_agreement([3, 3, 1], [1.0, 0.5, 0.8])["top1_regret"] == pytest.approx(0.25)
    assert rank_agreement([3, 3, 1], [0.5, 1.0, 0.8])["top1_regret"] == pytest.approx(0.25)
    assert rank_agreement([2, 2, 2], [1.0, 0.5, 0.6])["top1_regret"] == pytest.approx(0.3)
    assert rank_agreement([1, 2, 3], [0.8, 0.5, 0.4], higher_is_better=False)["spearman_rho"] == pytest.approx(1.0)


def test_demo_ranks_with_the_rank_configs_estimators_first(tmp_path):
    """The demo orders its ranking as `train.py rank --config configs/rank.yaml` does: that
    config's estimators first and in order, then the others it compares, each once."""
    import yaml

    from lightning_tx.demo import COMPARED_ESTIMATORS, RANK_CONFIG, demo_estimators

    chain = yaml.safe_load(RANK_CONFIG.read_text(encoding="utf-8"))["model"]["init_args"]["estimators"]
    estimators = demo_estimators()
    assert estimators[: len(chain)] == chain and chain[0] == "pooled_voice_probe"
    assert set(estimators) == {*chain, *COMPARED_ESTIMATORS} and len(set(estimators)) == len(estimators)
    with pytest.raises(FileNotFoundError, match="rank.yaml"):
        demo_estimators(tmp_path / "rank.yaml")


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capfd, caplog):
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        report = __import__("lightning_tx.demo", fromlist=["main"]).main(
            ["--quick", "--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data")]
        )
    said = "".join(capfd.readouterr()) + caplog.text  # the demo's prints and the subcommands' log
    assert said.count("Reliability of these results") == 1  # confirm's tables, said once
    assert len(report["runs"]) == 10  # fbank, mfcc, every layer of two zoo Conformers (untrained: 5, ctc-en-small: 3)
    for name in ("ranking.json", "ranking.png", "confirm.json", "confirm.png", "rank.yaml", "confirm.yaml"):
        assert (tmp_path / "run" / name).is_file()
    assert os.path.isdir(tmp_path / "run" / "csv")
