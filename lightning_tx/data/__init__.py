"""Speech data: manifests, audio, the SpeechDataModule, the built-in corpus."""

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
