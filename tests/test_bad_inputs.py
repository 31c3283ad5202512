"""The bad-input matrix: every mistake gets a clear error (type and message checked) raised
early, or a documented value; nothing is silently wrong. One row per case, across
functional, metrics, data, encoders, scoring, the callback, the CLI and W&B."""

import csv
import math
import warnings

import numpy as np
import pytest
import soundfile
import torch
from conftest import classification_data

from lightning_tx.callbacks import TransferabilityCallback
from lightning_tx.data import AudioError, ManifestError, SpeechDataModule, load_audio, read_alignment, read_manifest
from lightning_tx.encoders import ConformerEncoder, Filterbank, HFEncoder, encoder_from_spec
from lightning_tx.functional import (
    UndefinedScore,
    class_sliced_wasserstein,
    flatten_frames,
    gbc,
    hscore,
    knn_accuracy,
    logme,
    sliced_wasserstein,
)
from lightning_tx.metrics import GBC, KNNAccuracy, LogME, SlicedWasserstein
from lightning_tx.scoring import EncoderFrames, ScoringSampler, TaskLabels

F, Y = classification_data(60, 4, 3)


def _manifest(tmp, header, rows, name="m.csv", bom=False):
    for row in rows:
        if "audio" in row and row["audio"] and not (tmp / row["audio"]).exists():
            soundfile.write(tmp / row["audio"], 0.1 * np.sin(np.arange(4000) / 7.0), 16000)
    path = tmp / name
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _rows(n=4, **extra):
    return [{"audio": f"u{i}.wav", "label": "ab"[i % 2], **extra} for i in range(n)]


def _datamodule(tmp, header, rows, **kwargs):
    dm = SpeechDataModule(manifest=_manifest(tmp, header, rows), **kwargs)
    dm.setup()
    return dm


def _truncated(tmp):
    path = tmp / "cut.wav"
    soundfile.write(path, np.zeros(16000), 16000)
    path.write_bytes(path.read_bytes()[:20000])  # header still says 16000 samples
    return load_audio(path, 16000)


def _short_utterance(tmp):
    dm = _datamodule(tmp, ["audio", "label"], _rows())
    batch = {"waveforms": torch.zeros(2, 200), "lengths": torch.tensor([200, 100]), "paths": ["a.wav", "b.wav"],
             "labels": torch.tensor([0, 1])}  # fmt: skip
    EncoderFrames(Filterbank(), TaskLabels.from_datamodule(dm))(batch)


def _cli(tmp, *args):
    from lightning_tx.cli import main

    main(["rank", "--data.manifest", str(_manifest(tmp, ["audio", "label"], _rows())),
          "--trainer.default_root_dir", str(tmp), "--trainer.accelerator", "cpu", *args])  # fmt: skip


