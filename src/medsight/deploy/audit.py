"""The audit trail: one JSON line per ``medsight predict`` in ``audit.jsonl``.

Each line records the UTC time, the outcome (``ok``, ``refused`` for an input or model medsight turned down,
``failed``), the medsight version, the model (folder, engine, SHA-256 of each weights file, the model digest, whether
it matched a digest the user pinned: ``verified``, and whether it matched the card beside it: ``consistent_with_card``),
the inputs' SHA-256 (contents only), the output paths and the prediction parameters. It never holds
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
from medsight.core.hashing import input_checksums, utc_timestamp
from medsight.engine.runtime import read_manifest
from medsight.errors import MedsightError
from medsight.report.digest import DIGEST_ENV, check_consistent_with_card, check_pinned_digest, read_model

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
                       verify: bool = False, expect_sha256: str | None = None, parameters: dict[str, Any] | None = None,
                       log_path: str | Path | None = None) -> Iterator[list[Path]]:
    """Wrap one prediction: read and hash the model's files, check them, serve those bytes to the loaders, and write
    one audit line at the end.

    The weights, ``plans.json``, calibration and ``export.json`` are read once (:func:`medsight.report.digest.read_model`)
    and pinned (:mod:`medsight.core.pinned`) while the prediction runs: the networks are loaded from the bytes that were
    hashed, never from a second read of a file that may have been swapped in between.

    Yields a list for the caller to extend with the files it wrote. The line is written whatever the outcome;
    an exception is re-raised after it.

    Args:
        source: the run or export folder.
        input_path: the input file or folder (hashed before predicting).
        output: the output file or folder (where ``audit.jsonl`` goes by default).
        folds: the folds used (``None``: all).
        engine: ``torch`` or ``onnx``.
        verify: consistency check: refuse files whose SHA-256 differs from the folder's ``model_card.json`` (not an
            integrity check: the card can be rewritten with the files).
        expect_sha256: the model digest the user pinned (default ``$MEDSIGHT_MODEL_SHA256``); when given, the model
            is refused unless its digest matches: the integrity check.
        parameters: further prediction options to record (no identifiers).
        log_path: the audit log (see :func:`audit_log_path`).
    """

    source = Path(source)
    record: dict[str, Any] = {
        "time": utc_timestamp(), "event": "predict", "medsight_version": __version__,
        "model": {"path": str(source.resolve()), "engine": engine, "verified": False, "consistent_with_card": None},
        "parameters": {"folds": folds, "engine": engine, "verify": verify, **(parameters or {})},
    }
    pin, pin_from = expect_sha256, "--expect-sha256"
    if pin is None and os.environ.get(DIGEST_ENV):
        pin, pin_from = os.environ[DIGEST_ENV], f"${DIGEST_ENV}"
    record["parameters"]["digest_pinned"] = pin is not None
    written: list[Path] = []
    try:
        manifest = read_manifest(source)
        record["model"]["format"] = manifest["format"] if manifest else "checkpoint"
        model = read_model(source, folds=folds)
        digests = model.sha256
        record["model"]["weights"] = [{"file": name, "sha256": digests[name]} for name in model.weights]
        record["model"]["digest"] = model.digest
        record["inputs"] = input_checksums(input_path) if Path(input_path).exists() else None
        if pin is not None:
            check_pinned_digest(model, pin, pin_from)
            record["model"]["verified"] = True
        if verify:
            check_consistent_with_card(model)
            record["model"]["consistent_with_card"] = True
        with model.pinned():
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
