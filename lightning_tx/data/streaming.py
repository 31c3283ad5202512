"""Streamed speech data: utterances read row by row from a Hugging Face streaming dataset (a
``datasets.IterableDataset``) or any re-iterable of row dicts, so hours of audio never sit in
memory.

:class:`StreamingSpeechDataset` is a torch ``IterableDataset`` of items in exactly the format of
:class:`~lightning_tx.data.SpeechDataset` (so :func:`~lightning_tx.data.collate_utterances` and
the scoring engine take them unchanged). It deals the stream's rows among all the processes that
read it, DDP ranks times DataLoader workers, so that **every row is yielded exactly once** over
all of them, for any stream length, world size and worker count:

- rows one by one: the process ``consumer = rank * num_workers + worker`` of
  ``consumers = world_size * num_workers`` keeps row ``i`` when ``i % consumers == consumer``.
  Every process reads the whole stream but decodes only its own rows' audio.
- whole shards: a ``datasets.IterableDataset`` whose ``num_shards`` is a multiple of
  ``consumers`` is split with ``datasets.distributed.split_dataset_by_node``, so each process
  reads only its own shards (for a stream from the Hub: downloads only its own files). Give
  the stream such a shard count (``to_iterable_dataset(num_shards=...)``, or a dataset of that
  many files) when reading it is what costs.

Rank and world size are read from ``torch.distributed`` when iterating (and the worker from
``torch.utils.data.get_worker_info()``), so a dataset built before the processes start works in
each of them.

Under DDP, ranks may get different numbers of batches: rows dealt one by one differ by at most
one per process, i.e. at most ``num_workers`` batches per rank; whole shards differ by as much
as the shards' sizes do, and a rank may get nothing when the stream has fewer rows than
processes. A scoring pass does not mind (``lightning_tx.scoring.scoring_loader_like`` returns
iterable loaders as they are; every metric state is summed across ranks). Training does: each
step all-reduces the gradients, so a rank with more batches waits for ranks that have stopped.
For DDP training, cap the epoch with ``Trainer(limit_train_batches=k)`` where ``k`` is at most
the fewest batches any rank gets (:meth:`StreamingSpeechDataModule.min_batches_per_rank` when
rows are dealt one by one and the number of rows is known); the batches past ``k`` on each rank
are then not trained on in that epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lightning_tx.data.audio import hf_audio_samples, load_audio, waveform_from_array
from lightning_tx.data.datamodule import collate_utterances, default_num_workers
from lightning_tx.data.manifest import ManifestError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val"}  # Hugging Face split names


def process_rank_and_count() -> tuple[int, int]:
    """``(rank, world_size)`` of this process in ``torch.distributed`` (``(0, 1)`` outside it)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def worker_id_and_count() -> tuple[int, int]:
    """``(worker id, number of workers)`` of the DataLoader worker running this code
    (``(0, 1)`` in the main process)."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _is_hf(rows: Any, class_name: str) -> bool:
    """Whether ``rows`` is a ``datasets.<class_name>`` (without importing ``datasets`` otherwise)."""
    if not type(rows).__module__.startswith("datasets"):
        return False
    import datasets

    return isinstance(rows, getattr(datasets, class_name))


def _without_audio_decoding(rows: Any, audio_column: str) -> Any:
    """A Hugging Face dataset whose ``Audio`` column yields ``{"bytes", "path"}`` undecoded.

    Hugging Face would decode every row it yields, including the rows other processes keep
    (and, from ``datasets`` 4 on, only with torchcodec); this module decodes only its own rows.
    """
    features = getattr(rows, "features", None)
    if not (_is_hf(rows, "Dataset") or _is_hf(rows, "IterableDataset")) or not features:
        return rows
    from datasets import Audio

    feature = features.get(audio_column)
    if isinstance(feature, Audio) and feature.decode:
        return rows.cast_column(audio_column, Audio(decode=False))
    return rows


def _class_names(rows: Any, label_column: str | None) -> list[str] | None:
    """The names of a ``ClassLabel`` feature at ``label_column`` (None when there is none)."""
    features = getattr(rows, "features", None)
    if not features or not label_column:
        return None
    names = getattr(features.get(label_column), "names", None)
    return None if names is None else [str(name) for name in names]


def _check_reiterable(rows: Any, name: str) -> None:
    if isinstance(rows, Iterator):
        raise TypeError(
            f"{name} is a one-pass iterator ({type(rows).__name__}): each process and epoch reads the "
            "stream from the start, so pass something whose __iter__ starts over (a datasets.IterableDataset, "
            "a list, or an object with an __iter__ method), not a generator"
        )


class StreamingSpeechDataset(IterableDataset):
    """Rows of a stream -> this process's share of items ``{"index", "waveform", "path",
    "text", "speaker", "alignment"[, "label"]}``, the format of
    :class:`~lightning_tx.data.SpeechDataset`.

    ``waveform`` is ``[S]`` float32 mono at ``sample_rate`` Hz, capped at ``max_seconds``.
    ``index`` is unique within one pass over all processes: the row's position in the stream
    when rows are dealt one by one; with whole shards dealt (see the module docstring) it is
    ``consumer + j * consumers`` for the ``j``-th row of a process. ``path`` is the audio's
    path, else ``"<row {index}>"``. ``alignment`` is None (streams carry no alignment files).

    Args:
        rows: a ``datasets.IterableDataset``, a ``datasets.Dataset``, a sequence of row dicts,
            or any iterable of row dicts whose ``__iter__`` starts over each time and yields the
            same rows in the same order in every process (each process and epoch reads it
            from the start). A shuffled Hugging Face stream (``ds.shuffle(seed=...)``) is the
            same in every process; call :meth:`set_epoch` for a new order.
        sample_rate: the rate of the waveforms (Hz).
        label_to_id: label name -> class id; None for unlabelled audio (items get no ``"label"``).
        audio_column: the column with ``{"array", "sampling_rate"}``, ``{"bytes"}`` (an
            encoded file, e.g. a Hugging Face ``Audio(decode=False)`` column) or ``{"path"}``.
            A Hugging Face ``Audio`` column is read undecoded and decoded here with soundfile,
            for this process's rows only.
        label_column: the column of the labels: names, or ``ClassLabel`` ids.
        text_column, speaker_column: columns copied to ``"text"`` and ``"speaker"``.
        max_seconds: keep only each utterance's first ``max_seconds`` seconds.
        rank, world_size: this process's place among the processes reading the stream; by
            default read from ``torch.distributed`` when iterating.
        name: what the error messages call the stream (e.g. ``"the train stream"``).

    Raises (when iterating):
        ManifestError: a row without audio, or whose label is missing or not in ``label_to_id``.
        AudioError: audio that cannot be decoded, is empty or holds NaN/Inf.
    """

    def __init__(
        self,
        rows: Iterable[Mapping[str, Any]],
        sample_rate: int,
        label_to_id: Mapping[str, int] | None = None,
        *,
        audio_column: str = "audio",
        label_column: str | None = "label",
        text_column: str | None = None,
        speaker_column: str | None = None,
        max_seconds: float | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        name: str = "the stream",
    ) -> None:
        _check_reiterable(rows, name)
        if (rank is None) != (world_size is None):
            raise ValueError("give both `rank` and `world_size`, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"`rank` must lie in [0, world_size={world_size}), got {rank}")
        self.rows = _without_audio_decoding(rows, audio_column)
        self.sample_rate, self.max_seconds = sample_rate, max_seconds
        self.label_to_id = None if label_to_id is None else dict(label_to_id)
        self.audio_column, self.label_column = audio_column, label_column
        self.text_column, self.speaker_column = text_column, speaker_column
        self.rank, self.world_size, self.name = rank, world_size, name
        self.class_names = _class_names(self.rows, label_column)
        self._parent_rank_and_count: tuple[int, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started with "spawn" or "forkserver" pickle the dataset in the rank's
        # main process and have no process group of their own: carry the rank along.
        state = dict(self.__dict__)
        if dist.is_available() and dist.is_initialized():
            state["_parent_rank_and_count"] = process_rank_and_count()
        return state

    def set_epoch(self, epoch: int) -> None:
        """Pass ``epoch`` to a stream that reshuffles by epoch (``datasets.IterableDataset``).
        Lightning does not call this for iterable datasets: call it yourself, e.g. from a callback."""
        if callable(getattr(self.rows, "set_epoch", None)):
            self.rows.set_epoch(epoch)

    def _rank_and_count(self) -> tuple[int, int]:
        if self.world_size is not None:
            return self.rank, self.world_size
        if dist.is_available() and dist.is_initialized():
            return process_rank_and_count()
        return self._parent_rank_and_count or (0, 1)

    def consumer_and_count(self) -> tuple[int, int]:
        """``(consumer, consumers)``: this process's number among all the processes reading the
        stream (``rank * num_workers + worker``) and their count (``world_size * num_workers``)."""
        rank, world_size = self._rank_and_count()
        worker, num_workers = worker_id_and_count()
        return rank * num_workers + worker, world_size * num_workers

    def deals_whole_shards(self, consumers: int) -> bool:
        """Whether ``consumers`` processes each read whole shards of the stream (else every
        process reads every row and keeps one in ``consumers``)."""
        return consumers > 1 and _is_hf(self.rows, "IterableDataset") and self.rows.n_shards % consumers == 0

    def rows_of_this_process(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        """``(index, row)`` of each row this process keeps, undecoded."""
        consumer, consumers = self.consumer_and_count()
        if _is_hf(self.rows, "IterableDataset"):
            stream = self.rows
            if consumers > 1:
                from datasets.distributed import split_dataset_by_node

                # Whole shards when n_shards % consumers == 0, else one row in `consumers` from
                # offset `consumer`: either way row j of this split has index consumer + j * consumers.
                stream = split_dataset_by_node(stream, rank=consumer, world_size=consumers)
            # .iter(), not iter(): in a DataLoader worker, the stream's own __iter__ would also
            # give this worker only some of its shards.
            for j, batch in enumerate(stream.iter(batch_size=1)):
                yield consumer + j * consumers, {column: values[0] for column, values in batch.items()}
        elif isinstance(self.rows, Sequence) or _is_hf(self.rows, "Dataset"):
            for index in range(consumer, len(self.rows), consumers):
                yield index, self.rows[index]
        else:
            for index, row in enumerate(self.rows):
                if index % consumers == consumer:
                    yield index, row

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, row in self.rows_of_this_process():
            yield self.item(index, row)

    # ------------------------------------------------------------------ one row
    def item(self, index: int, row: Mapping[str, Any]) -> dict[str, Any]:
        """The item of row ``index``: its audio decoded, resampled and capped, its label an id."""
        if not isinstance(row, Mapping):
            raise ManifestError(f"row {index} of {self.name} must be a dict of columns, got {type(row).__name__}")
        audio = row.get(self.audio_column)
        path = str(audio.get("path") or f"<row {index}>") if isinstance(audio, Mapping) else f"<row {index}>"
        item: dict[str, Any] = {"index": index}
        label = self._label_id(index, row, path) if self.label_to_id is not None else None
        item["waveform"] = self._waveform(index, row, audio, path)
        item.update(
            path=path,
            text=row.get(self.text_column) if self.text_column else None,
            speaker=row.get(self.speaker_column) if self.speaker_column else None,
            alignment=None,
        )
        if label is not None:
            item["label"] = label
        return item

    def _label_id(self, index: int, row: Mapping[str, Any], path: str) -> int:
        where = f"row {index} ({path}) of {self.name}"
        value = row.get(self.label_column)
        if value is None:
            raise ManifestError(f"{where} has no label in column {self.label_column!r}")
        if self.class_names is not None and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= value < len(self.class_names):
                raise ManifestError(
                    f"{where}: class id {int(value)} in column {self.label_column!r} is outside its "
                    f"ClassLabel's {len(self.class_names)} names"
                )
            value = self.class_names[value]
        label = str(value)
        if label not in self.label_to_id:
            shown = ", ".join(repr(name) for name in list(self.label_to_id)[:10])
            more = ", ..." if len(self.label_to_id) > 10 else ""
            raise ManifestError(
                f"{where}: label {label!r} is not in the vocabulary of {len(self.label_to_id)} labels ({shown}{more})"
            )
        return self.label_to_id[label]

    def _waveform(self, index: int, row: Mapping[str, Any], audio: Any, path: str) -> Tensor:
        where = f"row {index} ({path}) of {self.name}"
        if audio is None:
            present = "" if self.audio_column in row else f" (its columns: {sorted(row)})"
            raise ManifestError(f"{where} has no audio in column {self.audio_column!r}{present}")
        try:
            decoded = hf_audio_samples(audio, where, self.audio_column)
        except TypeError as error:
            raise ManifestError(str(error)) from None
        if isinstance(decoded, str):
            return load_audio(decoded, self.sample_rate, max_seconds=self.max_seconds)
        array, rate = decoded
        return waveform_from_array(array, rate, self.sample_rate, self.max_seconds)


class StreamingSpeechDataModule(L.LightningDataModule):
    """Speech utterances streamed from Hugging Face streaming datasets (or re-iterables of row
    dicts), for scoring and fine-tuning, with the attributes of
    :class:`~lightning_tx.data.SpeechDataModule` that the scoring engine reads (``labels``,
    ``label_to_id``, ``num_classes``, ``sample_rate``, ``batch_size``, ``num_workers``, ...).

    Batches are :func:`~lightning_tx.data.collate_utterances` dicts: ``waveforms [B, S]``,
    ``lengths [B]`` (samples), ``labels [B]`` (when labelled), ``paths``, ``indices``, ...
    Rows are dealt among DDP ranks and DataLoader workers as :mod:`lightning_tx.data.streaming`
    describes; under DDP ranks may get different numbers of batches (fine for scoring; for
    training see :meth:`min_batches_per_rank`). The loaders do not shuffle: shuffle the stream
    (``ds.shuffle(seed=..., buffer_size=...)``, the same seed in every process) and call
    :meth:`set_epoch` for a new order each epoch.

    The label vocabulary cannot come from reading the stream (that would read all of it): it is
    ``labels`` when given, else the names of a ``ClassLabel`` feature at ``label_column`` of the
    train split (the first split when there is no train split), in the feature's order, so class
    ids are the dataset's own. (:class:`~lightning_tx.data.SpeechDataModule` sorts the labels it
    finds instead: the ids agree when the names are sorted.) A row whose label is outside it is an
    error naming the row and label. A dataset whose features lack ``label_column``, or
    ``label_column=None``, is unlabelled audio (e.g. a source domain).

    Args:
        data: one stream (the train split) or a dict ``{"train": ..., "val": ..., "test": ...}``
            of streams (``"validation"`` is read as ``"val"``; a ``datasets.IterableDatasetDict``
            works), each as :class:`StreamingSpeechDataset` takes it.
        labels: the label vocabulary (names; class ids follow this order).
        audio_column, label_column, text_column, speaker_column: see :class:`StreamingSpeechDataset`.
        sample_rate: the rate of the waveforms (Hz): the encoder's.
        max_seconds: keep only each utterance's first ``max_seconds`` seconds.
        batch_size: utterances per batch.
        num_workers: DataLoader workers per process; they share the stream (see the module
            docstring). Default: as :class:`~lightning_tx.data.SpeechDataModule` (0 without CUDA).
    """

    def __init__(
        self,
        data: Any,
        *,
        labels: Sequence[Any] | None = None,
        audio_column: str = "audio",
        label_column: str | None = "label",
        text_column: str | None = None,
        speaker_column: str | None = None,
        sample_rate: int = 16_000,
        max_seconds: float | None = 10.0,
        batch_size: int = 16,
        num_workers: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        num_workers = default_num_workers() if num_workers is None else num_workers
        if num_workers < 0:
            raise ValueError(f"`num_workers` must be >= 0, got {num_workers}")
        self.streams = {
            split: _without_audio_decoding(rows, audio_column) for split, rows in self._splits(data).items()
        }
        self.audio_column, self.label_column = audio_column, label_column
        self.text_column, self.speaker_column = text_column, speaker_column
        self.sample_rate, self.max_seconds = sample_rate, max_seconds
        self.batch_size, self.num_workers = batch_size, num_workers
        self.labels: list[str] = self._vocabulary(labels)
        self.alignment_labels: list[str] = []
        # Where the data comes from, as SpeechDataModule names it (for messages and reports).
        self.manifest, self.folder = "<streamed dataset>", None

    @staticmethod
    def _splits(data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            _check_reiterable(data, "the train stream")
            return {"train": data}
        splits: dict[str, Any] = {}
        for key, rows in data.items():
            split = SPLIT_ALIASES.get(key, key)
            if split not in SPLITS:
                raise ValueError(f"stream splits must be train/val(idation)/test, got {key!r}")
            if split in splits:
                raise ValueError(f"two streams for the {split} split")
            _check_reiterable(rows, f"the {split} stream")
            splits[split] = rows
        if not splits:
            raise ValueError("no streams given")
        return splits

    def _vocabulary(self, labels: Sequence[Any] | None) -> list[str]:
        if labels is not None:
            if self.label_column is None:
                raise ValueError("`labels` given with label_column=None: which column holds the labels?")
            names = [str(label) for label in labels]
            if not names:
                raise ValueError("`labels` is empty")
            if len(set(names)) != len(names):
                raise ValueError(f"`labels` holds a label twice: {names}")
            return names
        if self.label_column is None:
            return []
        split = "train" if "train" in self.streams else next(iter(self.streams))
        rows = self.streams[split]
        names = _class_names(rows, self.label_column)
        if names is not None:
            return names
        features = getattr(rows, "features", None)
        if features and self.label_column not in features:
            return []  # the dataset says it has no labels: unlabelled audio
        raise ManifestError(
            f"cannot tell the labels of the {split} stream without reading all of it: pass `labels=[...]`, give "
            f"column {self.label_column!r} a datasets.ClassLabel feature, or pass label_column=None for "
            "unlabelled audio"
        )

    # ------------------------------------------------------------------ setup and state
    def prepare_data(self) -> None:
        """Nothing to prepare: the streams are read as they are iterated."""

    def setup(self, stage: str | None = None) -> None:
        """Nothing to read: the vocabulary is known from the start."""

    @property
    def label_to_id(self) -> dict[str, int] | None:
        return {label: i for i, label in enumerate(self.labels)} if self.labels else None

    @property
    def alignment_label_to_id(self) -> dict[str, int]:
        return {}

    @property
    def num_classes(self) -> int:
        """The number of labels in the vocabulary (0 for unlabelled audio)."""
        return len(self.labels)

    def state_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "alignment_labels": self.alignment_labels}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.labels = list(state_dict.get("labels") or [])
        self.alignment_labels = list(state_dict.get("alignment_labels") or [])

    def set_epoch(self, epoch: int) -> None:
        """Pass ``epoch`` to every stream that reshuffles by epoch (see :meth:`StreamingSpeechDataset.set_epoch`)."""
        for split in self.streams:
            self.dataset(split).set_epoch(epoch)

    def min_batches_per_rank(self, num_rows: int, world_size: int) -> int:
        """The fewest batches any of ``world_size`` ranks gets from a stream of ``num_rows``
        rows dealt one by one (with whole shards dealt, it depends on the shards' sizes).

        Process ``c`` of the ``C = world_size * max(num_workers, 1)`` keeps
        ``num_rows // C + (c < num_rows % C)`` rows and batches them on its own; the last rank
        has the fewest. Under DDP training, ``Trainer(limit_train_batches=...)`` of at most this
        keeps the ranks in step."""
        workers = max(self.num_workers, 1)
        consumers = world_size * workers
        last_rank = range((world_size - 1) * workers, consumers)
        rows = [num_rows // consumers + (consumer < num_rows % consumers) for consumer in last_rank]
        return sum(math.ceil(count / self.batch_size) for count in rows)

    # ------------------------------------------------------------------ loaders
    def dataset(self, split: str, sample_rate: int | None = None) -> StreamingSpeechDataset:
        """The stream of ``split``, read at ``sample_rate`` (default: the datamodule's)."""
        if split not in SPLITS:
            raise ValueError(f"`split` must be 'train', 'val' or 'test', got {split!r}")
        if split not in self.streams:
            raise ManifestError(f"no {split} stream: the streams are {sorted(self.streams)}")
        return StreamingSpeechDataset(
            self.streams[split],
            self.sample_rate if sample_rate is None else sample_rate,
            self.label_to_id,
            audio_column=self.audio_column,
            label_column=self.label_column if self.labels else None,
            text_column=self.text_column,
            speaker_column=self.speaker_column,
            max_seconds=self.max_seconds,
            name=f"the {split} stream",
        )

    def at_sample_rate(self, sample_rate: int) -> StreamingSpeechDataModule:
        """This datamodule reading audio at ``sample_rate``: a shallow copy sharing the streams
        and vocabulary (this one is left as it is)."""
        if sample_rate == self.sample_rate:
            return self
        other = copy.copy(self)
        other.sample_rate = sample_rate
        return other

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_utterances,
            persistent_workers=False,  # workers take a fresh copy of the stream, and its epoch, each pass
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
