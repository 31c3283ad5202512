"""lightning-tx: which pre-trained speech encoder (and layer) will fine-tune best on a task."""

__version__ = "0.1.0"
