"""Speech data: manifests, audio, the SpeechDataModule, the built-in corpus.

The names below are imported when first used (PEP 562), not with the package: the corpus
synthesises each voice in a fresh interpreter that imports :mod:`lightning_tx.data.corpus`,
and importing Lightning there with the data module would cost several seconds per voice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_tx.data.audio import AudioError, load_audio, pad_waveforms
    from lightning_tx.data.datamodule import SpeechDataModule, SpeechDataset, collate_utterances
    from lightning_tx.data.manifest import (
        ManifestError,
        UtteranceRecord,
        read_alignment,
        read_manifest,
        records_from_folders,
    )
    from lightning_tx.data.streaming import StreamingSpeechDataModule, StreamingSpeechDataset

_MODULES = {
    "AudioError": "audio",
    "load_audio": "audio",
    "pad_waveforms": "audio",
    "SpeechDataModule": "datamodule",
    "SpeechDataset": "datamodule",
    "collate_utterances": "datamodule",
    "ManifestError": "manifest",
    "UtteranceRecord": "manifest",
    "read_alignment": "manifest",
    "read_manifest": "manifest",
    "records_from_folders": "manifest",
    "StreamingSpeechDataModule": "streaming",
    "StreamingSpeechDataset": "streaming",
}

__all__ = [
    "AudioError",
    "ManifestError",
    "SpeechDataModule",
    "SpeechDataset",
    "StreamingSpeechDataModule",
    "StreamingSpeechDataset",
    "UtteranceRecord",
    "collate_utterances",
    "load_audio",
    "pad_waveforms",
    "read_alignment",
    "read_manifest",
    "records_from_folders",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    globals()[name] = value  # found directly next time
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES})
