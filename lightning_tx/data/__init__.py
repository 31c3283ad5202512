"""Speech data: manifests, audio, the SpeechDataModule, TIH frame labels, the built-in corpus."""

from lightning_tx.data.audio import AudioError, load_audio, pad_waveforms
from lightning_tx.data.datamodule import SpeechDataModule, SpeechDataset, collate_utterances
from lightning_tx.data.frame_labels import (
    FRAME_LABEL_SOURCES,
    CTCForcedAligner,
    alignment_frame_labels,
    batch_frame_labels,
    broadcast_frame_labels,
    uniform_frame_labels,
)
from lightning_tx.data.manifest import (
    ManifestError,
    UtteranceRecord,
    read_alignment,
    read_manifest,
    records_from_folders,
)

__all__ = [
    "AudioError",
    "CTCForcedAligner",
    "FRAME_LABEL_SOURCES",
    "ManifestError",
    "SpeechDataModule",
    "SpeechDataset",
    "UtteranceRecord",
    "alignment_frame_labels",
    "batch_frame_labels",
    "broadcast_frame_labels",
    "collate_utterances",
    "load_audio",
    "pad_waveforms",
    "read_alignment",
    "read_manifest",
    "records_from_folders",
    "uniform_frame_labels",
]
