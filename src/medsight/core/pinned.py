"""Files read once and served from memory: what was hashed is what is loaded.

A prediction that checks its model (``predict --verify``, a pinned digest) hashes the weights, ``plans.json`` and
``export.json``. Hashing a file and then opening it again to load it leaves a window in which the file can be swapped
(a time-of-check/time-of-use race). So the bytes are read once (:func:`read_files`), hashed, and *pinned* for the
duration of the prediction (:func:`pinned`); the loaders (``engine.checkpoint.load_checkpoint``,
``engine.run.read_plan_json``, ``engine.runtime.read_manifest``, the ONNX and TorchScript loaders) read through
:func:`read_bytes`, which returns the pinned bytes of a file and reads the disk only for files nobody pinned.

The pins live in a :class:`contextvars.ContextVar`: they are seen by the code running inside the ``with`` block
(also through generators and ``asyncio`` tasks started there), not by other threads or by concurrent requests of a
server, which pin their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType

_PINNED: ContextVar[Mapping[Path, bytes]] = ContextVar("medsight_pinned_files", default=MappingProxyType({}))


def _key(path: str | Path) -> Path:
    return Path(path).resolve()


def read_files(paths: Iterable[str | Path]) -> dict[Path, bytes]:
    """Each file's bytes, read once (already pinned files give their pinned bytes)."""
    return {Path(p): read_bytes(p) for p in paths}


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (the same digest :func:`medsight.core.hashing.sha256_file` gives for a file)."""
    return hashlib.sha256(data).hexdigest()


@contextmanager
def pinned(files: Mapping[str | Path, bytes]) -> Iterator[None]:
    """Within the block, :func:`read_bytes` of one of ``files`` returns the given bytes instead of reading the disk."""
    token = _PINNED.set(MappingProxyType({**_PINNED.get(), **{_key(p): b for p, b in files.items()}}))
    try:
        yield
    finally:
        _PINNED.reset(token)


def read_bytes(path: str | Path) -> bytes:
    """The pinned bytes of ``path`` when a :func:`pinned` block holds it, else the file's bytes from the disk."""
    current = _PINNED.get()
    if current:
        data = current.get(_key(path))
        if data is not None:
            return data
    return Path(path).read_bytes()


def read_text(path: str | Path) -> str:
    """:func:`read_bytes` decoded as UTF-8."""
    return read_bytes(path).decode("utf-8")


def is_pinned(path: str | Path) -> bool:
    """Whether ``path`` is served from memory in the current context."""
    return _key(path) in _PINNED.get()


__all__ = ["is_pinned", "pinned", "read_bytes", "read_files", "read_text", "sha256_bytes"]
