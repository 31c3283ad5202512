"""StreamingSpeechDataModule: every utterance of a stream exactly once over DDP ranks and
DataLoader workers, items equal to the map-style SpeechDataModule's, clear errors on bad rows."""

import math
import multiprocessing
import os
import pickle
from collections import Counter

import numpy as np
import pytest
import soundfile
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

datasets = pytest.importorskip("datasets")

from lightning_tx.data import (  # noqa: E402
    AudioError,
    ManifestError,
    SpeechDataModule,
    StreamingSpeechDataModule,
    StreamingSpeechDataset,
    collate_utterances,
)

NUM_ROWS = 13  # odd, and not a multiple of any world size x worker count used here
NAMES = ["down", "go", "up"]  # sorted, so the ClassLabel ids agree with SpeechDataModule's sorted vocabulary
SOURCE_RATE, RATE, MAX_SECONDS = 8000, 16000, 0.06
PATHS = [f"utt{i:02d}" for i in range(NUM_ROWS)]


def _columns(num_rows: int = NUM_ROWS) -> dict:
    """Rows with audio arrays of different lengths (some longer than MAX_SECONDS once resampled),
    an id in the audio's "path", a ClassLabel id and a transcript."""
    audio = [
        {
            "array": (np.sin(np.arange(400 + 37 * i) * (0.05 + 0.01 * i)) * 0.3).astype(np.float32),
            "sampling_rate": SOURCE_RATE,
            "path": PATHS[i],
        }
        for i in range(num_rows)
    ]
    return {"audio": audio, "label": [i % 3 for i in range(num_rows)], "text": [f"text {i}" for i in range(num_rows)]}


