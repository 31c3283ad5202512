"""Lightning callbacks."""

from lightning_tx.callbacks.transferability import TransferabilityCallback

__all__ = ["TransferabilityCallback"]
