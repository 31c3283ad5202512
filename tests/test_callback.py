import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_tx.callbacks import TransferabilityCallback
from lightning_tx.data import SpeechDataModule
from lightning_tx.encoders import Filterbank
from lightning_tx.functional import logme


class KeywordClassifier(L.LightningModule):
    """A user's own module: a frozen filterbank front-end and a linear head."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.transfer_encoder = Filterbank(n_mels=24)
        self.num_classes = num_classes
        self.head = nn.Linear(24, num_classes)
        self.selected = None

    def select_layer(self, layer: int) -> None:
        self.selected = layer

    def training_step(self, batch, batch_idx):
        out = self.transfer_encoder(batch["waveforms"], batch["lengths"])
        pooled = out.hidden_states[0].clone().mean(1)
        return nn.functional.cross_entropy(self.head(pooled), batch["labels"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.head.parameters(), lr=0.01)


def _trainer(tmp_path, callback, **kwargs):
    extra = kwargs.pop("extra", [])
    settings = dict(
        max_epochs=1,
        limit_train_batches=2,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="csv"),
        callbacks=[callback, *extra],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return L.Trainer(**{**settings, **kwargs})


def test_callback_in_a_plain_trainer(tmp_path, tiny_corpus):
    dm = SpeechDataModule(manifest=tiny_corpus, batch_size=4)
    model = KeywordClassifier(dm.num_classes)
    callback = TransferabilityCallback(estimators=["logme", "hscore"], limit_batches=2, select_layer="best")
    _trainer(tmp_path, callback).fit(model, datamodule=dm)
    assert set(callback.results) == {"logme", "hscore"} and list(callback.results["logme"]) == [0]
    assert model.selected == 0 and model.training
    assert all(t.dtype != torch.float64 for t in model.state_dict().values())
    logged = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "transfer/logme/layer_0" in logged and "transfer/hscore/layer_0" in logged


class FeatureModule(L.LightningModule):
    """Any batch format: the module hands the callback its frames through transfer_features."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 6)

    def transfer_features(self, batch):
        features, labels = batch
        hidden = features.view(features.shape[0], 1, 6)  # one frame per "utterance"
        return [hidden, self.layer(hidden)], torch.ones(features.shape[0], dtype=torch.long), labels

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _feature_data(n=240):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 3
    features = torch.randn(n, 6, generator=g) + labels.unsqueeze(1).float()
    return features, labels


def test_transfer_features_protocol_matches_the_functional(tmp_path):
    features, labels = _feature_data()
    loader = DataLoader(TensorDataset(features, labels), batch_size=40)
    callback = TransferabilityCallback(estimators=["logme"], num_classes=3)
    _trainer(tmp_path, callback, limit_val_batches=0).fit(FeatureModule(), train_dataloaders=loader)
    assert set(callback.results["logme"]) == {0, 1}
    assert callback.results["logme"][0] == pytest.approx(float(logme(features, labels, num_classes=3)), rel=1e-9)


def test_resumed_run_does_not_score_again(tmp_path, monkeypatch):
    features, labels = _feature_data()
    loader = DataLoader(TensorDataset(features, labels), batch_size=40)
    first = TransferabilityCallback(estimators=["logme"], num_classes=3)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, first, extra=[checkpoint]).fit(FeatureModule(), train_dataloaders=loader)
    resumed = TransferabilityCallback(estimators=["logme"], num_classes=3)
    monkeypatch.setattr(resumed, "score", lambda *a: pytest.fail("a resumed run must not score again"))
    trainer = _trainer(tmp_path, resumed, max_epochs=2)
    trainer.fit(FeatureModule(), train_dataloaders=loader, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.results == first.results and resumed.best_layer == first.best_layer


def test_resumed_run_scores_what_changed(tmp_path):
    """Another estimator set is another callback state: the old results are not returned."""
    features, labels = _feature_data()
    loader = DataLoader(TensorDataset(features, labels), batch_size=40)
    first = TransferabilityCallback(estimators=["logme"], num_classes=3)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, first, extra=[checkpoint]).fit(FeatureModule(), train_dataloaders=loader)
    resumed = TransferabilityCallback(estimators=["gbc", "logme"], num_classes=3)
    trainer = _trainer(tmp_path, resumed, max_epochs=2)
    trainer.fit(FeatureModule(), train_dataloaders=loader, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert set(resumed.results) == {"gbc", "logme"}
    # Layer 0 is the raw input (layer 1 was trained in between).
    assert resumed.results["logme"][0] == pytest.approx(first.results["logme"][0], rel=1e-12)
    # A state saved with fewer estimators fills in only the missing ones.
    partial = TransferabilityCallback(estimators=["logme", "hscore"], num_classes=3)
    partial.load_state_dict(first.state_dict())
    assert set(partial.results) == {"logme"}


def test_two_callbacks_in_one_trainer_and_the_progress_bar_setting(tmp_path, capsys):
    features, labels = _feature_data()
    loader = DataLoader(TensorDataset(features, labels), batch_size=40)
    logme_callback = TransferabilityCallback(estimators=["logme"], num_classes=3)
    layer_callback = TransferabilityCallback(estimators=["hscore"], num_classes=3, layers=[1])
    assert logme_callback.state_key != layer_callback.state_key
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, logme_callback, extra=[layer_callback, checkpoint]).fit(
        FeatureModule(), train_dataloaders=loader
    )
    assert list(layer_callback.results["hscore"]) == [1] and set(logme_callback.results["logme"]) == {0, 1}
    assert "transferability" not in capsys.readouterr().err  # enable_progress_bar=False: no bar
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["callbacks"]
    assert {logme_callback.state_key, layer_callback.state_key} <= set(saved)


def test_callback_with_source_audio_gives_tih_swd(tmp_path, tiny_corpus):
    dm = SpeechDataModule(manifest=tiny_corpus, batch_size=4)
    callback = TransferabilityCallback(estimators=["logme", "sliced_wasserstein"], source=tiny_corpus)
    _trainer(tmp_path, callback).fit(KeywordClassifier(3), datamodule=dm)
    assert set(callback.results) == {"logme", "sliced_wasserstein"}
    assert callback.results["sliced_wasserstein"][0] >= 0


def test_stop_if_below_ends_the_run(tmp_path):
    features, labels = _feature_data()
    loader = DataLoader(TensorDataset(features, labels), batch_size=40)
    callback = TransferabilityCallback(estimators=["logme"], num_classes=3, stop_if_below=1e9)
    trainer = _trainer(tmp_path, callback)
    with pytest.warns(UserWarning, match="stopping: the best logme"):
        trainer.fit(FeatureModule(), train_dataloaders=loader)
    assert trainer.global_step == 0


def test_missing_protocol_is_a_clear_error(tmp_path):
    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(6, 6)

        training_step = FeatureModule.training_step
        configure_optimizers = FeatureModule.configure_optimizers

    features, labels = _feature_data()
    loader = DataLoader(TensorDataset(features, labels), batch_size=40)
    with pytest.raises(AttributeError, match="transfer_encoder"):
        _trainer(tmp_path, TransferabilityCallback(num_classes=3)).fit(Plain(), train_dataloaders=loader)
    with pytest.raises(ValueError, match="give `source=`"):
        TransferabilityCallback(estimators=["sliced_wasserstein"])
