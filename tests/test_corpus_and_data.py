import csv
import hashlib
import json

import numpy as np
import pytest
import soundfile
import torch

from lightning_tx.data import (
    AudioError,
    ManifestError,
    SpeechDataModule,
    load_audio,
    read_alignment,
    read_manifest,
)
from lightning_tx.data.corpus import MANIFEST_COLUMNS, build_corpus, make_speakers


def test_tiny_corpus_manifest_audio_and_alignments(tiny_corpus):
    rows = list(csv.DictReader(open(tiny_corpus)))
    assert list(rows[0]) == MANIFEST_COLUMNS and len(rows) == 18
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert len({r["speaker"] for r in rows}) == 2 and {r["label"] for r in rows} == {"yes", "no", "up"}
    for row in rows[:6]:
        audio, rate = soundfile.read(tiny_corpus.parent / row["audio"])
        assert rate == 16000 and audio.ndim == 1
        duration = float(row["duration"])
        assert abs(audio.shape[0] / rate - duration) < 1e-3
        segments = read_alignment(tiny_corpus.parent / row["alignment"])
        assert segments[0][0] == 0 and abs(segments[-1][1] - duration) < 1e-3
        assert all(a[1] == pytest.approx(b[0]) for a, b in zip(segments, segments[1:], strict=False))
        assert any(label != "sil" for _, _, label in segments)


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_corpus_is_deterministic_and_multilingual(tmp_path):
    kwargs = dict(
        languages=("en", "de"),
        speakers_per_language=2,
        words_per_language=2,
        repetitions=1,
        seed=3,
        workers=2,
        progress=False,
    )
    first = build_corpus(tmp_path / "a", **kwargs)
    second = build_corpus(tmp_path / "b", **kwargs)
    assert _digest(first.parent) == _digest(second.parent)
    speakers = json.loads((first.parent / "speakers.json").read_text())
    assert {s["language"] for s in speakers} == {"en", "de"}
    assert len({(s["voice"], s["pitch"], s["rate"]) for s in speakers}) == 4
    with pytest.raises(ValueError, match="no built-in vocabulary"):
        build_corpus(tmp_path / "c", languages=("xx",))


def test_more_voices_of_the_last_language_leave_the_others_files(tmp_path):
    """A count per language: Spanish voices added after German and Spanish ones change no
    file of the voices before them (the voices and jitters are drawn in order)."""
    kwargs = dict(languages=("de", "es"), words_per_language=1, repetitions=1, seed=1, workers=2, progress=False)
    first = build_corpus(tmp_path / "a", speakers_per_language=1, **kwargs).parent
    more = build_corpus(tmp_path / "b", speakers_per_language={"de": 1, "es": 2}, **kwargs).parent
    for speaker in ("de-00", "es-00"):
        assert _digest(first / "wav" / speaker) == _digest(more / "wav" / speaker)
        assert _digest(first / "alignments" / speaker) == _digest(more / "alignments" / speaker)
    assert sorted(p.name for p in (more / "wav").iterdir()) == ["de-00", "es-00", "es-01"]
    assert make_speakers(["de", "es"], {"de": 8, "es": 24}, 1)[:16] == make_speakers(["de", "es"], 8, 1)
    spanish = make_speakers(["de", "es"], {"de": 8, "es": 30}, 1)[8:]
    assert len({s.voice for s in spanish}) == 30  # 2 base voices x 15 variants: none repeated
    with pytest.raises(ValueError, match=r"no count for \['es'\]"):
        make_speakers(["de", "es"], {"de": 2}, 1)
    with pytest.raises(ValueError, match="positive integer for 'de'"):
        make_speakers(["de"], {"de": 0}, 1)


