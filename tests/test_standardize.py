"""RunningStandardize: the head's input z-scored with the training rows' statistics."""

import torch

from lightning_tx.finetune.module import RunningStandardize


def _train_epoch(norm: RunningStandardize, rows: torch.Tensor, batch_size: int) -> None:
    norm.train()
    for start in range(0, rows.shape[0], batch_size):
        norm(rows[start : start + batch_size])


def test_after_an_epoch_it_uses_the_training_rows_statistics():
    rows = torch.randn(37, 5, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1e3]) + 7.0
    norm = RunningStandardize(5).double()
    _train_epoch(norm, rows, batch_size=8)  # the last batch holds 5 rows
    _train_epoch(norm, rows, batch_size=1)  # batches of one row work, and a repeated epoch changes nothing
    norm.eval()
    probe = torch.randn(4, 5, dtype=torch.float64)
    mean = rows.mean(0)
    variance = ((rows - mean) ** 2).mean(0)  # the population variance, from its definition
    expected = (probe - mean) / torch.sqrt(variance + norm.eps)
    torch.testing.assert_close(norm(probe), expected, rtol=1e-10, atol=1e-10)


def test_evaluation_does_not_change_the_statistics_and_is_scale_free():
    rows = torch.randn(50, 3)
    plain, scaled = RunningStandardize(3), RunningStandardize(3)
    _train_epoch(plain, rows, 16)
    _train_epoch(scaled, rows * 1000.0 - 5.0, 16)
    plain.eval(), scaled.eval()
    before = plain.sum.clone()
    out = plain(rows)
    assert torch.equal(plain.sum, before)
    torch.testing.assert_close(scaled(rows * 1000.0 - 5.0), out, rtol=1e-4, atol=1e-4)


def test_before_any_training_it_is_the_identity():
    x = torch.randn(2, 3)
    assert torch.equal(RunningStandardize(3).eval()(x), x)
