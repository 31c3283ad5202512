"""Ranking-quality benchmark: do the estimators rank encoders (and layers) as fine-tuning does?

Builds everything itself, on a CPU, with nothing downloaded, deterministically (a fixed
number of threads; pre-training, scoring and fine-tuning are seeded). Pre-training gives
other weights on another type of CPU (float32 kernels differ), so the full setting's zoo is
versioned in ``benchmarks/zoo`` (about 26 MB) and only pre-trained where a checkpoint is missing.
Those checkpoints were pre-trained before pre-training switched the encoder to train mode
(dropout, batch statistics) under Lightning 2.6, so they are models trained without dropout;
a missing one is now pre-trained with it:

1. **Corpus** (eSpeak NG): English keywords and minimal pairs, German and Spanish keywords.
2. **Zoo**: pre-trained by the project's own code on English voices the tasks never hear
   (or on German): log-mel Conformers (CTC phones at three training budgets, HuBERT-style
   masked units in two languages, speaker classification, German phones, a larger and a
   smaller model), a wav2vec2-style convolutional transformer on raw audio (CTC), untrained
   models, and fbank / MFCC.
3. **Tasks** on held-out voices (validation on one more, test on three more, and in the
   English and Spanish tasks on 16 voices more that only the test splits hear): 24 words with
   minimal pairs; keywords in noise and reverberation (SNR 10, 5, 0 dB; each test utterance
   at every level); Spanish keywords (a language no model was trained on); few-shot keywords
   (5 and 20 per class); phone recognition (CTC); speaker identification (20 speakers, 2
   training and 32 test utterances each).
4. **Scores**: every estimator, every layer of every candidate, one frozen pass each (TIH-SWD
   against each model's own pre-training audio; models without it get none).
5. **Ground truth** (``benchmarks/probes.py``): every layer of every candidate with a frozen
   linear head (1500 steps at each rate of the sweep, ``probes.Recipe``), and the last
   Conformer layer partially fine-tuned (``top_n``), each with the learning rate chosen on
   the validation split and the mean and spread of 3 seeds.
6. **Report** (``benchmarks/quality_report.py``): ``docs/benchmark.md`` and plots, with each
   task's reliability: how well its ground truth agrees with a re-measurement of itself.

    .venv/bin/python benchmarks/ranking_quality.py            # full setting (under 60 min on 2 cores)
    .venv/bin/python benchmarks/ranking_quality.py --quick    # CI setting (1-3 min)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # the benchmark's own modules

from probes import Recipe, encode_split, ground_truth, top_layer_of  # noqa: E402
from quality_report import rank_estimators, write_report  # noqa: E402

from lightning_tx.data import SpeechDataModule, collate_utterances  # noqa: E402
from lightning_tx.data.augment import degrade_manifest  # noqa: E402
from lightning_tx.data.corpus import CONFUSABLE_WORDS, WORDS, build_corpus  # noqa: E402
from lightning_tx.encoders import MFCC, ConformerEncoder, Filterbank, FrozenEncoder, TorchaudioEncoder  # noqa: E402
from lightning_tx.metrics import get_estimator  # noqa: E402
from lightning_tx.pretraining import SMALL_CONFORMER, count_parameters, pretrain  # noqa: E402
from lightning_tx.scoring import EncoderFrames, ScoringSession, TaskLabels, speech_loader  # noqa: E402
from lightning_tx.scoring import score as score_pass  # noqa: E402

LABEL_ESTIMATORS = ["logme", "logme_standardized", "hscore", "halpha", "gbc", "knn", "class_swd"]
ESTIMATORS = [
    *LABEL_ESTIMATORS,
    *(f"pooled_{name}" for name in LABEL_ESTIMATORS),
    "pooled_probe",
    "pooled_voice_probe",
    "pooled_logistic_probe",
    "sliced_wasserstein",
    "sliced_wasserstein_time_steps",
    "sliced_wasserstein_utterances",
]
WAV2VEC2 = dict(
    extractor_mode="layer_norm",
    extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
    extractor_conv_bias=True,
    encoder_embed_dim=96,
    encoder_projection_dropout=0.1,
    encoder_pos_conv_kernel=32,
    encoder_pos_conv_groups=4,
    encoder_num_layers=4,
    encoder_num_heads=4,
    encoder_attention_dropout=0.1,
    encoder_ff_interm_features=192,
    encoder_ff_interm_dropout=0.1,
    encoder_dropout=0.1,
    encoder_layer_norm_first=True,
    encoder_layer_drop=0.0,
    aux_num_out=None,
)


@dataclass
class Setting:
    en_speakers: int  # the first `pretrain_speakers` pre-train, the rest are the tasks' voices
    pretrain_speakers: int
    other_speakers: int  # German and Spanish
    repetitions: int
    model: dict[str, Any]
    large_model: dict[str, Any]
    small_model: dict[str, Any]
    epochs: int
    budgets: tuple[int, ...]
    seeds: tuple[int, ...]
    recipe: Recipe
    tasks: tuple[str, ...]
    top_n_tasks: tuple[str, ...] = ("minimal-pairs", "noisy", "phones")  # partial fine-tuning is the costly part
    zoo: tuple[str, ...] | None = None  # None: all
    snrs: tuple[float, ...] = (10.0, 5.0, 0.0)
    test_voices: int = 1  # whole voices held out for test (one more for val), in every voice-held-out task
    extra_test_voices: int = 0  # English voices that only the English tasks' test splits hear (after those)
    extra_spanish_test_voices: int = 0  # the same for the Spanish task
    speaker_test_utterances: int = 2  # speakers: test utterances per speaker (2 train, 2 val; at most 36 in all)
    threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


ALL_TASKS = ("minimal-pairs", "noisy", "spanish", "few-shot-5", "few-shot-20", "phones", "speakers")
FULL = Setting(
    en_speakers=20,
    pretrain_speakers=8,
    other_speakers=8,
    repetitions=3,
    model={**SMALL_CONFORMER, "dim": 96, "ffn_dim": 192, "num_layers": 4},
    large_model={**SMALL_CONFORMER, "dim": 144, "ffn_dim": 288, "num_layers": 6},
    small_model={**SMALL_CONFORMER, "dim": 48, "ffn_dim": 96, "num_layers": 2},
    epochs=12,
    budgets=(1, 4, 12),
    seeds=(0, 1, 2),
    recipe=Recipe(),
    tasks=ALL_TASKS,
    test_voices=3,
    extra_test_voices=16,  # 19 test voices in the English tasks: 3 ranked candidates unlike 16 others did
    extra_spanish_test_voices=16,  # and 19 in the Spanish task
    speaker_test_utterances=32,  # every utterance of a Spanish voice (12 words x 3) but its 4 train and val
)
QUICK = Setting(
    en_speakers=6,
    pretrain_speakers=3,
    other_speakers=3,
    repetitions=3,
    model=dict(SMALL_CONFORMER),
    large_model={**SMALL_CONFORMER, "dim": 96, "ffn_dim": 192},
    small_model={**SMALL_CONFORMER, "dim": 32, "ffn_dim": 64, "num_layers": 2},
    epochs=2,
    budgets=(1, 2),
    seeds=(0, 1),
    recipe=Recipe(learning_rates=(3e-3,), steps=20, top_n_learning_rates=(1e-3,), top_n_epochs=2),
    tasks=("minimal-pairs", "phones"),
    zoo=("untrained", "ctc-en@2", "units-en", "fbank", "mfcc"),
)


# --------------------------------------------------------------------------- corpus
def build(setting: Setting, work: Path) -> Path:
    """The corpus (cached): English keywords and minimal pairs, German and Spanish keywords."""
    corpus = work / "corpus"
    en = corpus / "en" / "manifest.csv"
    english = setting.en_speakers + setting.extra_test_voices
    if _speaker_count(en) != english:  # English voices added come after the others, whose files stay the same
        en = build_corpus(corpus / "en", languages=("en",), speakers_per_language=english,
                          repetitions=setting.repetitions,
                          words={"en": WORDS["en"] + CONFUSABLE_WORDS["en"]})  # fmt: skip
    other = corpus / "de-es" / "manifest.csv"
    spanish = setting.other_speakers + setting.extra_spanish_test_voices
    if _speaker_count(other, "de") != setting.other_speakers or _speaker_count(other, "es") != spanish:
        # Spanish voices added come last: the German ones and the first Spanish ones stay the same
        other = build_corpus(corpus / "de-es", languages=("de", "es"), repetitions=setting.repetitions, seed=1,
                             speakers_per_language={"de": setting.other_speakers, "es": spanish})  # fmt: skip
    rows = []
    for manifest in (en, other):
        for row in csv.DictReader(open(manifest, encoding="utf-8")):
            rows.append({**row, "audio": f"{manifest.parent.name}/{row['audio']}",
                         "alignment": f"{manifest.parent.name}/{row['alignment']}"})  # fmt: skip
    _write(corpus / "manifest.csv", rows)
    return corpus / "manifest.csv"


def _speaker_count(manifest: Path, language: str | None = None) -> int:
    if not manifest.is_file():
        return 0
    return len({row["speaker"] for row in _rows(manifest) if language in (None, row["language"])})


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _rows(manifest: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(manifest, encoding="utf-8")))


# --------------------------------------------------------------------------- zoo
def speakers(setting: Setting, language: str, role: str) -> list[str]:
    """The voices of a language in one role: "pretrain" (the zoo's), "task" (the tasks'
    train, val and test voices) or "test-only" (only the test splits hear them). German
    and Spanish have one set of voices each, whatever the role (the German ones pre-train,
    the Spanish ones are the tasks'), and Spanish may have test-only voices after it."""
    if language == "en":
        count, task, extra = setting.pretrain_speakers, setting.en_speakers, setting.extra_test_voices
        ids = {"pretrain": range(count), "task": range(count, task), "test-only": range(task, task + extra)}[role]
    else:
        count, extra = setting.other_speakers, setting.extra_spanish_test_voices if language == "es" else 0
        ids = range(count, count + extra) if role == "test-only" else range(count)
    return [f"{language}-{i:02d}" for i in ids]


def build_zoo(setting: Setting, manifest: Path, models: Path) -> list[dict[str, Any]]:
    """Pre-train (or reuse) the zoo; returns candidate descriptions."""
    en, de = speakers(setting, "en", "pretrain"), speakers(setting, "de", "pretrain")
    last = setting.epochs
    conformer, large, small = ("conformer", setting.model), ("conformer", setting.large_model), (
        "conformer", setting.small_model)  # fmt: skip
    runs = {  # name -> (objective, voices, (architecture, kwargs), epochs saved, description)
        "ctc-en": ("ctc", en, conformer, setting.budgets, "CTC phones (en)"),
        "units-en": ("masked_units", en, conformer, (last,), "masked units, SSL (en)"),
        "units-de": ("masked_units", de, conformer, (last,), "masked units, SSL (de)"),
        "speaker-en": ("speaker", en, conformer, (last,), "speaker classes (en)"),
        "ctc-de": ("ctc", de, conformer, (last,), "CTC phones (de)"),
        "ctc-en-large": ("ctc", en, large, (last,), "CTC phones (en), larger"),
        "ctc-en-small": ("ctc", en, small, (last,), "CTC phones (en), smaller"),
        "w2v-ctc-en": ("ctc", en, ("wav2vec2", WAV2VEC2), (last,), "CTC phones (en), raw waveform"),
    }
    files = {name: {e: models / f"{name}-e{e}.pt" for e in spec[3]} for name, spec in runs.items()}
    zoo = [_entry("untrained", *conformer, None, "none", None, 0), _entry("w2v-untrained", "wav2vec2", WAV2VEC2,
                                                                           None, "none", None, 0)]  # fmt: skip
    for name, (_, voices, (kind, kwargs), epochs, description) in runs.items():
        for epoch in epochs:
            label = f"{name}@{epoch}" if len(epochs) > 1 else name
            zoo.append(_entry(label, kind, kwargs, files[name][epoch], description, voices, epoch))
    zoo += [
        {"name": "fbank", "kind": "fbank", "objective": "none", "source_speakers": None, "epochs": 0},
        {"name": "mfcc", "kind": "mfcc", "objective": "none", "source_speakers": None, "epochs": 0},
    ]
    if setting.zoo is not None:
        zoo = [entry for entry in zoo if entry["name"] in setting.zoo]
    needed = {entry["state_dict"] for entry in zoo if entry.get("state_dict")}
    timing_file = models / "pretrain_seconds.json"
    timings = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    for name, (objective, voices, (kind, kwargs), _, _) in runs.items():
        saved = files[name]
        if not needed & {str(f) for f in saved.values()} or all(f.is_file() for f in saved.values()):
            continue
        print(f"[zoo] pre-training {name} ({objective}, {kind}) for {max(saved)} epochs", flush=True)
        started = time.perf_counter()
        torch.manual_seed(0)
        encoder = None if kind == "conformer" else TorchaudioEncoder("wav2vec2_model", None, kwargs)
        pretrain(
            objective, manifest, saved, model_kwargs=kwargs if kind == "conformer" else None, max_epochs=max(saved),
            include={"speaker": voices}, accelerator="cpu", encoder=encoder,
        )  # fmt: skip
        timings[name] = time.perf_counter() - started
        timing_file.write_text(json.dumps(timings, indent=2))
    for entry in zoo:
        entry["pretrain_seconds"] = timings.get(entry["name"].split("@")[0], 0.0)
    return zoo


def _entry(name, kind, kwargs, state_dict, objective, source_speakers, epochs) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "kwargs": kwargs,
        "state_dict": None if state_dict is None else str(state_dict),
        "objective": objective,
        "source_speakers": source_speakers,
        "epochs": epochs,
    }