def test_corpus_command_line(tmp_path):
    """`python -m lightning_tx.data.corpus` (its speakers' interpreters import the module by
    name, not as `__main__`)."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "lightning_tx.data.corpus", "--out", str(tmp_path / "c"), "--languages", "en",
               "--speakers", "1", "--words", "2", "--repetitions", "1"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    rows = list(csv.DictReader(open(tmp_path / "c" / "manifest.csv", encoding="utf-8")))
    assert [r["label"] for r in rows] == ["yes", "no"] and all((tmp_path / "c" / r["audio"]).is_file() for r in rows)


def test_a_failed_speaker_names_itself_and_the_cause(tmp_path):
    """Each speaker is synthesised in its own interpreter; its failure surfaces with the
    speaker and the child's error, not as a missing row."""
    from lightning_tx.data.corpus import _synthesize_speaker

    job = {"root": str(tmp_path), "text": "yes", "label": "yes", "speaker": "en-07", "language": "en",
           "split": "train", "voice": "no-such-voice", "rate": 150, "pitch": 50, "audio": "wav/a.wav",
           "alignment": "alignments/a.txt"}  # fmt: skip
    with pytest.raises(RuntimeError, match=r"(?s)speaker 'en-07' failed.*no voice 'no-such-voice'"):
        _synthesize_speaker([job])


def test_a_failed_speaker_stops_the_build(tmp_path, monkeypatch):
    """No speaker starts after one has failed (nor after Ctrl-C): the build stops there."""
    import lightning_tx.data.corpus as corpus

    monkeypatch.setitem(corpus.BASE_VOICES, "de", ["no-such-voice"])
    with pytest.raises(RuntimeError, match="speaker 'de-00' failed"):
        build_corpus(tmp_path, languages=("de", "en"), speakers_per_language={"de": 1, "en": 2},
                     words_per_language=1, repetitions=1, workers=1, progress=False)  # fmt: skip
    assert not (tmp_path / "wav" / "en-01").exists()


def test_data_package_imports_its_names_when_used():
    """`lightning_tx.data` exports its names lazily (each corpus voice's interpreter imports
    only the corpus module, not Lightning); every exported name is the defining module's own."""
    import importlib
    import subprocess
    import sys

    import lightning_tx.data as data

    for name in data.__all__:
        module = importlib.import_module(f"lightning_tx.data.{data._MODULES[name]}")
        assert getattr(data, name) is getattr(module, name)
    assert sorted(data.__all__) == sorted(data._MODULES)
    with pytest.raises(AttributeError, match="has no attribute 'SpeechModule'"):
        data.SpeechModule  # noqa: B018
    probe = "import sys, lightning_tx.data.corpus; print('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"


def test_datamodule_batches(tiny_corpus):
    dm = SpeechDataModule(manifest=tiny_corpus, batch_size=4, shuffle=False)
    dm.setup("fit")
    assert dm.labels == ["no", "up", "yes"] and dm.num_classes == 3
    assert "sil" in dm.alignment_labels
    batch = next(iter(dm.train_dataloader()))
    assert batch["waveforms"].shape[0] == 4 and batch["lengths"].shape == (4,)
    assert int(batch["lengths"].max()) == batch["waveforms"].shape[1]
    assert batch["labels"].dtype == torch.long and len(batch["alignments"]) == 4
    assert len(dm.records("val")) == 6 and len(dm.records("test")) == 6


def test_vocabulary_round_trip(tiny_corpus, tmp_path):
    dm = SpeechDataModule(manifest=tiny_corpus)
    dm.setup()
    dm.save_vocabulary(tmp_path / "vocab.json")
    again = SpeechDataModule(manifest=tiny_corpus, vocabulary=tmp_path / "vocab.json")
    again.setup()
    assert again.labels == dm.labels and again.alignment_labels == dm.alignment_labels
    restored = SpeechDataModule(manifest=tiny_corpus)
    restored.load_state_dict(dm.state_dict())
    assert restored.labels == dm.labels


def _write_manifest(path, rows, columns=("audio", "label", "split")):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture()
def wav_files(tmp_path):
    files = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, 0.1 * np.sin(np.arange(8000) / (5 + i)), 16000)
        files.append(path.name)
    return files


def test_jsonl_manifest_and_folder_layout(tmp_path, wav_files):
    lines = [json.dumps({"audio": f, "text": "hello", "speaker": "s1"}) for f in wav_files]
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    records = read_manifest(tmp_path / "m.jsonl")
    assert records[0].text == "hello" and records[0].label is None and records[0].split == "train"
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            folder = tmp_path / "folders" / split / label
            folder.mkdir(parents=True)
            soundfile.write(folder / "a.wav", np.zeros(1600) + 0.01, 16000)
    dm = SpeechDataModule(folder=tmp_path / "folders", batch_size=2)
    dm.setup()
    assert dm.labels == ["cat", "dog"] and len(dm.records("test")) == 2