CASES = [
    # ------------------------------------------------------------- functional
    ("logme: NaN features", lambda t: logme(F.masked_fill(F > 2, math.nan), Y), ValueError, "NaN or Inf"),
    ("logme: label out of range", lambda t: logme(F, Y, num_classes=2), ValueError, r"every id must lie in \[0, 1\]"),
    ("logme: float labels", lambda t: logme(F, Y.float()), TypeError, "integer class ids"),
    ("logme: lengths differ", lambda t: logme(F, Y[:-1]), ValueError, "60 frames but `targets` has 59"),
    ("logme: all-zero features", lambda t: logme(torch.zeros(60, 4), Y), UndefinedScore, "all zero"),
    ("logme: one class", lambda t: logme(F, torch.zeros(60, dtype=torch.long)), ValueError, "at least 2 classes"),
    ("logme: a class without frames", lambda t: logme(F, Y, num_classes=4), ValueError, r"classes \[3\]"),
    ("logme standardized: constant features", lambda t: logme(torch.ones(60, 4), Y, standardize=True),
     UndefinedScore, "constant"),
    ("hscore: frames <= width", lambda t: hscore(F[:4], Y[:4] % 2), UndefinedScore, "more frames than feature"),
    ("gbc: 2 frames per class", lambda t: gbc(F[:4], torch.tensor([0, 0, 1, 1])), UndefinedScore, "at least 3"),
    ("swd: constant clouds, normalised", lambda t: sliced_wasserstein(torch.ones(9, 4), torch.ones(9, 4),
                                                                    normalize=True), UndefinedScore, "do not vary"),
    ("swd: different widths", lambda t: sliced_wasserstein(F, F[:, :3]), ValueError, "same width"),
    ("knn: one utterance", lambda t: knn_accuracy(F, Y, torch.zeros(60)), UndefinedScore, "2 groups"),
    ("class swd: one class", lambda t: class_sliced_wasserstein(F, torch.zeros(60, dtype=torch.long)),
     UndefinedScore, "2 classes with 2 or more frames"),
    ("flatten: lengths > T", lambda t: flatten_frames(torch.zeros(2, 5, 3), torch.tensor([5, 6])), ValueError,
     r"must lie in \[0, 5\]"),
    ("bfloat16 features: scored like float32", lambda t: _close(logme(F.bfloat16(), Y),
                                                               logme(F.bfloat16().float(), Y)), None, None),
    # ------------------------------------------------------------- metrics
    ("metric: wrong width", lambda t: LogME(5, 3).update(F, Y), ValueError, "num_features=5"),
    ("metric: one class", lambda t: LogME(4, 1), ValueError, "num_classes"),
    ("metric: merge unlike metrics", lambda t: LogME(4, 3).merge_state(LogME(5, 3)), ValueError, "cannot merge"),
    ("metric: compute before update", lambda t: GBC(4, 3).compute(), ValueError, "at least 2 frames"),
    ("metric: bfloat16 module and input", lambda t: _bf16_metric(), None, None),
    ("metric: unknown domain", lambda t: SlicedWasserstein(4).update(F, domain="src"), ValueError, "`domain` must be"),
    ("metric: tiny sample", lambda t: KNNAccuracy(4, 3, max_samples=1), ValueError, "max_samples"),
    ("metric: plot()", lambda t: _plots(), None, None),
    # ------------------------------------------------------------- data
    ("manifest: missing file", lambda t: read_manifest(t / "nope.csv"), FileNotFoundError, "nope.csv"),
    ("manifest: no audio column", lambda t: _datamodule(t, ["file", "label"], [{"file": "x", "label": "a"}]),
     ManifestError, "no 'audio' column"),
    ("manifest: UTF-8 BOM", lambda t: SpeechDataModule(manifest=_manifest(t, ["audio", "label"], _rows(),
                                                                          bom=True)).setup(), None, None),
    ("manifest: 'splt' typo", lambda t: _datamodule(t, ["audio", "label", "splt"], _rows(splt="val")),
     ManifestError, "did you mean 'split'"),
    ("manifest: 'lable' typo", lambda t: _datamodule(t, ["audio", "lable", "text"],
                                                     [{"audio": "u0.wav", "lable": "a", "text": "a"}]),
     ManifestError, "did you mean 'label'"),
    ("manifest: empty audio field", lambda t: _datamodule(t, ["audio", "label"], [{"audio": "", "label": "a"}]),
     ManifestError, "empty 'audio' field"),
    ("manifest: unknown split", lambda t: _datamodule(t, ["audio", "label", "split"], _rows(split="dev")),
     ManifestError, "'split' must be one of"),
    ("manifest: val label unseen in train", lambda t: _datamodule(
        t, ["audio", "label", "split"], [*_rows(2, split="train"), {"audio": "v.wav", "label": "zz", "split": "val"}]),
     ManifestError, "does not occur in the train split"),
    ("hf dataset: ClassLabel id -1", lambda t: SpeechDataModule.from_hf_dataset(_ClassLabelRows()), ManifestError,
     "class id -1 in column 'label' is outside"),
    ("audio: unreadable file", lambda t: (t / "bad.wav").write_bytes(b"RIFF nope") and load_audio(t / "bad.wav",
                                                                                                    16000),
     AudioError, "cannot read audio file"),
    ("audio: truncated wav", _truncated, AudioError, "truncated"),
    ("alignment: bad line", lambda t: (t / "a.txt").write_text("0.0 x sil\n") and read_alignment(t / "a.txt"),
     ManifestError, "expected 'start end label'"),
    # ------------------------------------------------------------- encoders
    ("encoder: utterance shorter than a window", _short_utterance, ValueError, "a.wav has 200 samples"),
    ("encoder: unknown spec", lambda t: encoder_from_spec("resnet"), ValueError, "unknown encoder spec"),
    ("encoder: missing HF folder", lambda t: HFEncoder(str(t / "none")), OSError, "save_pretrained"),
    ("encoder: missing state dict", lambda t: ConformerEncoder(str(t / "none.pt")), FileNotFoundError,
     "does not exist"),
    ("encoder: 3-D waveforms", lambda t: Filterbank()(torch.zeros(1, 2, 400)), ValueError, r"shape \[B, S\]"),
    # ------------------------------------------------------------- scoring
    ("labels: ctc without aligner", lambda t: TaskLabels.from_datamodule(
        _datamodule(t, ["audio", "label", "text"], _rows(text="ab")), "ctc"), ValueError, "ctc_aligner"),
    ("labels: every class excluded but one", lambda t: TaskLabels.from_datamodule(
        _datamodule(t, ["audio", "label"], _rows()), exclude=["a"]), ValueError, "at least 2 classes"),
    ("sampler: limit_batches 1.5", lambda t: ScoringSampler(10, 2, limit_batches=1.5), ValueError, "limit_batches"),
    # ------------------------------------------------------------- callback
    ("callback: SWD without source", lambda t: TransferabilityCallback(["sliced_wasserstein"]), ValueError,
     "give `source=`"),
    ("callback: unknown select_layer", lambda t: TransferabilityCallback(select_layer="last"), ValueError,
     "`select_layer` must be"),
    ("callback: unknown frame labels", lambda t: TransferabilityCallback(frame_labels="phones"), ValueError,
     "`frame_labels` must be one of"),
    ("callback: unknown estimator", lambda t: TransferabilityCallback(["logmee"]), ValueError,
     "unknown estimator 'logmee'"),
    # ------------------------------------------------------------- CLI (one line, exit status 2)
    ("cli: unknown estimator", lambda t: _cli(t, "--model", "lightning_tx.ranking.RankingModule",
                                               "--model.candidates", "[{encoder: fbank}]",
                                               "--model.estimators", "[logme, nope]"), SystemExit, "2"),
    ("cli: missing HF folder", lambda t: _cli(t, "--model", "lightning_tx.ranking.RankingModule",
                                              "--model.candidates", f"[{{encoder: 'hf:{t}/none'}}]"),
     SystemExit, "2"),
]  # fmt: skip