def rank_candidates(zoo: list[dict[str, Any]], root: Path) -> list[dict[str, Any]]:
    """The zoo as ``train.py rank`` candidates (``name``, ``encoder: {class_path, init_args}``),
    the same networks as :func:`make_encoder` builds; checkpoint paths relative to ``root``."""
    candidates = []
    for entry in zoo:
        if entry["kind"] in ("fbank", "mfcc"):
            kind, init_args = ("Filterbank", {"n_mels": 40}) if entry["kind"] == "fbank" else ("MFCC", {"n_mfcc": 20})
        else:
            state_dict = entry["state_dict"] and Path(entry["state_dict"]).resolve().relative_to(root).as_posix()
            if entry["kind"] == "wav2vec2":
                builder_kwargs = {k: [list(c) for c in v] if k == "extractor_conv_layer_config" else v
                                  for k, v in entry["kwargs"].items()}  # fmt: skip
                kind = "TorchaudioEncoder"
                init_args = {"builder": "wav2vec2_model", "state_dict": state_dict, "builder_kwargs": builder_kwargs,
                             "init_seed": 1234}  # fmt: skip
            else:
                kind, init_args = "ConformerEncoder", {"state_dict": state_dict, "init_seed": 1234, **entry["kwargs"]}
        encoder = {"class_path": f"lightning_tx.encoders.{kind}", "init_args": init_args}
        candidates.append({"name": entry["name"], "encoder": encoder})
    return candidates