@pytest.mark.parametrize(
    ("rows", "columns", "message"),
    [
        ([{"file": "u0.wav", "label": "a"}], ("file", "label"), "no 'audio' column"),
        ([{"audio": "u0.wav", "speaker": "x"}], ("audio", "speaker"), "needs a 'label' or a 'text' column"),
        ([{"audio": "", "label": "a", "split": "train"}], None, "row 2: empty 'audio' field"),
        ([{"audio": "u0.wav", "label": "a", "split": "dev"}], None, "row 2: 'split' must be one of"),
        (
            [
                {"audio": "u0.wav", "label": "a", "split": "train"},
                {"audio": "u1.wav", "label": "b", "split": "val"},
            ],
            None,
            "label 'b' of .*u1.wav \\(val split\\) does not occur in the train split",
        ),
    ],
)
def test_bad_manifests_name_the_problem(tmp_path, wav_files, rows, columns, message):
    path = _write_manifest(tmp_path / "m.csv", rows, columns or ("audio", "label", "split"))
    with pytest.raises(ManifestError, match=message):
        SpeechDataModule(manifest=path).setup()


def test_missing_manifest_and_bad_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "m.txt").write_text("audio,label\n")
    with pytest.raises(ManifestError, match=".csv or .jsonl"):
        read_manifest(tmp_path / "m.txt")


def test_bad_audio_is_named_or_skipped(tmp_path, wav_files):
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav file")
    rows = [{"audio": f, "label": "a" if i % 2 else "b", "split": "train"} for i, f in enumerate(wav_files)]
    rows.append({"audio": "broken.wav", "label": "a", "split": "train"})
    rows.append({"audio": "missing.wav", "label": "b", "split": "train"})
    path = _write_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(AudioError, match="broken.wav"):
        SpeechDataModule(manifest=path).setup()
    dm = SpeechDataModule(manifest=path, skip_bad_files=True)
    with pytest.warns(UserWarning, match="skipped 2 unreadable audio files"):
        dm.setup()
    assert len(dm.records("train")) == 3
    assert [p.rsplit("/", 1)[-1] for p, _ in dm.skipped_files] == ["broken.wav", "missing.wav"]


def test_load_audio_mixes_resamples_and_caps(tmp_path):
    stereo = np.stack([np.full(22050, 0.2), np.full(22050, 0.4)], axis=1)
    soundfile.write(tmp_path / "s.wav", stereo, 22050)
    waveform = load_audio(tmp_path / "s.wav", 16000)
    assert waveform.shape == (16000,) and abs(float(waveform[8000]) - 0.3) < 1e-3
    assert load_audio(tmp_path / "s.wav", 16000, max_seconds=0.5).shape == (8000,)
    with pytest.raises(AudioError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav", 16000)


def test_hf_dataset_rows():
    rows = [
        {
            "audio": {"array": np.zeros(8000) + 0.01 * i, "sampling_rate": 8000},
            "label": i % 2,
            "split": "train",
        }
        for i in range(4)
    ]
    dm = SpeechDataModule.from_hf_dataset(rows, split_column="split", batch_size=4)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["waveforms"].shape == (4, 16000) and sorted(batch["labels"].tolist()) == [0, 0, 1, 1]


def test_label_column_and_include(tiny_corpus):
    dm = SpeechDataModule(manifest=tiny_corpus, label_column="speaker", include={"label": ["yes", "no"]})
    dm.setup()
    assert dm.labels == ["en-00", "en-01"] and len(dm.records("train")) == 4
    with pytest.raises(ManifestError, match="no column 'accent'"):
        SpeechDataModule(manifest=tiny_corpus, include={"accent": ["x"]}).setup()
    with pytest.raises(ManifestError, match="match include"):
        SpeechDataModule(manifest=tiny_corpus, include={"speaker": ["nobody"]}).setup()
