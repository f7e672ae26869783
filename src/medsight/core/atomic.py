"""Atomic file output: write to a temporary name beside the target, then rename.

An interrupted write never leaves a truncated file under the final name, and a failed write (disk full)
leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from medsight.errors import MedsightError


@contextlib.contextmanager
def atomic_path(target: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``target``.

    The temporary name keeps the target's full suffix (``.nii.gz``) so that writers which choose the
    format by extension behave the same.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    full_suffix = suffix if suffix is not None else "".join(target.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}.", suffix=full_suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync_folder(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if disk_full(exc):
            raise MedsightError(
                f"Expected free disk space to write {target}, got 'no space left on device'; "
                "free some space and run again (any previous version of the file is unchanged)"
            ) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, ENOSPC: writers such as pydicom's re-raise the ``OSError`` of a full
    disk as a new one without an errno, keeping the original as ``__cause__``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _fsync(path: Path) -> None:
    """Flush a written file to the disk before it is renamed over the target: after a power loss the target is then
    either the old file or the whole new one, never an empty or partial file."""
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; folders cannot be opened for fsync on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(target: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | Path, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``target``."""
    return write_bytes(target, text.encode("utf-8"))


def write_with(target: str | Path, writer: Callable[[Path], object]) -> Path:
    """Atomically create ``target`` by calling ``writer(tmp_path)``."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed process left in ``folder`` (``.<name>.<random><suffix>``, made by
    :func:`atomic_path`); the files under their final names are untouched. Call it only when no other process is
    writing there (e.g. when a run resumes). Returns what was removed."""
    removed = []
    for p in Path(folder).glob(".*.*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