class _ClassLabelRows(list):
    """Rows of a Hugging Face dataset whose ClassLabel column holds -1 ("no label") in row 1."""

    features = {"label": type("ClassLabel", (), {"names": ["no", "yes"]})()}

    def __init__(self):
        super().__init__({"audio": {"array": np.zeros(800), "sampling_rate": 16000}, "label": i} for i in (0, -1))


def _close(a, b):
    assert float(a) == pytest.approx(float(b), rel=1e-12)


def _bf16_metric():
    metric = LogME(4, 3).to(torch.bfloat16)
    metric.update(F.bfloat16(), Y)
    assert metric.gram.dtype == torch.float64 and math.isfinite(float(metric.compute()))


def _plots():
    metric = LogME(4, 3)
    metric.update(F, Y)
    figure, _ = metric.plot()
    assert figure is not None


@pytest.mark.parametrize(("case", "call", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, capsys, case, call, error, message):
    if error is None:  # a documented value: runs without an error
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(tmp_path)
        return
    with pytest.raises(error, match=None if error is SystemExit else message) as raised:
        call(tmp_path)
    if error is SystemExit:
        assert str(raised.value.code) == message
        printed = capsys.readouterr().err.strip().splitlines()
        assert printed[0].startswith("error: ") and len(printed) == 2, printed


def test_the_matrix_has_forty_cases():
    assert len(CASES) >= 40


def test_wandb_online_failure_falls_back_to_offline(tmp_path, monkeypatch):
    import wandb

    from lightning_tx.loggers import TxWandbLogger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    real_init = wandb.init

    def init(*args, **kwargs):
        if kwargs.get("mode") == "online":
            raise wandb.errors.CommError("network is unreachable")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", init)
    logger = TxWandbLogger(save_dir=str(tmp_path), online=True)
    with pytest.warns(UserWarning, match="logging offline instead"):
        run = logger.experiment
    run.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
