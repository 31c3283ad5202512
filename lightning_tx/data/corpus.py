"""The built-in speech corpus: spoken words synthesized with eSpeak NG, no downloads.

Several languages, each with a keyword vocabulary spoken by several synthetic speakers
(a base voice, a voice variant, a pitch and a speaking rate each), every word repeated
with small jitters of rate and pitch. For each utterance we write a 16 kHz mono wav, and
the synthesizer's own phoneme timings as an alignment file (``start end phone`` lines, in
seconds; ``sil`` before the first and after the last phoneme). The manifest
(``manifest.csv``, and ``manifest-<language>.csv`` for each language) has the columns
``audio, label, text, speaker, language, split, alignment, duration``; paths are relative
to the manifest. Repetitions are split per speaker: the last two of each (speaker, word)
go to ``val`` and ``test``.

    python -m lightning_tx.data.corpus --out data/corpus            # ~1,000 utterances
    python -m lightning_tx.data.corpus --out /tmp/c --speakers 2 --repetitions 2

Deterministic for a seed: the same arguments write the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000

WORDS = {
    "en": ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one"],
    "de": ["ja", "nein", "hoch", "runter", "links", "rechts", "an", "aus", "halt", "los", "null", "eins"],
    "es": [
        "sí",
        "no",
        "arriba",
        "abajo",
        "izquierda",
        "derecha",
        "uno",
        "dos",
        "para",
        "vamos",
        "cero",
        "tres",
    ],
}
# Minimal pairs and near-homophones, for keyword tasks that do not saturate.
CONFUSABLE_WORDS = {
    "en": ["bad", "bed", "pin", "bin", "ship", "sheep", "cat", "cap", "three", "tree", "seven", "heaven"],
}
BASE_VOICES = {"en": ["en-us", "en", "en-gb-scotland", "en-029"], "de": ["de"], "es": ["es", "es-419"]}
# eSpeak NG voice variants without breath noise: that noise is seeded from the clock, so
# variants using it (f2, f3, f5, whisper) would make the corpus differ from run to run.
VARIANTS = [
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m6",
    "f1",
    "f4",
    "klatt",
    "klatt3",
    "croak",
    "linda",
    "steph",
    "anika",
    "max",
]
MANIFEST_COLUMNS = ["audio", "label", "text", "speaker", "language", "split", "alignment", "duration"]


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: eSpeak NG voice (base + variant), pitch (0-99), rate (words/min)."""

    speaker_id: str
    language: str
    voice: str
    pitch: int
    rate: int


def make_speakers(languages: list[str], per_language: int | Mapping[str, int], seed: int) -> list[Speaker]:
    """The speakers of each language in turn, ``per_language`` of each (or a count per
    language). The draws are sequential, so more speakers of the last language leave
    every earlier speaker as it was."""
    counts = _speaker_counts(languages, per_language)
    rng = np.random.default_rng(seed)
    speakers = []
    for language in languages:
        variants = rng.permutation(VARIANTS)
        for i in range(counts[language]):
            base = BASE_VOICES[language][i % len(BASE_VOICES[language])]
            variant = variants[i % len(variants)]
            voice = f"{base}+{variant}" if variant else base
            pitch, rate = int(rng.integers(25, 80)), int(rng.integers(130, 210))
            speakers.append(Speaker(f"{language}-{i:02d}", language, voice, pitch, rate))
    return speakers


def _speaker_counts(languages: list[str], per_language: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(per_language, Mapping):
        missing = [language for language in languages if language not in per_language]
        if missing:
            raise ValueError(f"`speakers_per_language` gives no count for {missing}; it has {sorted(per_language)}")
        counts = {language: per_language[language] for language in languages}
    else:
        counts = dict.fromkeys(languages, per_language)
    for language, count in counts.items():
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"`speakers_per_language` must be a positive integer for {language!r}, got {count!r}")
    return counts


