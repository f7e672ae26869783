"""The node's job store: one SQLite database (WAL journal) that survives a kill of the node.

One job per received series (keyed by SeriesInstanceUID). Its states:

* ``received``: instances are arriving (each stored on disk, fsynced and renamed, before it was acknowledged);
* ``queued``: the series was quiet for ``quiet_seconds`` and is complete; waiting for the worker;
* ``running``: the worker is predicting it (a node killed here re-queues it on restart: nothing was sent yet);
* ``sending``: the results are written and recorded by SOP Instance UID; the worker sends them, retrying with
  exponential back-off while the PACS is unreachable (the results stay on disk until sent);
* ``sent``: every result reached the PACS; ``failed``: it never will, and ``reason`` says why.

Results are marked sent one SOP Instance UID at a time, right after the PACS confirmed it, so a restart resends only
what was not confirmed (and the worker asks the PACS first whether it holds it already): nothing is sent twice.
The ``events`` table is the node's audit trail: UIDs, counts and states, never patient names or IDs.

The web server lists what the node did through :meth:`JobStore.studies` (and :meth:`JobStore.jobs`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATES = ("received", "queued", "running", "sending", "sent", "failed")
#: the state a study shows, from the states of its series: the first of this list that one of them has
STUDY_STATE_ORDER = ("failed", "running", "sending", "queued", "received", "sent")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    calling_ae TEXT NOT NULL DEFAULT '',
    folder TEXT NOT NULL,
    instances INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    rule TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    sent_at REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    series_uid TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS results_series ON results(series_uid);
"""


