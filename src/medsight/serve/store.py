"""The job database: one SQLite file (``WORK/jobs.sqlite3``, write-ahead log, mode 0600) that outlives the process.

Each job is one row: its id, status, creation and finish times, and the whole record as JSON (paths relative to the
work folder, so a work folder can be moved). Every change of a job's state is committed at once with
``synchronous=FULL``, so a server killed at any moment (SIGKILL included) finds on restart every job it had
accepted, in the last state it reached.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

DB_NAME = "jobs.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    record TEXT NOT NULL
)
"""


class JobStore:
    """Job records in SQLite; safe to use from the API threads and the worker at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # created private before SQLite opens it
        os.close(fd)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)

    def put(self, record: dict[str, Any]) -> None:
        """Insert or replace one job's record (committed before returning)."""
        row = (record["id"], record["status"], float(record["created"]), record.get("finished"),
               json.dumps(record, sort_keys=True))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO jobs (id, status, created, finished, record) VALUES (?, ?, ?, ?, ?)",
                             row)

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM jobs ORDER BY created").fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["DB_NAME", "JobStore"]
