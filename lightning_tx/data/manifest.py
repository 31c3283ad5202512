"""Utterance records from a manifest (CSV or JSONL) or a folder-per-class layout.

Manifest columns: ``audio`` (path, relative to the manifest's folder, or absolute) and
``label`` (utterance class) and/or ``text`` (transcript); optional ``alignment`` (a file
of ``start end label`` lines, seconds), ``speaker`` and ``split`` (``train``, ``val`` or
``test``; default ``train``). Other columns are kept in ``extra``.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, row and field."""


@dataclass
class UtteranceRecord:
    """One utterance: where its audio is and what is known about it."""

    audio: str
    label: str | None = None
    text: str | None = None
    alignment: str | None = None
    speaker: str | None = None
    split: str = "train"
    extra: dict[str, str] = field(default_factory=dict)


def read_alignment(path: str | os.PathLike) -> list[tuple[float, float, str]]:
    """``start end label`` lines (seconds) -> ``[(start, end, label)]``, validated."""
    segments = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ManifestError(f"cannot read alignment file {os.fspath(path)!r}: {error}") from error
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            start, end = float(parts[0]), float(parts[1])
            label = " ".join(parts[2:])
        except (ValueError, IndexError):
            raise ManifestError(f"{os.fspath(path)}:{number}: expected 'start end label', got {line!r}") from None
        if not label or end < start or start < 0:
            raise ManifestError(f"{os.fspath(path)}:{number}: bad segment {line!r}")
        segments.append((start, end, label))
    return segments


def _rows(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's BOM is not a column
            return [dict(row) for row in csv.DictReader(handle)]
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise ManifestError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                    if not isinstance(row, dict):
                        raise ManifestError(f"{path}:{number}: each line must be a JSON object")
                    rows.append({k: ("" if v is None else str(v)) for k, v in row.items()})
        return rows
    raise ManifestError(f"manifest {path} must be .csv or .jsonl, got {path.suffix or 'no suffix'!r}")


KNOWN_COLUMNS = ("audio", "label", "text", "alignment", "speaker", "split")


def _check_column_names(path: Path, columns: set[str]) -> None:
    """A column that looks like a misspelt known one (``splt``, ``lable``) is an error: read
    as an extra column it would silently change what is scored."""
    for column in sorted(columns - set(KNOWN_COLUMNS)):
        close = difflib.get_close_matches(column.strip().lower(), KNOWN_COLUMNS, n=1, cutoff=0.75)
        if close and close[0] not in columns:
            raise ManifestError(
                f"manifest {path} has a column {column!r} but no {close[0]!r}: did you mean {close[0]!r}? "
                f"(known columns: {', '.join(KNOWN_COLUMNS)})"
            )


def read_manifest(path: str | os.PathLike, *, require_targets: bool = True) -> list[UtteranceRecord]:
    """Read a CSV or JSONL manifest into records with absolute paths.

    ``require_targets=False`` accepts manifests without ``label``/``text`` (e.g. unlabelled
    source-domain audio).

    Raises:
        FileNotFoundError: the manifest does not exist.
        ManifestError: a missing column or value, an unknown split (file, row and field named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {os.fspath(path)!r} does not exist")
    rows = _rows(path)
    if not rows:
        raise ManifestError(f"manifest {path} has no rows")
    columns = set(rows[0])
    _check_column_names(path, columns)
    if "audio" not in columns:
        raise ManifestError(f"manifest {path} has no 'audio' column (columns: {sorted(columns)})")
    if require_targets and not {"label", "text"} & columns:
        raise ManifestError(f"manifest {path} needs a 'label' or a 'text' column (columns: {sorted(columns)})")
    base = path.parent
    records = []
    for number, row in enumerate(rows, 2 if path.suffix.lower() == ".csv" else 1):
        where = f"{path}, row {number}"
        audio = (row.get("audio") or "").strip()
        if not audio:
            raise ManifestError(f"{where}: empty 'audio' field")
        label = (row.get("label") or "").strip() or None
        text = (row.get("text") or "").strip() or None
        if "label" in columns and label is None and text is None:
            raise ManifestError(f"{where}: empty 'label' field")
        if require_targets and "label" not in columns and text is None:
            raise ManifestError(f"{where}: empty 'text' field")
        split = (row.get("split") or "train").strip()
        if split not in SPLITS:
            raise ManifestError(f"{where}: 'split' must be one of {SPLITS}, got {split!r}")
        alignment = (row.get("alignment") or "").strip() or None
        known = set(KNOWN_COLUMNS)
        records.append(
            UtteranceRecord(
                audio=os.fspath(base / audio),
                label=label,
                text=text,
                alignment=os.fspath(base / alignment) if alignment else None,
                speaker=(row.get("speaker") or "").strip() or None,
                split=split,
                extra={k: v for k, v in row.items() if k not in known and k is not None},
            )
        )
    return records


def records_from_folders(root: str | os.PathLike) -> list[UtteranceRecord]:
    """A folder per class: ``root/<label>/*.wav``; or per split first:
    ``root/<train|val|test>/<label>/*.wav``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {os.fspath(root)!r} does not exist")
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    layout = [(d.name, d) for d in split_dirs] if split_dirs else [("train", root)]
    records = []
    for split, split_dir in layout:
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for file in sorted(class_dir.rglob("*")):
                if file.suffix.lower() in AUDIO_SUFFIXES:
                    records.append(UtteranceRecord(audio=os.fspath(file), label=class_dir.name, split=split))
    if not records:
        raise ManifestError(
            f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found in class folders under {os.fspath(root)!r}"
        )
    return records