class JobStore:
    """The jobs, instances, results and events of one node, in ``path`` (created with its folder)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _event(self, db: sqlite3.Connection, series_uid: str, event: str, detail: str = "") -> None:
        db.execute("INSERT INTO events(at, series_uid, event, detail) VALUES (?, ?, ?, ?)",
                   (time.time(), series_uid, event, detail))

    # ------------------------------------------------------------------------------------------ ingest
    def record_instance(self, *, series_uid: str, study_uid: str, sop_uid: str, path: str | Path, folder: str | Path,
                        modality: str = "", body_part: str = "", description: str = "", calling_ae: str = "",
                        now: float | None = None) -> bool:
        """Record one stored instance; returns False when this SOP Instance UID was already received (a resend).

        A new instance of a ``queued`` series sends it back to ``received`` (its quiet period starts again); one of a
        series that had finished (sent or failed) opens it again as ``received``.
        """
        now = time.time() if now is None else now
        with self._tx() as db:
            if db.execute("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone():
                return False
            db.execute("INSERT INTO instances(sop_uid, series_uid, path, received_at) VALUES (?, ?, ?, ?)",
                       (sop_uid, series_uid, str(path), now))
            row = db.execute("SELECT state FROM jobs WHERE series_uid = ?", (series_uid,)).fetchone()
            if row is None:
                db.execute("INSERT INTO jobs(series_uid, study_uid, modality, body_part, description, calling_ae, "
                           "folder, instances, state, first_at, last_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, 1, 'received', ?, ?, ?)",
                           (series_uid, study_uid, modality, body_part, description, calling_ae, str(folder), now,
                            now, now))
                self._event(db, series_uid, "received", f"study {study_uid}")
            else:
                if row["state"] == "queued":  # not complete after all: wait for the quiet period again
                    db.execute("UPDATE jobs SET state = 'received', reason = '' WHERE series_uid = ?", (series_uid,))
                reopen = row["state"] in ("sent", "failed")
                db.execute("UPDATE jobs SET instances = instances + 1, last_at = ?, updated_at = ?"
                           + (", state = 'received', reason = '', first_at = ?" if reopen else "")
                           + " WHERE series_uid = ?", (now, now, *((now,) if reopen else ()), series_uid))
                if reopen:
                    self._event(db, series_uid, "reopened", f"new instance after {row['state']}")
            return True

    def record_refused(self, *, series_uid: str, study_uid: str, folder: str | Path, reason: str,
                       calling_ae: str = "", modality: str = "") -> None:
        """Record a series whose instance was refused (not an image, truncated...) as ``failed`` with ``reason``."""
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO jobs(series_uid, study_uid, modality, calling_ae, folder, state, reason, first_at, "
                       "last_at, updated_at) VALUES (?, ?, ?, ?, ?, 'failed', ?, ?, ?, ?) ON CONFLICT(series_uid) DO "
                       "UPDATE SET state = 'failed', reason = excluded.reason, updated_at = excluded.updated_at",
                       (series_uid, study_uid, modality, calling_ae, str(folder), reason, now, now, now))
            self._event(db, series_uid, "failed", reason)

    # ------------------------------------------------------------------------------------------ states
    def set_state(self, series_uid: str, state: str, reason: str = "", *, rule: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ?, reason = ?, updated_at = ?, rule = COALESCE(?, rule), "
                       "finished_at = CASE WHEN ? IN ('sent', 'failed') THEN ? ELSE finished_at END "
                       "WHERE series_uid = ?", (state, reason, now, rule, state, now, series_uid))
            self._event(db, series_uid, state, reason)

    def quiet_series(self, quiet_seconds: float, now: float | None = None) -> list[dict[str, Any]]:
        """The ``received`` jobs without a new instance for ``quiet_seconds``."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE state = 'received' AND last_at <= ? ORDER BY first_at",
                                    (now - quiet_seconds,)).fetchall()
        return [dict(r) for r in rows]

    def note_waiting(self, series_uid: str, reason: str) -> None:
        """Keep a quiet but incomplete series ``received``, saying why (logged once per change of reason)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET reason = ?, updated_at = ? WHERE series_uid = ?",
                       (reason, time.time(), series_uid))

    def claim_next(self) -> dict[str, Any] | None:
        """Move the ``queued`` job received first to ``running`` and return it (``None`` when there is none)."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY first_at LIMIT 1").fetchone()
            if row is None:
                return None
            now = time.time()
            db.execute("UPDATE jobs SET state = 'running', reason = '', started_at = ?, updated_at = ? "
                       "WHERE series_uid = ?", (now, now, row["series_uid"]))
            self._event(db, row["series_uid"], "running")
            return {**dict(row), "state": "running"}

    def recover(self) -> list[str]:
        """After a restart: jobs left ``running`` go back to ``queued`` (nothing of theirs was sent); returns them."""
        with self._tx() as db:
            rows = [r["series_uid"] for r in db.execute("SELECT series_uid FROM jobs WHERE state = 'running'")]
            for uid in rows:
                db.execute("DELETE FROM results WHERE series_uid = ? AND sent_at IS NULL", (uid,))
                db.execute("UPDATE jobs SET state = 'queued', reason = 'resumed after a restart', updated_at = ? "
                           "WHERE series_uid = ?", (time.time(), uid))
                self._event(db, uid, "queued", "resumed after a restart")
            return rows

    # ------------------------------------------------------------------------------------------ results
    def add_results(self, series_uid: str, results: Sequence[tuple[str, str, str | Path]]) -> None:
        """Record the written results ``[(sop_uid, kind, path)]`` and move the job to ``sending``, in one step."""
        now = time.time()
        with self._tx() as db:
            for sop_uid, kind, path in results:
                db.execute("INSERT OR IGNORE INTO results(sop_uid, series_uid, kind, path) VALUES (?, ?, ?, ?)",
                           (sop_uid, series_uid, kind, str(path)))
            db.execute("UPDATE jobs SET state = 'sending', reason = '', attempts = 0, next_at = ?, updated_at = ? "
                       "WHERE series_uid = ?", (now, now, series_uid))
            counts = {k: sum(1 for _, kk, _ in results if kk == k) for k in sorted({k for _, k, _ in results})}
            self._event(db, series_uid, "sending", json.dumps(counts))

    def due_to_send(self, now: float | None = None) -> list[dict[str, Any]]:
        """``sending`` jobs whose next attempt is due."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE state = 'sending' AND next_at <= ? ORDER BY next_at",
                                    (now,)).fetchall()
        return [dict(r) for r in rows]

    def unsent(self, series_uid: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM results WHERE series_uid = ? AND sent_at IS NULL ORDER BY path",
                                    (series_uid,)).fetchall()
        return [dict(r) for r in rows]

    def results(self, series_uid: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM results WHERE series_uid = ? ORDER BY kind, path",
                                    (series_uid,)).fetchall()
        return [dict(r) for r in rows]

    def mark_sent(self, sop_uids: Sequence[str]) -> None:
        with self._tx() as db:
            now = time.time()
            for uid in sop_uids:
                db.execute("UPDATE results SET sent_at = ? WHERE sop_uid = ? AND sent_at IS NULL", (now, uid))

    def finish_sending(self, series_uid: str) -> bool:
        """Mark the job ``sent`` when none of its results is left unsent; returns whether it did."""
        with self._tx() as db:
            left = db.execute("SELECT COUNT(*) FROM results WHERE series_uid = ? AND sent_at IS NULL",
                              (series_uid,)).fetchone()[0]
            if left:
                return False
            sent = db.execute("SELECT COUNT(*) FROM results WHERE series_uid = ?", (series_uid,)).fetchone()[0]
            now = time.time()
            db.execute("UPDATE jobs SET state = 'sent', reason = '', finished_at = ?, updated_at = ? "
                       "WHERE series_uid = ?", (now, now, series_uid))
            self._event(db, series_uid, "sent", f"{sent} instances")
            return True

    def retry_later(self, series_uid: str, reason: str, *, base: float, cap: float) -> float:
        """Count a failed send and schedule the next one after ``min(cap, base * 2**attempts)`` seconds; returns
        that delay. The job stays ``sending`` (its results are kept) with ``reason``."""
        with self._tx() as db:
            row = db.execute("SELECT attempts FROM jobs WHERE series_uid = ?", (series_uid,)).fetchone()
            attempts = int(row["attempts"]) + 1 if row else 1
            delay = min(cap, base * 2 ** (attempts - 1))
            now = time.time()
            db.execute("UPDATE jobs SET attempts = ?, next_at = ?, reason = ?, updated_at = ? WHERE series_uid = ?",
                       (attempts, now + delay, f"send attempt {attempts} failed ({reason}); retrying", now,
                        series_uid))
            self._event(db, series_uid, "send_failed", f"attempt {attempts}: {reason}")
            return delay

    # ------------------------------------------------------------------------------------------ listing
    def job(self, series_uid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE series_uid = ?", (series_uid,)).fetchone()
        return dict(row) if row else None

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every job (one per series) as a dict of the ``jobs`` columns plus ``results`` and ``sent`` counts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT j.*, (SELECT COUNT(*) FROM results r WHERE r.series_uid = j.series_uid) AS results, "
                "(SELECT COUNT(*) FROM results r WHERE r.series_uid = j.series_uid AND r.sent_at IS NOT NULL) AS sent "
                "FROM jobs j" + (" WHERE j.state = ?" if state else "") + " ORDER BY j.first_at",
                (state,) if state else ()).fetchall()
        return [dict(r) for r in rows]

    def studies(self) -> list[dict[str, Any]]:
        """The studies the node received, newest first, for the web viewer and the REST API.

        Each: ``{"study_uid", "state", "series": [job dicts as :meth:`jobs` gives], "instances", "results",
        "sent", "first_at", "updated_at"}``; ``state`` is the first of :data:`STUDY_STATE_ORDER` that one of its
        series has (a study shows ``failed`` if any series failed, ``sent`` only when all were sent). Times are
        seconds since the epoch (UTC). No patient names or IDs are stored, so none are returned.
        """
        by_study: dict[str, list[dict[str, Any]]] = {}
        for job in self.jobs():
            by_study.setdefault(job["study_uid"], []).append(job)
        out = []
        for study_uid, series in by_study.items():
            states = {s["state"] for s in series}
            out.append({
                "study_uid": study_uid,
                "state": next(s for s in STUDY_STATE_ORDER if s in states),
                "series": series,
                "instances": sum(s["instances"] for s in series),
                "results": sum(s["results"] for s in series),
                "sent": sum(s["sent"] for s in series),
                "first_at": min(s["first_at"] for s in series),
                "updated_at": max(s["updated_at"] for s in series),
            })
        return sorted(out, key=lambda s: s["first_at"], reverse=True)

    def events(self, series_uid: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM events" + (" WHERE series_uid = ?" if series_uid else "")
                                    + " ORDER BY id", (series_uid,) if series_uid else ()).fetchall()
        return [dict(r) for r in rows]


def job_lines(jobs: Sequence[dict[str, Any]]) -> list[str]:
    """One tab-separated line per job for ``medsight pacs status``: state, series UID, study UID, modality,
    instances received, results sent/written, and the reason."""
    lines = ["state\tseries_uid\tstudy_uid\tmodality\tinstances\tsent/results\treason"]
    for j in jobs:
        lines.append(f"{j['state']}\t{j['series_uid']}\t{j['study_uid']}\t{j['modality'] or '-'}\t{j['instances']}"
                     f"\t{j.get('sent', 0)}/{j.get('results', 0)}\t{j['reason']}")
    return lines


__all__ = ["STATES", "STUDY_STATE_ORDER", "JobStore", "job_lines"]