def _phone_segments(phonemes: list[tuple[float, str]], duration: float) -> list[tuple[float, float, str]]:
    """Synthesizer phoneme events -> contiguous ``(start, end, phone)`` segments covering
    ``[0, duration]``; stress and length marks are kept off the phone names."""
    segments: list[tuple[float, float, str]] = []
    events = [(min(start, duration), name.replace("ˈ", "").replace("ˌ", "")) for start, name in phonemes]
    events = [(start, name or "sil") for start, name in events]
    cursor = 0.0
    for index, (start, name) in enumerate(events):
        end = events[index + 1][0] if index + 1 < len(events) else duration
        if start > cursor:
            segments.append((cursor, start, "sil"))
        if end > start:
            if segments and segments[-1][2] == name == "sil":
                segments[-1] = (segments[-1][0], end, "sil")
            else:
                segments.append((start, end, name))
        cursor = max(cursor, end)
    if cursor < duration:
        segments.append((cursor, duration, "sil"))
    return segments


def _synthesize_job(job: dict) -> None:
    """Synthesize, resample and write one utterance and its alignment (in a speaker's own
    process)."""
    from lightning_tx.data.espeak import ESpeak

    synthesis = ESpeak().synthesize(job["text"], job["voice"], job["rate"], job["pitch"])
    waveform = torch.from_numpy(synthesis.waveform)
    waveform = AF.resample(waveform, synthesis.sample_rate, SAMPLE_RATE).numpy()
    duration = waveform.shape[0] / SAMPLE_RATE
    root = Path(job["root"])
    (root / job["audio"]).parent.mkdir(parents=True, exist_ok=True)
    (root / job["alignment"]).parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(root / job["audio"], waveform, SAMPLE_RATE, subtype="PCM_16")
    segments = _phone_segments(synthesis.phonemes, duration)
    with open(root / job["alignment"], "w", encoding="utf-8") as handle:
        for start, end, phone in segments:
            handle.write(f"{start:.4f} {end:.4f} {phone}\n")


def _manifest_row(job: dict) -> dict:
    """The manifest row of a synthesized utterance (its duration read from its wav file)."""
    frames = soundfile.info(Path(job["root"]) / job["audio"]).frames
    return {
        **{k: job[k] for k in ("audio", "label", "text", "speaker", "language", "split", "alignment")},
        "duration": f"{frames / SAMPLE_RATE:.4f}",
    }


