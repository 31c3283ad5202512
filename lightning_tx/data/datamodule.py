"""SpeechDataModule: utterances from a manifest, class folders or a Hugging Face dataset,
as padded waveform batches with lengths, labels, transcripts and alignments."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import soundfile
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from lightning_tx.data.audio import (
    AudioError,
    check_not_truncated,
    hf_audio_samples,
    load_audio,
    pad_waveforms,
    waveform_from_array,
)
from lightning_tx.data.manifest import (
    ManifestError,
    UtteranceRecord,
    read_alignment,
    read_manifest,
    records_from_folders,
)
from lightning_tx.data.sampling import LengthGroupedSampler

if TYPE_CHECKING:
    from lightning_tx.data.streaming import StreamingSpeechDataModule


def _field(record: UtteranceRecord, column: str) -> str | None:
    """A manifest column of a record: a known field or one of the extra columns."""
    if column in ("audio", "label", "text", "alignment", "speaker", "split"):
        return getattr(record, column)
    if column not in record.extra:
        raise ManifestError(f"the manifest has no column {column!r} (for {record.audio})")
    return record.extra[column]


class SpeechDataset(Dataset):
    """Records -> dicts with ``waveform [S]`` (float32 at ``sample_rate``) and metadata."""

    def __init__(
        self,
        records: Sequence[UtteranceRecord],
        sample_rate: int,
        label_to_id: dict[str, int] | None,
        max_seconds: float | None = None,
        audio_arrays: Sequence[tuple[np.ndarray, int]] | None = None,
    ) -> None:
        self.records, self.sample_rate = list(records), sample_rate
        self.label_to_id, self.max_seconds = label_to_id, max_seconds
        self.audio_arrays = audio_arrays

    def __len__(self) -> int:
        return len(self.records)

    def durations(self) -> list[float]:
        """Seconds of audio of each utterance as it will be read (capped at ``max_seconds``),
        from the file headers (or the arrays' lengths), without decoding the audio."""
        if self.audio_arrays is not None:
            seconds = [
                len(array) / rate if np.ndim(array) == 1 else np.shape(array)[-1] / rate
                for array, rate in self.audio_arrays
            ]
        else:
            seconds = [soundfile.info(record.audio).duration for record in self.records]
        cap = math.inf if self.max_seconds is None else self.max_seconds
        return [min(value, cap) for value in seconds]

    def _waveform(self, index: int) -> torch.Tensor:
        if self.audio_arrays is None:
            return load_audio(self.records[index].audio, self.sample_rate, max_seconds=self.max_seconds)
        array, rate = self.audio_arrays[index]
        return waveform_from_array(array, rate, self.sample_rate, self.max_seconds)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        item: dict[str, Any] = {
            "index": index,
            "waveform": self._waveform(index),
            "path": record.audio,
            "text": record.text,
            "speaker": record.speaker,
            "alignment": read_alignment(record.alignment) if record.alignment else None,
        }
        if self.label_to_id is not None:
            item["label"] = self.label_to_id[record.label]
        return item


def default_num_workers() -> int:
    """DataLoader workers when none are asked for: with CUDA, ``min(8, CPUs // 2)`` (decoding
    overlaps the GPU); on the CPU alone 0 (workers would compete with the encoder for cores)."""
    if not torch.cuda.is_available():
        return 0
    return min(8, (os.cpu_count() or 2) // 2)


def collate_utterances(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad waveforms to ``[B, S_max]`` with ``lengths [B]``; labels to ``[B]``; keep the rest as lists."""
    waveforms, lengths = pad_waveforms([item["waveform"] for item in items])
    batch: dict[str, Any] = {
        "waveforms": waveforms,
        "lengths": lengths,
        "indices": torch.tensor([item["index"] for item in items]),
        "paths": [item["path"] for item in items],
        "texts": [item["text"] for item in items],
        "speakers": [item["speaker"] for item in items],
        "alignments": [item["alignment"] for item in items],
    }
    if "label" in items[0]:
        batch["labels"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
    return batch


class SpeechDataModule(L.LightningDataModule):
    """Speech utterances for scoring and fine-tuning.

    Give exactly one source: ``manifest`` (CSV/JSONL, see :mod:`lightning_tx.data.manifest`),
    ``folder`` (a folder per class, optionally under ``train/``, ``val/``, ``test/``), or a
    Hugging Face dataset through :meth:`from_hf_dataset`.

    Audio is read with ``soundfile``, mixed to mono, resampled to ``sample_rate`` (set it to
    the encoder's rate), capped at ``max_seconds`` and padded per batch. The label vocabulary
    (utterance labels, and the labels of alignment segments) is built once from the train
    split, kept in :meth:`state_dict` (so it travels in checkpoints) and can be saved with
    :meth:`save_vocabulary`; a label in val/test that the train split lacks is an error.
    Unreadable audio files raise an error naming them, or with ``skip_bad_files=True`` are
    left out at :meth:`setup` and listed in :attr:`skipped_files`.

    ``label_column`` picks the column whose values are the classes (e.g. ``"speaker"`` for
    speaker identification); ``include`` keeps only rows whose columns take the listed
    values (e.g. ``{"speaker": ["en-06", "en-07"], "language": ["en"]}``).

    ``num_workers`` DataLoader workers decode and resample the audio while the encoder runs
    (default: with CUDA, ``min(8, CPUs // 2)``; without, 0, as the workers would take the
    cores the encoder runs on); ``pin_memory`` (default: when CUDA is available) lets batches
    copy to the GPU asynchronously. ``group_by_length`` orders the training batches with a
    :class:`~lightning_tx.data.sampling.LengthGroupedSampler` (utterances of similar length
    together, less padding; read from the file headers at the first training loader).

    Batches are dicts: ``waveforms [B, S]``, ``lengths [B]`` (samples), ``labels [B]`` (when
    the data has labels), ``texts``, ``speakers``, ``alignments`` (lists of
    ``(start, end, label)`` or None), ``paths``, ``indices``.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | None = None,
        folder: str | os.PathLike | None = None,
        sample_rate: int = 16_000,
        max_seconds: float | None = 10.0,
        batch_size: int = 16,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        shuffle: bool = True,
        group_by_length: bool = False,
        skip_bad_files: bool = False,
        vocabulary: str | os.PathLike | None = None,
        require_targets: bool = True,
        label_column: str = "label",
        include: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__()
        self.require_targets = require_targets
        self.label_column, self.include = label_column, include
        if (manifest is None) == (folder is None):
            raise ValueError("give exactly one of `manifest` or `folder`")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        self.manifest, self.folder = manifest, folder
        self.sample_rate, self.max_seconds = sample_rate, max_seconds
        self.batch_size, self.shuffle, self.group_by_length = batch_size, shuffle, group_by_length
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        if self.num_workers < 0:
            raise ValueError(f"`num_workers` must be >= 0, got {num_workers}")
        # Page-locked batches copy to a GPU asynchronously; without one they only cost memory.
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.skip_bad_files = skip_bad_files
        self.vocabulary_path = vocabulary
        self.labels: list[str] | None = None
        self.alignment_labels: list[str] | None = None
        self.skipped_files: list[tuple[str, str]] = []
        self._records: dict[str, list[UtteranceRecord]] | None = None
        self._arrays: dict[str, list[tuple[np.ndarray, int]]] | None = None

    # ------------------------------------------------------------------ sources
    @classmethod
    def from_hf_dataset(
        cls,
        dataset: Any,
        *,
        audio_column: str = "audio",
        label_column: str | None = "label",
        text_column: str | None = None,
        split_column: str | None = None,
        streaming: bool = False,
        **kwargs: Any,
    ) -> SpeechDataModule | StreamingSpeechDataModule:
        """From a Hugging Face ``datasets.Dataset`` (or any sequence of row dicts) whose audio
        column holds what :func:`~lightning_tx.data.audio.hf_audio_samples` reads (decoded arrays, encoded
        ``{"bytes"}``, ``{"path"}``, torchcodec decoders; a split gives all its rows one way). Class-label
        features are mapped to their names.

        With ``streaming=True``: a :class:`~lightning_tx.data.StreamingSpeechDataModule` over
        ``dataset`` (a ``datasets.IterableDataset``, or a dict of them by split), read row by
        row and never held in memory; ``kwargs`` go to it (e.g. ``labels=[...]``)."""
        if streaming:
            from lightning_tx.data.streaming import StreamingSpeechDataModule

            if split_column is not None:
                raise ValueError("a stream cannot be split by a column: give a dict {'train': ..., 'val': ...}")
            return StreamingSpeechDataModule(
                dataset, audio_column=audio_column, label_column=label_column, text_column=text_column, **kwargs
            )
        module = cls(manifest="<hf dataset>", **kwargs)
        names = None
        features = getattr(dataset, "features", None)
        if features is not None and label_column and hasattr(features.get(label_column), "names"):
            names = features[label_column].names
        records, arrays = {s: [] for s in ("train", "val", "test")}, {s: [] for s in ("train", "val", "test")}
        for number, row in enumerate(dataset):
            audio = row.get(audio_column)
            label = row.get(label_column) if label_column else None
            if label is not None and names is not None:
                if not 0 <= int(label) < len(names):  # e.g. -1, Hugging Face's "no label"
                    raise ManifestError(
                        f"dataset row {number}: class id {int(label)} in column {label_column!r} is outside its "
                        f"ClassLabel's {len(names)} names"
                    )
                label = names[int(label)]
            split = row.get(split_column, "train") if split_column else "train"
            if split not in records:
                raise ManifestError(f"dataset row {number}: split must be train/val/test, got {split!r}")
            try:
                decoded = hf_audio_samples(audio, f"dataset row {number}", audio_column)
            except TypeError as error:
                raise ManifestError(str(error)) from None
            path = audio.get("path") if isinstance(audio, Mapping) else None
            records[split].append(
                UtteranceRecord(
                    audio=str(path or f"<row {number}>"),
                    label=None if label is None else str(label),
                    text=row.get(text_column) if text_column else None,
                    split=split,
                )
            )
            arrays[split].append(None if isinstance(decoded, str) else decoded)
        for split, found in arrays.items():
            if any(a is None for a in found) and any(a is not None for a in found):
                raise ManifestError(
                    f"the {split} rows mix audio given as a path with decoded audio (arrays or bytes): "
                    "give every row of a split the same way (e.g. cast the column with one Audio feature)"
                )
        module._records = records
        module._arrays = {s: (None if any(a is None for a in arrays[s]) else arrays[s]) for s in arrays}
        return module

    def _read_records(self) -> list[UtteranceRecord]:
        if self.folder is not None:
            records = records_from_folders(self.folder)
        else:
            records = read_manifest(self.manifest, require_targets=self.require_targets)
        if self.include:
            for column, allowed in self.include.items():
                allowed = {str(value) for value in allowed}
                records = [r for r in records if str(_field(r, column)) in allowed]
            if not records:
                raise ManifestError(f"no utterances of {self.manifest or self.folder} match include={self.include}")
        if self.label_column != "label":
            for record in records:
                value = _field(record, self.label_column)
                if value in (None, ""):
                    raise ManifestError(f"{record.audio} has no value in label column {self.label_column!r}")
                record.label = str(value)
        return records

    def _readable(self, records: list[UtteranceRecord]) -> list[UtteranceRecord]:
        """Check each file's header now, so a bad file fails (or is skipped) before any work."""
        kept = []
        for record in records:
            try:
                info = soundfile.info(record.audio)
                if info.frames == 0:
                    raise AudioError(f"audio file {record.audio!r} has no samples")
                check_not_truncated(record.audio)
            except (RuntimeError, OSError, soundfile.LibsndfileError, AudioError) as error:
                reason = (
                    str(error) if isinstance(error, AudioError) else f"cannot read audio file {record.audio!r}: {error}"
                )
                if not self.skip_bad_files:
                    raise AudioError(reason + " (pass skip_bad_files=True to leave such files out)") from error
                self.skipped_files.append((record.audio, reason))
                continue
            kept.append(record)
        return kept

    # ------------------------------------------------------------------ setup
    def prepare_data(self) -> None:
        """Nothing to download: the data is local."""

    def setup(self, stage: str | None = None) -> None:
        if self._records is None:
            self.skipped_files = []
            records = self._readable(self._read_records())
            self._records = {s: [r for r in records if r.split == s] for s in ("train", "val", "test")}
            if self.skipped_files:
                rank_zero_warn(f"skipped {len(self.skipped_files)} unreadable audio files (see `skipped_files`)")
        if not self._records["train"]:
            raise ManifestError(f"no train utterances in {self.manifest or self.folder}")
        if self.labels is None:
            self._build_vocabulary()
        self._check_labels()

    def _build_vocabulary(self) -> None:
        if self.vocabulary_path is not None and Path(self.vocabulary_path).is_file():
            self.load_state_dict(json.loads(Path(self.vocabulary_path).read_text(encoding="utf-8")))
            return
        train = self._records["train"]
        labels = {r.label for r in train if r.label is not None}
        self.labels = sorted(labels) if labels else []
        segment_labels = set()
        for record in train:
            if record.alignment:
                segment_labels.update(label for _, _, label in read_alignment(record.alignment))
        self.alignment_labels = sorted(segment_labels)

    def _check_labels(self) -> None:
        known = set(self.labels or [])
        for split, records in self._records.items():
            for record in records:
                if record.label is not None and record.label not in known:
                    raise ManifestError(
                        f"label {record.label!r} of {record.audio} ({split} split) does not occur "
                        "in the train split: the model could never predict it"
                    )
        if any(r.label is None for r in self._records["train"]) and known:
            raise ManifestError("some train utterances have a label and some do not")

    @property
    def label_to_id(self) -> dict[str, int] | None:
        return {label: i for i, label in enumerate(self.labels)} if self.labels else None

    @property
    def alignment_label_to_id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.alignment_labels or [])}

    @property
    def num_classes(self) -> int:
        """Utterance classes in the train split (reads the manifest on first use)."""
        if self.labels is None:
            self.setup()
        return len(self.labels)

    def records(self, split: str) -> list[UtteranceRecord]:
        if self._records is None:
            raise RuntimeError("call setup() first")
        return self._records[split]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "alignment_labels": self.alignment_labels}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.labels = state_dict.get("labels")
        self.alignment_labels = state_dict.get("alignment_labels")

    def save_vocabulary(self, path: str | os.PathLike) -> None:
        """Write the vocabulary (JSON) so a later run maps labels to the same ids."""
        Path(path).write_text(json.dumps(self.state_dict(), indent=2, ensure_ascii=False), encoding="utf-8")

    # ------------------------------------------------------------------ loaders
    def dataset(self, split: str, sample_rate: int | None = None) -> SpeechDataset:
        """The utterances of ``split``, read at ``sample_rate`` (default: the datamodule's)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"`split` must be 'train', 'val' or 'test', got {split!r}")
        arrays = self._arrays.get(split) if self._arrays else None
        rate = self.sample_rate if sample_rate is None else sample_rate
        return SpeechDataset(self.records(split), rate, self.label_to_id, self.max_seconds, arrays)

    def at_sample_rate(self, sample_rate: int) -> SpeechDataModule:
        """This datamodule reading audio at ``sample_rate``: a shallow copy that shares the
        records and vocabulary (this one is left as it is)."""
        if sample_rate == self.sample_rate:
            return self
        other = copy.copy(self)
        other.sample_rate = sample_rate
        return other

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        if len(dataset) == 0:
            raise ManifestError(f"the {split} split of {self.manifest or self.folder} is empty")
        sampler = None
        if shuffle and self.group_by_length:
            sampler = LengthGroupedSampler.for_trainer(dataset.durations(), self.batch_size, self.trainer)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_utterances,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
