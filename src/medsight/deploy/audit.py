"""The audit trail: one JSON line per ``medsight predict`` in ``audit.jsonl``.

Each line records the UTC time, the outcome (``ok``, ``refused`` for an input or model medsight turned down,
``failed``), the medsight version, the model (folder, engine, SHA-256 of each weights file, whether it was verified
against its card), the inputs' SHA-256 (contents only), the output paths and the prediction parameters. It never holds
patient identifiers: no input file names (they may come from DICOM tags), no DICOM UIDs, no PatientName/ID.

The log is the output folder's ``audit.jsonl``, or ``--audit-log PATH``, or the ``MEDSIGHT_AUDIT_LOG`` environment
variable. Lines are appended with ``O_APPEND`` in one ``write`` and ``fsync``-ed, so concurrent predictions never
interleave partial lines and a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medsight import __version__
from medsight.core.hashing import input_checksums, sha256_file, utc_timestamp
from medsight.engine.runtime import fold_files, read_manifest
from medsight.errors import MedsightError
from medsight.report.card import verify_weights

AUDIT_ENV = "MEDSIGHT_AUDIT_LOG"
AUDIT_FILE = "audit.jsonl"


def audit_log_path(output: str | Path, explicit: str | Path | None = None) -> Path:
    """``explicit``, else ``$MEDSIGHT_AUDIT_LOG``, else ``audit.jsonl`` in the output folder (a file output's folder)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(AUDIT_ENV):
        return Path(os.environ[AUDIT_ENV])
    out = Path(output)
    folder = out.parent if out.is_file() or (not out.exists() and "".join(out.suffixes)) else out
    return folder / AUDIT_FILE


def append_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Append ``record`` as one JSON line: ``O_APPEND``, a single ``write``, then ``fsync``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to the audit log {path}")
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


@contextmanager
def audited_prediction(source: str | Path, input_path: str | Path, output: str | Path, *, folds: list[int] | None, engine: str,
                       verify: bool = False, parameters: dict[str, Any] | None = None,
                       log_path: str | Path | None = None) -> Iterator[list[Path]]:
    """Wrap one prediction: checksums (and, with ``verify``, the card check) first, then one audit line at the end.

    Yields a list for the caller to extend with the files it wrote. The line is written whatever the outcome;
    an exception is re-raised after it.

    Args:
        source: the run or export folder.
        input_path: the input file or folder (hashed before predicting).
        output: the output file or folder (where ``audit.jsonl`` goes by default).
        folds: the folds used (``None``: all).
        engine: ``torch`` or ``onnx``.
        verify: refuse weights whose SHA-256 differs from the folder's ``model_card.json``.
        parameters: further prediction options to record (no identifiers).
        log_path: the audit log (see :func:`audit_log_path`).
    """

    source = Path(source)
    record: dict[str, Any] = {
        "time": utc_timestamp(), "event": "predict", "medsight_version": __version__,
        "model": {"path": str(source.resolve()), "engine": engine, "verified": False},
        "parameters": {"folds": folds, "engine": engine, "verify": verify, **(parameters or {})},
    }
    written: list[Path] = []
    try:
        manifest = read_manifest(source)
        record["model"]["format"] = manifest["format"] if manifest else "checkpoint"
        checksums = {p: sha256_file(p) for p in fold_files(source, folds=folds).values()}
        record["model"]["weights"] = [{"file": p.relative_to(source).as_posix(), "sha256": d} for p, d in checksums.items()]
        record["inputs"] = input_checksums(input_path) if Path(input_path).exists() else None
        if verify:
            verify_weights(source, checksums)
            record["model"]["verified"] = True
        yield written
    except BaseException as exc:
        record["status"] = "refused" if isinstance(exc, MedsightError) else "failed"
        record["error"] = type(exc).__name__
        raise
    else:
        record["status"] = "ok"
    finally:
        record["outputs"] = [str(Path(w).resolve()) for w in written]
        append_record(audit_log_path(output, log_path), record)