def write_rank_candidates(path: Path) -> Path:
    """``benchmarks/zoo/candidates.yaml``: the full setting's versioned zoo as a ``train.py rank``
    config fragment (what the demo ranks), written without pre-training or building anything."""
    root = Path(__file__).resolve().parent.parent
    zoo = build_zoo(FULL, Path("unused: every checkpoint is versioned"), Path(__file__).resolve().parent / "zoo")
    header = (
        "# The benchmark's zoo (benchmarks/ranking_quality.py, full setting) as train.py rank candidates;\n"
        "# checkpoint paths are relative to the repository's root. Regenerate with\n"
        "#   .venv/bin/python benchmarks/ranking_quality.py --write-candidates benchmarks/zoo/candidates.yaml\n"
        "# and use from the root:\n"
        "#   python train.py rank --config configs/rank.yaml --config benchmarks/zoo/candidates.yaml\n"
    )
    body = yaml.safe_dump({"model": {"init_args": {"candidates": rank_candidates(zoo, root)}}}, sort_keys=False)
    path.write_text(header + body, encoding="utf-8")
    return path


def make_encoder(entry: dict[str, Any]) -> FrozenEncoder:
    if entry["kind"] == "fbank":
        return Filterbank(n_mels=40)
    if entry["kind"] == "mfcc":
        return MFCC(n_mfcc=20)
    torch.manual_seed(1234)  # the global state every later draw of the benchmark was measured with
    if entry["kind"] == "wav2vec2":  # an untrained model is the same random network every run
        return TorchaudioEncoder("wav2vec2_model", entry["state_dict"], entry["kwargs"], init_seed=1234)
    return ConformerEncoder(entry["state_dict"], init_seed=1234, **entry["kwargs"])