def _synthesize_speaker(jobs: list[dict]) -> list[dict]:
    """One speaker's utterances, in order, in a fresh interpreter: eSpeak NG carries internal
    state from one utterance to the next (even across re-initialisation), so an utterance's
    waveform depends on what its process spoke before. A fresh process per speaker makes
    every file depend only on the corpus settings, not on scheduling.

    The interpreter imports this module alone. (A ``multiprocessing`` child would also
    import the caller's ``__main__``, e.g. the whole benchmark with Lightning, several
    seconds per speaker.) Returns the speaker's manifest rows."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(
        [sys.executable, "-c", "import lightning_tx.data.corpus as corpus; corpus._synthesize_from_stdin()"],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        env=env,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"synthesizing speaker {jobs[0]['speaker']!r} failed (exit {completed.returncode}):\n{completed.stderr}"
        )
    return [_manifest_row(job) for job in jobs]


def _synthesize_from_stdin() -> None:
    """The child of :func:`_synthesize_speaker`: its jobs come as JSON on stdin."""
    for job in json.load(sys.stdin):
        _synthesize_job(job)


def build_corpus(
    out: str | os.PathLike,
    *,
    languages: tuple[str, ...] = ("en", "de"),
    speakers_per_language: int | Mapping[str, int] = 8,
    words_per_language: int = 12,
    repetitions: int = 5,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    words: dict[str, list[str]] | None = None,
) -> Path:
    """Write the corpus under ``out``; returns the manifest path.

    ``len(languages) * speakers_per_language * words_per_language * repetitions``
    utterances (default 960). ``speakers_per_language`` may instead map each language to its
    own count (the utterances are then the counts' sum times words times repetitions): more
    speakers of the last language leave every other file as it was (the voices and the
    jitters are drawn speaker by speaker, in order). ``repetitions >= 3``
    gives every split of every (speaker, word); with fewer, the last repetition is ``test``
    and the rest ``train``. ``words`` replaces the built-in word list of a language
    (``words_per_language`` then does not apply to it), e.g. ``{"en": WORDS["en"] + CONFUSABLE_WORDS["en"]}``.
    """
    vocabulary = {}
    for language in languages:
        if language not in WORDS:
            raise ValueError(f"no built-in vocabulary and voices for language {language!r}; have {sorted(WORDS)}")
        if words and language in words:
            vocabulary[language] = list(words[language])
        elif 1 <= words_per_language <= len(WORDS[language]):
            vocabulary[language] = WORDS[language][:words_per_language]
        else:
            raise ValueError(f"`words_per_language` must be in [1, 12], got {words_per_language}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    speakers = make_speakers(list(languages), speakers_per_language, seed)
    jobs = []
    for speaker in speakers:
        for word in vocabulary[speaker.language]:
            for rep in range(repetitions):
                split = "train"
                if repetitions >= 3 and rep == repetitions - 2:
                    split = "val"
                elif rep == repetitions - 1 and repetitions >= 2:
                    split = "test"
                stem = f"{speaker.speaker_id}/{word}_{rep}"
                jobs.append(
                    {
                        "root": str(root),
                        "text": word,
                        "label": word,
                        "speaker": speaker.speaker_id,
                        "language": speaker.language,
                        "split": split,
                        "voice": speaker.voice,
                        "rate": int(speaker.rate * rng.uniform(0.9, 1.1)),
                        "pitch": int(np.clip(speaker.pitch + rng.integers(-5, 6), 0, 99)),
                        "audio": f"wav/{stem}.wav",
                        "alignment": f"alignments/{stem}.txt",
                    }
                )
    workers = workers or min(2, os.cpu_count() or 1)
    start = time.perf_counter()
    rows = []
    shards: dict[str, list[dict]] = {}
    for job in jobs:
        shards.setdefault(job["speaker"], []).append(job)
    # A new interpreter per speaker (not a fork: forking a process that already runs threads,
    # torch's or a W&B service's, can deadlock); the threads only wait for them.
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Executor.map cancels what has not started on an error
        for rows_of_speaker in pool.map(_synthesize_speaker, shards.values()):
            rows += rows_of_speaker
            if progress:
                print(f"\rsynthesized {len(rows)}/{len(jobs)} utterances", end="", flush=True)
    if progress:
        print(f" in {time.perf_counter() - start:.1f} s")
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for language in languages:  # one manifest per language too, e.g. a task and a source domain
        with open(root / f"manifest-{language}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(row for row in rows if row["language"] == language)
    with open(root / "speakers.json", "w", encoding="utf-8") as handle:
        json.dump([asdict(s) for s in speakers], handle, indent=2, ensure_ascii=False)
    return manifest


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Synthesize the built-in spoken-word corpus with eSpeak NG.")
    parser.add_argument("--out", default="data/corpus", help="output folder (default: data/corpus)")
    parser.add_argument("--languages", nargs="+", default=["en", "de"], choices=sorted(WORDS))
    parser.add_argument("--speakers", type=int, default=8, help="speakers per language")
    parser.add_argument("--words", type=int, default=12, help="words per language (at most 12)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    manifest = build_corpus(
        args.out,
        languages=tuple(args.languages),
        speakers_per_language=args.speakers,
        words_per_language=args.words,
        repetitions=args.repetitions,
        seed=args.seed,
        workers=args.workers,
    )
    print(f"manifest: {manifest}")
    return manifest


if __name__ == "__main__":
    main()