def _hf_dataset(num_rows: int = NUM_ROWS) -> "datasets.Dataset":
    list_feature = getattr(datasets, "List", datasets.Sequence)
    features = datasets.Features(
        {
            "audio": {
                "array": list_feature(datasets.Value("float32")),
                "sampling_rate": datasets.Value("int64"),
                "path": datasets.Value("string"),
            },
            "label": datasets.ClassLabel(names=NAMES),
            "text": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(_columns(num_rows), features=features)


def _stream(num_shards: int, num_rows: int = NUM_ROWS) -> "datasets.IterableDataset":
    return _hf_dataset(num_rows).to_iterable_dataset(num_shards=num_shards)


def _seen(loader) -> list[tuple[int, str, int]]:
    """``(index, path, label)`` of every utterance a loader yields."""
    seen = []
    for batch in loader:
        assert batch["waveforms"].shape[0] == batch["lengths"].shape[0] == len(batch["paths"])
        seen += zip(batch["indices"].tolist(), batch["paths"], batch["labels"].tolist(), strict=True)
    return seen


def _check_exactly_once(seen, row_by_row: bool = True) -> None:
    assert Counter(path for _, path, _ in seen) == Counter(PATHS)
    assert len({index for index, _, _ in seen}) == NUM_ROWS  # unique indices
    for index, path, label in seen:
        assert label == int(path[3:]) % 3, path
        if row_by_row:  # the index is the row's position in the stream
            assert path == PATHS[index]


class _Rows:
    """A re-iterable of row dicts that is neither a sequence nor a Hugging Face dataset."""

    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        return iter(self.rows)


def _row_dicts(num_rows: int = NUM_ROWS) -> list[dict]:
    columns = _columns(num_rows)
    return [{"audio": columns["audio"][i], "label": NAMES[columns["label"][i]]} for i in range(num_rows)]


# ---------------------------------------------------------------------- (a) one process, workers
@pytest.mark.parametrize("num_shards", [1, 4])
@pytest.mark.parametrize("num_workers", [0, 1, 2, 3])
def test_one_process_every_utterance_once(num_shards, num_workers):
    dm = StreamingSpeechDataModule(
        _stream(num_shards), sample_rate=RATE, max_seconds=MAX_SECONDS, batch_size=4, num_workers=num_workers
    )
    whole_shards = dm.dataset("train").deals_whole_shards(max(num_workers, 1))
    assert whole_shards == (num_shards == 4 and num_workers == 2)
    _check_exactly_once(_seen(dm.train_dataloader()), row_by_row=not whole_shards)


@pytest.mark.parametrize("make_rows", [_row_dicts, lambda: _Rows(_row_dicts()), lambda: _hf_dataset()])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_other_sources_every_utterance_once(make_rows, num_workers):
    dm = StreamingSpeechDataModule(make_rows(), labels=NAMES, batch_size=3, num_workers=num_workers)
    _check_exactly_once(_seen(dm.train_dataloader()))


# ---------------------------------------------------------------------- (b) DDP, (c) world > stream
DDP_CASES = [(3, 0), (3, 2), (4, 0), (4, 2), (1, 2)]  # (num_shards, workers per rank): 2 x 2 = 4 reads whole shards


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    # DataLoader workers fork, as under torchrun (mp.spawn would make them spawn: seconds of imports each)
    multiprocessing.set_start_method("fork", force=True)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        seen = {}
        for num_shards, num_workers in DDP_CASES:
            dm = StreamingSpeechDataModule(_stream(num_shards), batch_size=2, num_workers=num_workers)
            seen[num_shards, num_workers] = _seen(dm.train_dataloader())
        tiny = StreamingSpeechDataModule(_stream(1, num_rows=1), batch_size=2, num_workers=2)
        seen["one row"] = _seen(tiny.train_dataloader())  # 4 processes, 1 row
        # A DataLoader worker started with "spawn" has no process group: the rank travels in the pickle.
        pickled = pickle.dumps(StreamingSpeechDataset(_row_dicts(), RATE, {n: i for i, n in enumerate(NAMES)}))
    finally:
        dist.destroy_process_group()
    unpickled = pickle.loads(pickled)
    assert unpickled.consumer_and_count() == (rank, world_size)
    seen["unpickled"] = [(item["index"], item["path"], item["label"]) for item in unpickled]
    torch.save(seen, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_two_process_gloo_every_utterance_once(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    for case in [*DDP_CASES, "unpickled"]:
        for rank in range(2):
            assert ranks[rank][case], f"rank {rank} got nothing in {case}"
        whole_shards = isinstance(case, tuple) and case[0] % (2 * max(case[1], 1)) == 0
        _check_exactly_once(ranks[0][case] + ranks[1][case], row_by_row=not whole_shards)
    assert [path for _, path, _ in ranks[0]["one row"] + ranks[1]["one row"]] == ["utt00"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_world_larger_than_the_stream(num_workers):
    world_size = 16 // max(num_workers, 1)  # 16 processes read the 13 rows
    seen, counts = [], []
    for rank in range(world_size):
        dataset = StreamingSpeechDataset(
            _stream(4), RATE, {n: i for i, n in enumerate(NAMES)}, rank=rank, world_size=world_size
        )
        loader = DataLoader(dataset, batch_size=4, num_workers=num_workers, collate_fn=collate_utterances)
        mine = _seen(loader)
        seen += mine
        counts.append(len(mine))
    _check_exactly_once(seen)
    assert counts.count(0) == world_size - math.ceil(NUM_ROWS / max(num_workers, 1))  # ranks with nothing
    assert counts[-1] == 0


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_min_batches_per_rank(num_workers, world_size):
    dm = StreamingSpeechDataModule(_row_dicts(), labels=NAMES, batch_size=2, num_workers=num_workers)
    batches = []
    for rank in range(world_size):
        dataset = StreamingSpeechDataset(dm.streams["train"], RATE, dm.label_to_id, rank=rank, world_size=world_size)
        loader = DataLoader(dataset, batch_size=2, num_workers=num_workers, collate_fn=collate_utterances)
        batches.append(sum(1 for _ in loader))
    assert min(batches) == dm.min_batches_per_rank(NUM_ROWS, world_size)


# ---------------------------------------------------------------------- (d) the map-style items
def _assert_same_items(streamed: list[dict], mapped) -> None:
    assert len(streamed) == len(mapped)
    for index, item in enumerate(streamed):
        expected = mapped[index]
        assert item.keys() == expected.keys()
        assert torch.equal(item["waveform"], expected["waveform"]), index
        for key in item.keys() - {"waveform"}:
            assert item[key] == expected[key], (index, key)


def test_items_equal_the_map_style_items_of_arrays():
    mapped = SpeechDataModule.from_hf_dataset(
        _hf_dataset(), text_column="text", sample_rate=RATE, max_seconds=MAX_SECONDS
    )
    mapped.setup()
    streamed = SpeechDataModule.from_hf_dataset(
        _stream(3), streaming=True, text_column="text", sample_rate=RATE, max_seconds=MAX_SECONDS
    )
    assert isinstance(streamed, StreamingSpeechDataModule)
    assert streamed.labels == mapped.labels and streamed.num_classes == 3
    assert any(len(item["waveform"]) == int(MAX_SECONDS * RATE) for item in streamed.dataset("train"))  # capped
    _assert_same_items(list(streamed.dataset("train")), mapped.dataset("train"))


@pytest.fixture
def wav_files(tmp_path):
    """Stereo 22.05 kHz files (mixed to mono and resampled when read), of different lengths."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / f"w{i}.wav"
        soundfile.write(path, rng.uniform(-0.5, 0.5, size=(900 + 200 * i, 2)).astype(np.float32), 22050)
        paths.append(str(path))
    return paths


def _audio_dataset(paths, decode: bool) -> "datasets.Dataset":
    """An ``Audio`` column, cast from paths (no torchcodec needed to build it)."""
    features = datasets.Features({"audio": datasets.Value("string"), "label": datasets.ClassLabel(names=NAMES)})
    table = datasets.Dataset.from_dict({"audio": paths, "label": [i % 3 for i in range(len(paths))]}, features=features)
    return table.cast_column("audio", datasets.Audio(decode=decode))


def test_items_equal_the_map_style_items_of_audio_files(wav_files):
    mapped = SpeechDataModule.from_hf_dataset(_audio_dataset(wav_files, decode=False), max_seconds=0.1)
    mapped.setup()
    # decode=True: read undecoded and decoded here (Hugging Face would need torchcodec for it)
    streamed = StreamingSpeechDataModule(_audio_dataset(wav_files, decode=True).to_iterable_dataset(2), max_seconds=0.1)
    _assert_same_items(list(streamed.dataset("train")), mapped.dataset("train"))
    # the same files as encoded bytes
    rows = [
        {"audio": {"bytes": open(path, "rb").read(), "path": None}, "label": NAMES[i % 3]}
        for i, path in enumerate(wav_files)
    ]
    from_bytes = list(StreamingSpeechDataModule(rows, labels=NAMES, max_seconds=0.1).dataset("train"))
    for item, expected in zip(from_bytes, mapped.dataset("train"), strict=True):
        assert item["path"] == f"<row {item['index']}>"
        assert torch.equal(item["waveform"], expected["waveform"]) and item["label"] == expected["label"]


class _Samples:
    def __init__(self, data, sample_rate):
        self.data, self.sample_rate = data, sample_rate


class _Decoder:
    """The part of torchcodec's ``AudioDecoder`` read here: ``[C, S]`` samples and their rate."""

    def __init__(self, array, sample_rate):
        self.array, self.sample_rate = np.atleast_2d(array), sample_rate

    def get_all_samples(self):
        return _Samples(torch.from_numpy(self.array), self.sample_rate)


def test_a_torchcodec_style_decoder_reads_like_its_array():
    rows = _row_dicts(3)
    decoded = [{"audio": _Decoder(row["audio"]["array"], SOURCE_RATE), "label": row["label"]} for row in rows]
    label_to_id = {"down": 0, "go": 1, "up": 2}
    streams = StreamingSpeechDataset(decoded, RATE, label_to_id), StreamingSpeechDataset(rows, RATE, label_to_id)
    for item, expected in zip(*streams, strict=True):
        assert torch.equal(item["waveform"], expected["waveform"])


def test_map_style_reads_bytes_and_torchcodec_decoders_like_arrays(wav_files):
    """from_hf_dataset (map-style) takes what the stream takes: encoded bytes and decoders."""
    from_paths = SpeechDataModule.from_hf_dataset(_audio_dataset(wav_files, decode=False), max_seconds=0.1)
    from_paths.setup()

    as_bytes = [{"audio": {"bytes": open(p, "rb").read(), "path": None}, "label": NAMES[i % 3]}
                for i, p in enumerate(wav_files)]  # fmt: skip
    files = [soundfile.read(p, dtype="float32", always_2d=True) for p in wav_files]
    as_decoders = [{"audio": _Decoder(a.T.copy(), rate), "label": NAMES[i % 3]} for i, (a, rate) in enumerate(files)]
    for rows in (as_bytes, as_decoders):
        mapped = SpeechDataModule.from_hf_dataset(rows, max_seconds=0.1)
        mapped.setup()
        for item, expected in zip(mapped.dataset("train"), from_paths.dataset("train"), strict=True):
            assert item["path"] == f"<row {item['index']}>"
            assert torch.equal(item["waveform"], expected["waveform"]) and item["label"] == expected["label"]


@pytest.mark.parametrize(
    "audio, error, message",
    [
        ({"bytes": b"not audio", "path": "x.wav"}, AudioError, "cannot decode the audio bytes of dataset row 1"),
        ({"array": np.zeros(0), "sampling_rate": 8000}, AudioError, "dataset row 1 has no samples"),
        ({"sampling_rate": 8000}, ManifestError, "dataset row 1: .* has no 'array', 'bytes' or 'path'"),
        (np.zeros(10), ManifestError, "dataset row 1: column 'audio' must hold an audio dict .* got ndarray"),
        ({"path": "/some/file.wav"}, ManifestError, "train rows mix audio given as a path with decoded audio"),
    ],
)
def test_map_style_bad_audio_is_named_early(audio, error, message):
    rows = _row_dicts(3)
    rows[1] = {"audio": audio, "label": "go"}
    with pytest.raises(error, match=message):
        SpeechDataModule.from_hf_dataset(rows)


def test_streamed_scores_equal_map_style_scores():
    from lightning_tx.encoders import Filterbank
    from lightning_tx.scoring import (
        EncoderFrames,
        ScoringSession,
        TaskLabels,
        score,
        scoring_loader_like,
        speech_loader,
    )

    def scores(dm, loader):
        labels = TaskLabels.from_datamodule(dm)
        session = ScoringSession(EncoderFrames(Filterbank(n_mels=8), labels), ["logme"], labels.num_classes)
        return score(session, loader)["logme"]

    mapped = SpeechDataModule.from_hf_dataset(_hf_dataset(), sample_rate=RATE, max_seconds=MAX_SECONDS, batch_size=1)
    streamed = StreamingSpeechDataModule(_stream(4), sample_rate=RATE, max_seconds=MAX_SECONDS, batch_size=1)
    loader = streamed.train_dataloader()
    assert scoring_loader_like(loader) is loader  # iterable loaders are scored as they are
    assert isinstance(speech_loader(streamed, sample_rate=RATE).dataset, StreamingSpeechDataset)
    expected = scores(mapped, speech_loader(mapped, sample_rate=RATE))
    got = scores(streamed, loader)
    assert got.keys() == expected.keys()
    for layer in got:
        assert got[layer] == pytest.approx(expected[layer], rel=1e-9)


# ---------------------------------------------------------------------- the datamodule
def test_datamodule_splits_vocabulary_and_state():
    dm = StreamingSpeechDataModule(
        datasets.IterableDatasetDict({"train": _stream(2), "validation": _stream(1, num_rows=4)}), batch_size=5
    )
    assert dm.labels == NAMES and dm.label_to_id == {"down": 0, "go": 1, "up": 2} and dm.num_classes == 3
    assert sorted(dm.streams) == ["train", "val"]
    assert len(_seen(dm.val_dataloader())) == 4
    with pytest.raises(ManifestError, match="no test stream"):
        dm.test_dataloader()
    slower = dm.at_sample_rate(8000)
    assert slower.sample_rate == 8000 and dm.sample_rate == 16000 and slower.streams is dm.streams
    lengths = [len(item["waveform"]) for item in slower.dataset("train")]
    assert lengths[:2] == [400, 437]  # not resampled, and under max_seconds
    state = dm.state_dict()
    other = StreamingSpeechDataModule(_stream(1), labels=["x", "y"])
    other.load_state_dict(state)
    assert other.label_to_id == dm.label_to_id
    # explicit labels: ids follow their order; ClassLabel ids are mapped through the names
    reordered = StreamingSpeechDataModule(_stream(1), labels=["up", "go", "down"])
    assert [item["label"] for item in reordered.dataset("train")][:3] == [2, 1, 0]


def test_unlabelled_streams():
    no_labels = _hf_dataset().remove_columns("label").to_iterable_dataset()
    for dm in (StreamingSpeechDataModule(no_labels), StreamingSpeechDataModule(_row_dicts(), label_column=None)):
        assert dm.labels == [] and dm.label_to_id is None and dm.num_classes == 0
        batch = next(iter(dm.train_dataloader()))
        assert "labels" not in batch and batch["waveforms"].shape[0] == 13


# ---------------------------------------------------------------------- (e) bad input
def _first_error(rows, **kwargs):
    return list(StreamingSpeechDataModule(rows, **kwargs).dataset("train"))


def test_a_label_outside_the_vocabulary():
    rows = _row_dicts(4)  # labels down, go, up, down
    with pytest.raises(
        ManifestError, match=r"row 2 \(utt02\) of the train stream: label 'up' is not in the vocabulary"
    ):
        _first_error(rows, labels=["down", "go"])
    unlabelled_class = _hf_dataset(3).map(lambda row: {"label": -1 if row["text"] == "text 1" else row["label"]})
    with pytest.raises(ManifestError, match=r"row 1 \(utt01\).*class id -1 .*outside its ClassLabel's 3 names"):
        _first_error(unlabelled_class.to_iterable_dataset())
    rows[1] = {"audio": rows[1]["audio"]}
    with pytest.raises(ManifestError, match=r"row 1 \(utt01\) of the train stream has no label in column 'label'"):
        _first_error(rows, labels=NAMES)


def test_a_row_without_audio():
    rows = _row_dicts(3)
    rows[1] = {"label": "go"}
    with pytest.raises(ManifestError, match=r"row 1 .* has no audio in column 'audio' \(its columns: \['label'\]\)"):
        _first_error(rows, labels=NAMES)
    rows[1] = {"audio": None, "label": "go"}
    with pytest.raises(ManifestError, match=r"row 1 \(<row 1>\) of the train stream has no audio in column 'audio'$"):
        _first_error(rows, labels=NAMES)
    rows[1] = {"audio": {"sampling_rate": 8000}, "label": "go"}
    with pytest.raises(ManifestError, match="row 1 .* has no 'array', 'bytes' or 'path'"):
        _first_error(rows, labels=NAMES)
    rows[1] = {"audio": {"array": np.zeros(10)}, "label": "go"}
    with pytest.raises(ManifestError, match="row 1 .* needs its 'sampling_rate'"):
        _first_error(rows, labels=NAMES)
    rows[1] = {"audio": np.zeros(10), "label": "go"}
    with pytest.raises(ManifestError, match="row 1 .* must hold an audio dict .* got ndarray"):
        _first_error(rows, labels=NAMES)


@pytest.mark.parametrize(
    "audio, message",
    [
        ({"array": np.array([0.0, np.nan]), "sampling_rate": 8000}, "row 0 .* contains NaN or Inf"),
        ({"array": np.zeros(0), "sampling_rate": 8000}, "row 0 .* has no samples"),
        ({"bytes": b"not audio", "path": "x.wav"}, r"cannot decode the audio bytes of row 0 \(x.wav\)"),
        ({"path": "/no/such/file.wav"}, "/no/such/file.wav"),
    ],
)
def test_unusable_audio(audio, message):
    with pytest.raises(AudioError, match=message):
        _first_error([{"audio": audio, "label": "a"}], labels=["a", "b"])


def test_bad_sources():
    with pytest.raises(ManifestError, match=r"cannot tell the labels of the train stream.*labels=\[\.\.\.\]"):
        StreamingSpeechDataModule(_row_dicts())
    with pytest.raises(TypeError, match="one-pass iterator"):
        StreamingSpeechDataModule(iter(_row_dicts()), labels=NAMES)
    with pytest.raises(ValueError, match="train/val"):
        StreamingSpeechDataModule({"training": _row_dicts()}, labels=NAMES)
    with pytest.raises(ValueError, match="label_column=None"):
        StreamingSpeechDataModule(_row_dicts(), labels=NAMES, label_column=None)
    with pytest.raises(ValueError, match="twice"):
        StreamingSpeechDataModule(_row_dicts(), labels=["a", "a"])
    with pytest.raises(ValueError, match="give a dict"):
        SpeechDataModule.from_hf_dataset(_stream(1), streaming=True, split_column="split")
    with pytest.raises(ValueError, match="rank"):
        StreamingSpeechDataset(_row_dicts(), RATE, rank=2, world_size=2)


def test_shuffled_stream_every_utterance_once():
    for num_workers in (0, 2, 3):
        stream = _stream(3).shuffle(seed=1, buffer_size=6)
        dm = StreamingSpeechDataModule(stream, batch_size=4, num_workers=num_workers)
        seen = _seen(dm.train_dataloader())
        _check_exactly_once(seen, row_by_row=False)
        assert sorted(index for index, _, _ in seen) == list(range(NUM_ROWS))  # dealt row by row


def test_the_callback_scores_a_stream_in_a_plain_trainer(tmp_path):
    import lightning as L
    from test_callback import KeywordClassifier  # the user's module of the callback tests

    from lightning_tx.callbacks import TransferabilityCallback

    dm = StreamingSpeechDataModule(_stream(4), sample_rate=RATE, max_seconds=MAX_SECONDS, batch_size=4)
    callback = TransferabilityCallback(estimators=["logme"])
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, callbacks=[callback], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(KeywordClassifier(dm.num_classes), datamodule=dm)
    assert list(callback.results["logme"]) == [0] and math.isfinite(callback.results["logme"][0])
    assert trainer.global_step == 4  # ceil(13 / 4) batches


def test_scoring_passes_read_the_stream_at_the_encoders_rate():
    """``speech_loader`` (what ``rank`` and the callback's ``source=`` use) reads a streaming
    datamodule at the rate it is asked for, not at the datamodule's own."""
    from lightning_tx.scoring import speech_loader

    dm = StreamingSpeechDataModule(_stream(1), sample_rate=RATE, max_seconds=None, batch_size=4)
    native = speech_loader(dm, sample_rate=SOURCE_RATE)
    lengths = sorted(n for batch in native for n in batch["lengths"].tolist())
    assert lengths == sorted(400 + 37 * i for i in range(NUM_ROWS))  # the arrays as they are, at 8 kHz
    upsampled = speech_loader(dm, sample_rate=2 * SOURCE_RATE)
    assert sorted(n for batch in upsampled for n in batch["lengths"].tolist()) == [2 * n for n in lengths]
