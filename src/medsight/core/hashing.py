"""SHA-256 checksums of weights files and prediction inputs (contents only: names are never recorded)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def input_checksums(path: str | Path) -> dict[str, Any]:
    """Checksums of a prediction input: one file, or every file below a folder (a DICOM series, a folder of images).

    Returns:
        ``{"sha256": combined, "files": n, "bytes": total, "per_file": [sha256, ...]}``; files are visited in sorted
        path order, and ``combined`` is the SHA-256 of their hex digests joined by newlines, so it changes when
        any file's content does. File names are not returned: they may carry patient identifiers.
    """
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    hashes = [sha256_file(f) for f in files]
    return {"sha256": hashlib.sha256("\n".join(hashes).encode()).hexdigest(), "files": len(files),
            "bytes": sum(f.stat().st_size for f in files), "per_file": hashes}


def utc_timestamp() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ`` (audit lines, model cards, export manifests)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
