"""Ranking-quality benchmark: do the estimators rank encoders (and layers) as fine-tuning does?

Builds everything itself, on a CPU, with nothing downloaded:

1. **Corpus**: the built-in eSpeak NG corpus (English and German keywords).
2. **Zoo**: small log-mel Conformers pre-trained by the project's own code on English
   speakers that the tasks never hear (or on German): CTC phone recognition at three
   training budgets (checkpoints of one run), HuBERT-style masked prediction of k-means
   units (self-supervised), speaker classification, CTC on German (another language), a
   larger CTC model (two sizes), and an untrained one; plus fbank and MFCC.
3. **Tasks** on held-out English voices: keyword spotting (words), speaker identification,
   and phone recognition (CTC; frame labels from the synthesizer's alignments).
4. **Scores**: every estimator, every candidate, every layer, with wall time (one frozen
   pass per candidate and task). TIH-SWD compares each model's frames on its own
   pre-training audio (source) with the task's; models without source data get none.
5. **Ground truth** with one fixed recipe: every candidate fine-tuned (its last layer, whole
   model), and every layer of two zoo models (the model truncated at that layer).
6. **Report**: ``docs/benchmark.md`` and plots: Spearman rho (p), Kendall tau, weighted
   tau and top-1 regret per task and estimator, against two baselines (parameter count and
   a random order), and the cost of scoring against fine-tuning everything.

    .venv/bin/python benchmarks/ranking_quality.py            # full setting (about 20 min on 2 cores)
    .venv/bin/python benchmarks/ranking_quality.py --quick    # CI setting (1-3 min)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from lightning_tx.data import SpeechDataModule
from lightning_tx.data.corpus import build_corpus
from lightning_tx.encoders import MFCC, ConformerEncoder, Filterbank, FrozenEncoder
from lightning_tx.finetune import FineTuneModule
from lightning_tx.metrics import get_estimator
from lightning_tx.pretraining import SMALL_CONFORMER, count_parameters, pretrain
from lightning_tx.ranking.statistics import rank_agreement
from lightning_tx.scoring import EncoderFrames, ScoringSession, TaskLabels, speech_loader
from lightning_tx.scoring import score as score_pass

ESTIMATORS = ["logme", "hscore", "halpha", "gbc", "sliced_wasserstein"]


@dataclass
class Setting:
    speakers: int
    words: int
    repetitions: int
    heldout: int
    model: dict[str, Any]
    large_model: dict[str, Any]
    pretrain_epochs: int
    budgets: tuple[int, int, int]
    finetune_epochs: int


FULL = Setting(
    speakers=10,
    words=12,
    repetitions=4,
    heldout=4,
    model={**SMALL_CONFORMER, "dim": 96, "ffn_dim": 384, "num_layers": 4},
    large_model={**SMALL_CONFORMER, "dim": 144, "ffn_dim": 576, "num_layers": 6},
    pretrain_epochs=20,
    budgets=(2, 6, 20),
    finetune_epochs=10,
)
QUICK = Setting(
    speakers=4,
    words=5,
    repetitions=3,
    heldout=2,
    model=dict(SMALL_CONFORMER),
    large_model={**SMALL_CONFORMER, "dim": 96, "ffn_dim": 192},
    pretrain_epochs=3,
    budgets=(1, 2, 3),
    finetune_epochs=1,
)


# --------------------------------------------------------------------------- zoo
def build_zoo(setting: Setting, corpus: Path, models: Path) -> list[dict[str, Any]]:
    """Pre-train (or reuse) the zoo; returns candidate descriptions."""
    en_train = [f"en-{i:02d}" for i in range(setting.speakers - setting.heldout)]
    de_all = [f"de-{i:02d}" for i in range(setting.speakers)]
    manifest = corpus / "manifest.csv"
    runs = {  # name -> (objective, speakers, model kwargs, {epoch: file})
        "ctc-en": ("ctc", en_train, setting.model, {b: models / f"ctc-en-e{b}.pt" for b in setting.budgets}),
        "units-en": ("masked_units", en_train, setting.model, {setting.pretrain_epochs: models / "units-en.pt"}),
        "speaker-en": ("speaker", en_train, setting.model, {setting.pretrain_epochs: models / "speaker-en.pt"}),
        "ctc-de": ("ctc", de_all, setting.model, {setting.pretrain_epochs: models / "ctc-de.pt"}),
        "ctc-en-large": ("ctc", en_train, setting.large_model, {setting.pretrain_epochs: models / "ctc-en-large.pt"}),
    }
    seconds = {}
    for name, (objective, speakers, kwargs, files) in runs.items():
        if all(f.is_file() for f in files.values()):
            continue
        started = time.perf_counter()
        print(f"[zoo] pre-training {name} ({objective}) for {setting.pretrain_epochs} epochs")
        pretrain(
            objective,
            manifest,
            files,
            model_kwargs=kwargs,
            max_epochs=setting.pretrain_epochs,
            include={"speaker": speakers},
            accelerator="cpu",
        )
        seconds[name] = time.perf_counter() - started
    timing_file = models / "pretrain_seconds.json"
    timings = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    timings.update(seconds)
    timing_file.write_text(json.dumps(timings, indent=2))

    def conformer(name, kwargs, file, objective, speakers, epochs):
        return {
            "name": name,
            "kind": "conformer",
            "kwargs": kwargs,
            "state_dict": str(file) if file else None,
            "objective": objective,
            "source_speakers": speakers,
            "epochs": epochs,
        }

    zoo = [conformer("untrained", setting.model, None, "none", None, 0)]
    for budget in setting.budgets:
        zoo.append(
            conformer(
                f"ctc-en@{budget}", setting.model, models / f"ctc-en-e{budget}.pt", "ctc phones (en)", en_train, budget
            )
        )
    zoo += [
        conformer(
            "units-en",
            setting.model,
            models / "units-en.pt",
            "masked units (SSL, en)",
            en_train,
            setting.pretrain_epochs,
        ),
        conformer(
            "speaker-en",
            setting.model,
            models / "speaker-en.pt",
            "speaker classes (en)",
            en_train,
            setting.pretrain_epochs,
        ),
        conformer("ctc-de", setting.model, models / "ctc-de.pt", "ctc phones (de)", de_all, setting.pretrain_epochs),
        conformer(
            "ctc-en-large",
            setting.large_model,
            models / "ctc-en-large.pt",
            "ctc phones (en), large",
            en_train,
            setting.pretrain_epochs,
        ),
        {"name": "fbank", "kind": "fbank", "objective": "none", "source_speakers": None, "epochs": 0},
        {"name": "mfcc", "kind": "mfcc", "objective": "none", "source_speakers": None, "epochs": 0},
    ]
    for entry in zoo:
        entry["pretrain_seconds"] = timings.get(entry["name"].split("@")[0], 0.0)
    return zoo


def make_encoder(entry: dict[str, Any]) -> FrozenEncoder:
    if entry["kind"] == "fbank":
        return Filterbank(n_mels=40)
    if entry["kind"] == "mfcc":
        return MFCC(n_mfcc=20)
    torch.manual_seed(1234)  # the untrained model is the same random network every run
    return ConformerEncoder(entry["state_dict"], **entry["kwargs"])


# --------------------------------------------------------------------------- tasks
def tasks(setting: Setting, corpus: Path) -> dict[str, dict[str, Any]]:
    heldout = [f"en-{i:02d}" for i in range(setting.speakers - setting.heldout, setting.speakers)]
    common = {"manifest": corpus / "manifest.csv", "include": {"speaker": heldout}}
    return {
        "keywords": {**common, "label_column": "label", "frame_labels": "utterance", "task": "classification"},
        "speakers": {**common, "label_column": "speaker", "frame_labels": "utterance", "task": "classification"},
        "phones": {**common, "label_column": "label", "frame_labels": "alignment", "task": "ctc"},
    }


def datamodule(task: dict[str, Any], batch_size: int = 16) -> SpeechDataModule:
    dm = SpeechDataModule(
        manifest=task["manifest"],
        include=task["include"],
        label_column=task["label_column"],
        batch_size=batch_size,
        max_seconds=5.0,
        shuffle=True,
    )
    dm.setup()
    return dm


# --------------------------------------------------------------------------- scores
def source_data(corpus: Path, speakers: list[str], cache: dict[tuple[str, ...], SpeechDataModule]) -> SpeechDataModule:
    """The (unlabelled) pre-training audio of a model, read once per speaker set."""
    key = tuple(speakers)
    if key not in cache:
        cache[key] = SpeechDataModule(
            manifest=corpus / "manifest.csv",
            include={"speaker": speakers},
            batch_size=16,
            max_seconds=5.0,
            shuffle=False,
        )
        cache[key].setup()
    return cache[key]


def task_labels(task: dict[str, Any], dm: SpeechDataModule) -> TaskLabels:
    exclude = ("sil",) if task["frame_labels"] == "alignment" else ()
    return TaskLabels.from_datamodule(dm, task["frame_labels"], exclude=exclude)


def score(
    entry: dict[str, Any],
    labels: TaskLabels,
    dm: SpeechDataModule,
    sources: dict[tuple[str, ...], SpeechDataModule],
    corpus: Path,
) -> dict[str, Any]:
    """Every estimator for every layer of one candidate on one task's train split, through
    the scoring engine (TIH-SWD only for models with source data)."""
    encoder = make_encoder(entry)
    with_source = bool(entry["source_speakers"])
    estimators = [e for e in ESTIMATORS if with_source or not get_estimator(e).needs_source]
    started = time.perf_counter()
    session = ScoringSession(EncoderFrames(encoder, labels), estimators, labels.num_classes)
    target = speech_loader(dm, sample_rate=encoder.sample_rate)
    source = None
    if with_source:
        source = speech_loader(source_data(corpus, entry["source_speakers"], sources), sample_rate=encoder.sample_rate)
    results = score_pass(session, target, source)
    if not with_source:
        results["sliced_wasserstein"] = {k: float("nan") for k in range(encoder.num_layers)}
    return {
        "scores": results,
        "seconds": time.perf_counter() - started,
        "num_layers": encoder.num_layers,
        "parameters": count_parameters(encoder),
    }


# --------------------------------------------------------------------------- ground truth
def finetune(
    entry: dict[str, Any], task: dict[str, Any], dm: SpeechDataModule, layer: int, epochs: int, seed: int = 0
) -> dict[str, Any]:
    """One fixed recipe: AdamW, head lr 3e-3, encoder lr 1e-3, whole model (below ``layer``)."""
    L.seed_everything(seed, verbose=False)
    encoder = make_encoder(entry)
    trainable = entry["kind"] == "conformer"
    module = FineTuneModule(
        encoder=encoder,
        layer=layer,
        task=task["task"],
        mode="full" if trainable else "frozen",
        learning_rate=3e-3,
        encoder_learning_rate=1e-3,
        blank_labels=["sil"],
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        gradient_clip_val=5.0,
    )
    started = time.perf_counter()
    data = dm.at_sample_rate(encoder.sample_rate)
    trainer.fit(module, datamodule=data)
    result = trainer.test(module, datamodule=data, verbose=False)[0][f"test/{module.result_metric}"]
    value = float(result) if module.result_metric == "accuracy" else 1.0 - float(result)
    return {"result": value, "seconds": time.perf_counter() - started}


# --------------------------------------------------------------------------- report
def random_baseline(results: list[float], draws: int = 2000, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rhos, regrets = [], []
    for _ in range(draws):
        agreement = rank_agreement(rng.permutation(len(results)).astype(float), results)
        rhos.append(agreement["spearman_rho"])
        regrets.append(agreement["top1_regret"])
    return {
        "spearman_rho_mean": float(np.nanmean(rhos)),
        "spearman_rho_std": float(np.nanstd(rhos)),
        "top1_regret_mean": float(np.mean(regrets)),
    }


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def agreement_rows(candidates: list[str], scores: dict[str, list[float]], results: list[float]) -> list[str]:
    lines = []
    for estimator, values in scores.items():
        keep = [i for i, v in enumerate(values) if not math.isnan(v)]
        if len(keep) < 3:
            lines.append(f"| {estimator} | n/a | n/a | n/a | n/a | {len(keep)} |")
            continue
        higher = get_estimator(estimator).higher_is_better if estimator != "parameters" else True
        a = rank_agreement([values[i] for i in keep], [results[i] for i in keep], higher_is_better=higher)
        lines.append(
            f"| {estimator} | {_fmt(a['spearman_rho'])} ({_fmt(a['spearman_p'], 3)}) | "
            f"{_fmt(a['kendall_tau'])} | {_fmt(a['weighted_tau'])} | {_fmt(a['top1_regret'])} | {a['n']} |"
        )
    return lines


def plot_task(path: Path, names: list[str], scores: dict[str, list[float]], results: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(3.4 * len(scores), 3.2), squeeze=False)
    for ax, (estimator, values) in zip(axes[0], scores.items(), strict=True):
        ax.scatter(values, results, s=14)
        for name, x, y in zip(names, values, results, strict=True):
            if not math.isnan(x):
                ax.annotate(name, (x, y), fontsize=6)
        ax.set_xlabel(estimator, fontsize=8)
        ax.set_ylabel("fine-tuned", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(out: Path, data: dict[str, Any], quick: bool) -> Path:
    docs = out
    docs.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Ranking-quality benchmark",
        "",
        f"Generated by `benchmarks/ranking_quality.py{' --quick' if quick else ''}` "
        f"({'quick CI setting' if quick else 'full setting'}; {data['total_seconds'] / 60:.1f} min on "
        f"{torch.get_num_threads()} CPU threads). Raw numbers: `benchmark.json`.",
        "",
        "## Zoo",
        "",
        "| candidate | pre-training | epochs | parameters | pre-training s |",
        "|---|---|---:|---:|---:|",
    ]
    for entry in data["zoo"]:
        lines.append(
            f"| {entry['name']} | {entry['objective']} | {entry['epochs']} | {entry['parameters']:,} | "
            f"{entry['pretrain_seconds']:.0f} |"
        )
    lines += ["", "Tasks use English voices held out from all pre-training: " + ", ".join(data["heldout"]) + "."]
    for task_name, task in data["tasks"].items():
        names = [e["name"] for e in data["zoo"]]
        results = [task["modelwise"][n]["result"] for n in names]
        metric = "accuracy" if task_name != "phones" else "1 - phone error rate"
        lines += [
            "",
            f"## Task: {task_name} (model-wise, {metric})",
            "",
            "| candidate | fine-tuned | " + " | ".join(ESTIMATORS) + " |",
            "|---|---:|" + "---:|" * len(ESTIMATORS),
        ]
        order = np.argsort(results)[::-1]
        for i in order:
            n = names[i]
            s = task["scores"][n]["scores"]
            last = task["scores"][n]["num_layers"] - 1
            lines.append(f"| {n} | {results[i]:.3f} | " + " | ".join(_fmt(s[e][last], 3) for e in ESTIMATORS) + " |")
        scores = {
            e: [task["scores"][n]["scores"][e][task["scores"][n]["num_layers"] - 1] for n in names] for e in ESTIMATORS
        }
        scores["parameters"] = [float(task["scores"][n]["parameters"]) for n in names]
        rb = random_baseline(results)
        lines += [
            "",
            "| estimator | Spearman rho (p) | Kendall tau | weighted tau | top-1 regret | n |",
            "|---|---:|---:|---:|---:|---:|",
            *agreement_rows(names, scores, results),
            f"| random order | {_fmt(rb['spearman_rho_mean'])} ± {_fmt(rb['spearman_rho_std'])} | | | "
            f"{_fmt(rb['top1_regret_mean'])} | {len(names)} |",
        ]
        plot_task(
            docs / f"benchmark-{task_name}.png",
            names,
            {e: scores[e] for e in ESTIMATORS},
            results,
            f"{task_name}: score (last layer) vs fine-tuned {metric}",
        )
        lines += ["", f"![{task_name}](benchmark-{task_name}.png)"]
        for model_name, layers in task["layerwise"].items():
            layer_results = [layers[str(k)]["result"] for k in range(len(layers))]
            layer_scores = {
                e: [task["scores"][model_name]["scores"][e][k] for k in range(len(layers))] for e in ESTIMATORS
            }
            lines += [
                "",
                f"Layer-wise, {model_name} ({task_name}): fine-tuned per layer "
                + ", ".join(f"L{k}={v:.3f}" for k, v in enumerate(layer_results)),
                "",
                "| estimator | Spearman rho (p) | Kendall tau | weighted tau | top-1 regret | n |",
                "|---|---:|---:|---:|---:|---:|",
                *agreement_rows([str(k) for k in range(len(layers))], layer_scores, layer_results),
            ]
    scoring = sum(t["scores"][n]["seconds"] for t in data["tasks"].values() for n in t["scores"])
    tuning = sum(r["seconds"] for t in data["tasks"].values() for r in t["modelwise"].values())
    layer_tuning = sum(
        r["seconds"] for t in data["tasks"].values() for m in t["layerwise"].values() for r in m.values()
    )
    lines += [
        "",
        "## Cost",
        "",
        f"Scoring every layer of every candidate on every task: {scoring:.0f} s. Fine-tuning every candidate "
        f"once per task: {tuning:.0f} s; every layer of the two layer-wise models: {layer_tuning:.0f} s "
        f"(ratio {(tuning + layer_tuning) / max(scoring, 1e-9):.0f}x).",
        "",
        "## Where an estimator fails",
        "",
        "- TIH-SWD needs each model's source-domain audio: fbank, MFCC and the untrained model have none, so "
        "it ranks only the pre-trained models (n is smaller), and it cannot rank layers against a model "
        "without source data.",
        "- Correlations over a handful of candidates are noisy: read the p-values; the random-order row "
        "shows the spread of chance.",
    ]
    for task_name, task in data["tasks"].items():
        results = [r["result"] for r in task["modelwise"].values()]
        at_best = sum(r == max(results) for r in results)
        if at_best >= len(results) / 2:
            lines.append(
                f"- {task_name}: {at_best} of {len(results)} candidates reach the best fine-tuned result "
                f"({max(results):.3f}): the task saturates, so its correlations say little about the top "
                "of the ranking (ties), only about the candidates that fall short."
            )
        for model_name, layers in task["layerwise"].items():
            values = [r["result"] for r in layers.values()]
            if max(values) - min(values) < 1e-9:
                lines.append(
                    f"- {task_name}, layer-wise {model_name}: every layer fine-tunes to {values[0]:.3f}; "
                    "there is no order to predict (n/a)."
                )
    path = docs / "benchmark.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (docs / "benchmark.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small corpus, few epochs (the CI setting)")
    parser.add_argument("--work", default=None, help="cache for corpus and zoo (default: data/benchmark[-quick])")
    parser.add_argument("--out", default="docs", help="where benchmark.md and its plots go")
    parser.add_argument("--report-only", action="store_true", help="re-render the report from <out>/benchmark.json")
    args = parser.parse_args(argv)
    if args.report_only:
        data = json.loads((Path(args.out) / "benchmark.json").read_text(encoding="utf-8"))
        for task in data["tasks"].values():  # JSON object keys are strings: layers back to ints
            for candidate in task["scores"].values():
                candidate["scores"] = {
                    e: {int(k): v for k, v in by_layer.items()} for e, by_layer in candidate["scores"].items()
                }
        return write_report(Path(args.out), data, args.quick)
    setting = QUICK if args.quick else FULL
    work = Path(args.work or ("data/benchmark-quick" if args.quick else "data/benchmark"))
    started = time.perf_counter()
    corpus = work / "corpus"
    if not (corpus / "manifest.csv").is_file():
        build_corpus(
            corpus,
            speakers_per_language=setting.speakers,
            words_per_language=setting.words,
            repetitions=setting.repetitions,
        )
    zoo = build_zoo(setting, corpus, work / "models")
    all_tasks = tasks(setting, corpus)
    layerwise_models = ["ctc-en@" + str(setting.budgets[-1]), "units-en"]
    data: dict[str, Any] = {"zoo": zoo, "heldout": all_tasks["keywords"]["include"]["speaker"], "tasks": {}}
    for task_name, task in all_tasks.items():
        print(f"[benchmark] task {task_name}: scoring")
        dm, sources = datamodule(task), {}  # read (and header-checked) once per task
        labels = task_labels(task, dm)
        scores = {entry["name"]: score(entry, labels, dm, sources, corpus) for entry in zoo}
        print(f"[benchmark] task {task_name}: fine-tuning every candidate")
        modelwise = {entry["name"]: finetune(entry, task, dm, -1, setting.finetune_epochs) for entry in zoo}
        layerwise = {}
        for name in layerwise_models:
            entry = next(e for e in zoo if e["name"] == name)
            layers = scores[name]["num_layers"]
            print(f"[benchmark] task {task_name}: fine-tuning every layer of {name}")
            layerwise[name] = {str(k): finetune(entry, task, dm, k, setting.finetune_epochs) for k in range(layers)}
        data["tasks"][task_name] = {"scores": scores, "modelwise": modelwise, "layerwise": layerwise}
    for entry in zoo:
        entry["parameters"] = data["tasks"]["keywords"]["scores"][entry["name"]]["parameters"]
    data["total_seconds"] = time.perf_counter() - started
    path = write_report(Path(args.out), data, args.quick)
    print(f"[benchmark] wrote {path}")
    return path


if __name__ == "__main__":
    main()
