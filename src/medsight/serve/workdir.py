"""The server's work folder: private, locked while a server uses it, and cleaned up after a killed server.

A running server holds an exclusive ``flock`` on ``WORK/.lock`` for its whole life. The lock dies with the process,
however it ends (SIGKILL included), so a folder whose lock can be taken belongs to no running server:

* the default, temporary work folders (``$TMPDIR/medsight-serve-*``) of this user whose lock is free are removed
  when the next server starts (a killed server cannot remove its own); folders of servers older than this scheme
  (no ``.lock``) are removed once they are older than the job lifetime;
* a ``--work-dir`` that another running server holds is refused with one line (two servers would share one job
  database and delete each other's files).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from medsight.errors import user_error

log = logging.getLogger(__name__)

PREFIX = "medsight-serve-"
LOCK = ".lock"


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path`` (created 0600), or ``None`` when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def clean_stale_folders(parent: Path | None = None, *, legacy_age_s: float = 24 * 3600.0) -> list[Path]:
    """Remove this user's temporary work folders that no running server holds; returns what was removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for folder in candidates:
        try:
            st = folder.lstat()
        except OSError:
            continue
        if not folder.is_dir() or folder.is_symlink() or st.st_uid != os.getuid():
            continue
        lock = folder / LOCK
        if lock.exists():
            fd = _try_lock(lock)
            if fd is None:
                continue  # a running server's folder
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                os.close(fd)
        elif time.time() - st.st_mtime > legacy_age_s:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            continue
        removed.append(folder)
    if removed:
        log.info("removed %d work folder(s) left by stopped servers", len(removed))
    return removed


@dataclass
class WorkFolder:
    """A locked work folder; :meth:`close` releases it (and removes it when it was temporary)."""

    path: Path
    temporary: bool
    _fd: int | None = field(default=None, repr=False)

    @classmethod
    def open(cls, work_dir: Path | None, *, legacy_age_s: float = 24 * 3600.0) -> WorkFolder:
        """Lock ``work_dir`` (made 0700 when new), or a fresh private temporary folder when ``None``."""
        clean_stale_folders(legacy_age_s=legacy_age_s)
        if work_dir is None:
            path = Path(tempfile.mkdtemp(prefix=PREFIX)).resolve()  # mkdtemp makes it 0700
            fd = _try_lock(path / LOCK)
            return cls(path=path, temporary=True, _fd=fd)
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = work_dir.resolve()
        fd = _try_lock(path / LOCK)
        if fd is None:
            raise user_error("a work folder no running server uses", "one locked by another 'medsight serve'", path,
                             "stop that server, or give another --work-dir")
        return cls(path=path, temporary=False, _fd=fd)

    def close(self) -> None:
        """Release the lock; a temporary folder is removed first."""
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["LOCK", "PREFIX", "WorkFolder", "clean_stale_folders"]