# --------------------------------------------------------------------------- tasks
@dataclass
class Task:
    name: str
    description: str
    manifest: Path
    label_column: str = "label"
    frame_labels: str = "utterance"

    @property
    def ctc(self) -> bool:
        return self.frame_labels == "alignment"


def _split(rows: list[dict], key, train: int, val: int, test: int) -> list[dict]:
    """Per group (``key(row)``), the first ``train`` rows go to train, then val, then test."""
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    out = []
    for members in groups.values():
        for i, row in enumerate(members[: train + val + test]):
            out.append({**row, "split": "train" if i < train else "val" if i < train + val else "test"})
    return out


def _test_at_every_snr(rows: list[dict], snrs: int) -> list[dict]:
    """The rows with each test row repeated ``snrs`` times in a row: ``degrade_manifest`` gives
    row ``i`` the SNR ``i mod snrs``, so every test utterance is heard at every SNR (a test set
    ``snrs`` times larger), and train and val rows keep their one level each."""
    return [*(r for r in rows if r["split"] != "test"), *(r for r in rows if r["split"] == "test" for _ in range(snrs))]


def _shuffled(rows: list[dict], seed: int = 0) -> list[dict]:
    """The rows in a seeded random order: the corpus lists each voice's words in turn, so the
    first rows of a voice are repetitions of one word."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    return order


def make_tasks(setting: Setting, manifest: Path, work: Path) -> list[Task]:
    """Task manifests (cached) over voices that no model was pre-trained on."""
    rows = [{**r, "audio": str(manifest.parent / r["audio"]), "alignment": str(manifest.parent / r["alignment"])}
            for r in _rows(manifest)]  # fmt: skip
    heldout = set(speakers(setting, "en", "task"))
    test_only = set(speakers(setting, "en", "test-only"))
    en = [r for r in rows if r["speaker"] in heldout | test_only]
    keywords = [r for r in en if r["label"] in WORDS["en"]]
    heldout_voices = sorted(heldout)
    # Whole voices held out: the last `test_voices` for test, the one before them for val.
    # Several test voices, because a test set of one voice measures each candidate too
    # coarsely to rank them (the reliability column of docs/benchmark.md).
    # The English tasks test on `extra_test_voices` more: three voices ranked the candidates
    # unlike sixteen others (and easier ones) did.
    val_voice = heldout_voices[-setting.test_voices - 1]
    test_voices = heldout_voices[-setting.test_voices :] + sorted(test_only)

    def by_voice(selected: list[dict], per_class_train: int | None = None, voices=(val_voice, test_voices)):
        """Train on some voices; validate on one held-out voice and test on others."""
        val, test = voices
        train = [r for r in selected if r["speaker"] != val and r["speaker"] not in test]
        if per_class_train is not None:
            train = _split(train, lambda r: r["label"], per_class_train, 0, 0)
        return [
            *({**r, "split": "train"} for r in train),
            *({**r, "split": "val"} for r in selected if r["speaker"] == val),
            *({**r, "split": "test"} for r in selected if r["speaker"] in test),
        ]

    spanish_voices = speakers(setting, "es", "task")
    spanish_test_only = speakers(setting, "es", "test-only")
    spanish = [r for r in rows if r["speaker"] in set(spanish_voices + spanish_test_only)]

    # the splits differ with the setting
    folder = work / (f"tasks-{setting.test_voices}-test-voices-{setting.extra_test_voices}-more-in-english-"
                     f"{setting.extra_spanish_test_voices}-in-spanish-"
                     f"{setting.speaker_test_utterances}-per-speaker")  # fmt: skip
    specs = {
        "minimal-pairs": (lambda: by_voice(en), "24 English words, 12 of them minimal pairs (bad/bed, ship/sheep)"),
        "noisy": (
            lambda: _test_at_every_snr(by_voice(keywords), len(setting.snrs)),
            "12 English keywords in reverberation and pink noise (SNR 10/5/0 dB; each test utterance at every SNR)",
        ),
        "spanish": (
            lambda: by_voice(spanish, voices=(spanish_voices[-setting.test_voices - 1],
                                              spanish_voices[-setting.test_voices :] + spanish_test_only)),
            "12 Spanish keywords: a language no model was pre-trained on, voices held out for val and test",
        ),
        "few-shot-5": (lambda: by_voice(keywords, 5), "12 English keywords, 5 training utterances per class"),
        "few-shot-20": (lambda: by_voice(keywords, 20), "12 English keywords, 20 training utterances per class"),
        "phones": (lambda: by_voice(keywords), "English phone recognition (CTC, frame labels from the alignments)"),
        "speakers": (
            lambda: _split(_shuffled([r for r in rows if r["speaker"] in heldout | set(spanish_voices)]),
                           lambda r: r["speaker"], 2, 2, setting.speaker_test_utterances),
            "speaker identification: held-out English and Spanish voices, 2 training utterances each (of any words)",
        ),
    }  # fmt: skip
    tasks = []
    for name in setting.tasks:
        select, description = specs[name]
        path = folder / f"{name}.csv"
        if not path.is_file():
            _write(path, select())
        if name == "noisy":
            degraded = folder / "noisy" / "manifest.csv"
            if not degraded.is_file():
                degrade_manifest(path, degraded.parent, setting.snrs, rt60=0.3, seed=0)
            path = degraded
        task = Task(name, description, path)
        if name == "phones":
            task.frame_labels = "alignment"
        if name == "speakers":
            task.label_column = "speaker"
        tasks.append(task)
    return tasks


# --------------------------------------------------------------------------- one task
def run_task(setting: Setting, task: Task, zoo: list[dict[str, Any]], manifest: Path) -> dict[str, Any]:
    dm = SpeechDataModule(manifest=task.manifest, label_column=task.label_column, batch_size=16, max_seconds=5.0)
    dm.setup()
    labels = TaskLabels.from_datamodule(dm, task.frame_labels, exclude=("sil",) if task.ctc else ())
    sources: dict[tuple[str, ...], SpeechDataModule] = {}
    candidates = {}
    for entry in zoo:
        encoder = make_encoder(entry)
        rate = encoder.sample_rate
        with_source = bool(entry["source_speakers"])
        estimators = [e for e in ESTIMATORS if with_source or not get_estimator(e).needs_source]
        started = time.perf_counter()
        session = ScoringSession(EncoderFrames(encoder, labels), estimators, labels.num_classes)
        source = None
        if with_source:
            key = tuple(entry["source_speakers"])
            if key not in sources:
                sources[key] = SpeechDataModule(manifest=manifest, include={"speaker": list(key)}, batch_size=16,
                                                max_seconds=5.0, shuffle=False, require_targets=False)  # fmt: skip
            source = speech_loader(sources[key], sample_rate=rate, limit_batches=setting.extra.get("source_batches", 8))
        scores = score_pass(session, speech_loader(dm, sample_rate=rate), source)
        score_seconds = time.perf_counter() - started
        for name in ESTIMATORS:
            scores.setdefault(name, {k: math.nan for k in range(encoder.num_layers)})
        started = time.perf_counter()
        splits = {
            s: encode_split(encoder, dm.dataset(s, sample_rate=rate), collate_utterances, 16, labels, task.ctc)
            for s in ("train", "val", "test")
        }
        encode_seconds = time.perf_counter() - started
        # what the test metric averages over: reference phones (CTC) or utterances
        test_units = sum(map(len, splits["test"].tokens)) if task.ctc else len(splits["test"].frame_lengths)
        common = {"num_outputs": labels.num_classes, "ctc": task.ctc, "seeds": setting.seeds, "recipe": setting.recipe}
        started = time.perf_counter()
        frozen = {k: ground_truth(splits, k, **common) for k in range(encoder.num_layers)}
        frozen_seconds = time.perf_counter() - started
        top_layer, top_n, top_n_seconds = top_layer_of(encoder), None, 0.0
        if top_layer is not None and task.name in setting.top_n_tasks:
            started = time.perf_counter()
            top_n = ground_truth(splits, encoder.num_layers - 2, top_layer=top_layer, **common)
            top_n_seconds = time.perf_counter() - started
        candidates[entry["name"]] = {
            "scores": scores,
            "frozen": frozen,
            "top_n": top_n,
            "num_layers": encoder.num_layers,
            "parameters": count_parameters(encoder),
            "seconds": {"score": score_seconds, "encode": encode_seconds, "frozen": frozen_seconds,
                        "top_n": top_n_seconds},
        }  # fmt: skip
        best = max(frozen.values(), key=lambda r: r["mean"])
        print(f"[benchmark] {task.name:>13} {entry['name']:>14}: scored in {score_seconds:5.1f} s, best frozen "
              f"{best['mean']:.3f}" + (f", top_n {top_n['mean']:.3f}" if top_n else ""), flush=True)  # fmt: skip
    counts = {s: len(dm.records(s)) for s in ("train", "val", "test")}
    return {
        "description": task.description,
        "metric": "1 - phone error rate" if task.ctc else "accuracy",
        "num_classes": labels.num_classes,
        "utterances": counts,
        "test_units": test_units,
        "candidates": candidates,
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small corpus, few epochs (the CI setting)")
    parser.add_argument("--work", default=None, help="cache for corpus and zoo (default: data/benchmark[-quick])")
    parser.add_argument("--zoo", default=None, help="the zoo's checkpoints, pre-trained where missing (default: "
                        "benchmarks/zoo, versioned, for the full setting; <work>/models with --quick)")  # fmt: skip
    parser.add_argument("--out", default="docs", help="where benchmark.md, benchmark.json and plots go")
    parser.add_argument("--report-only", action="store_true", help="re-render the report from <out>/benchmark.json")
    parser.add_argument("--write-candidates", default=None, metavar="YAML",
                        help="write the full setting's zoo as train.py rank candidates and stop")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write_candidates:
        return write_rank_candidates(Path(args.write_candidates))
    out = Path(args.out)
    if args.report_only:
        return write_report(out, json.loads((out / "benchmark.json").read_text(encoding="utf-8")))
    setting = QUICK if args.quick else FULL
    torch.set_num_threads(setting.threads)  # float32 results depend on the number of threads
    work = Path(args.work or ("data/benchmark-quick" if args.quick else "data/benchmark")).resolve()
    started = time.perf_counter()
    manifest = build(setting, work)
    # Pre-training is deterministic on one machine but not across CPU types (their float32
    # kernels differ), so the full setting's zoo is versioned with the code.
    models = Path(args.zoo) if args.zoo else work / "models" if args.quick else Path(__file__).parent / "zoo"
    zoo = build_zoo(setting, manifest, models)
    data: dict[str, Any] = {
        "setting": "quick" if args.quick else "full",
        "threads": setting.threads,
        "seeds": list(setting.seeds),
        "estimators": ESTIMATORS,
        "rank_estimators": rank_estimators(),  # the report's ranking order, as configs/rank.yaml has it now
        "recipe": vars(setting.recipe),
        "zoo": zoo,
        "tasks": {},
    }
    for task in make_tasks(setting, manifest, work):
        print(f"[benchmark] task {task.name}", flush=True)
        data["tasks"][task.name] = run_task(setting, task, zoo, manifest)
    for entry in zoo:
        entry["parameters"] = next(iter(data["tasks"].values()))["candidates"][entry["name"]]["parameters"]
    data["total_seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1)
    (out / "benchmark.json").write_text(text, encoding="utf-8")
    path = write_report(out, json.loads(text))  # the report reads what --report-only reads
    print(f"[benchmark] wrote {path} ({data['total_seconds'] / 60:.1f} min)")
    return path


if __name__ == "__main__":
    main()
