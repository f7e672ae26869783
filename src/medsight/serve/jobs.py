"""Prediction jobs: queued by the API, run one at a time by a single worker thread (one model in memory at once),
kept in the job database (:mod:`medsight.serve.store`) so that a restarted server still knows them.

A job's folder is ``WORK/jobs/<id>/`` with ``input/`` (the upload, stored as ``<id><suffix>``, the unpacked DICOM
series ``<id>/``, or a link named so to a file under a ``--root``), ``reference/`` and ``output/``. The case id and
every output and download name come from the job id, never from a client's file name.

* **Admission**: :meth:`JobManager.admit` is asked before a job request's body is read; queued and running jobs
  plus uploads on their way count against ``max_pending`` (429 with ``Retry-After`` beyond), and a server that is
  stopping or whose work folder is nearly full answers 503.
* **Restart**: finished jobs are listed again; queued ones are queued again (or failed with the reason when their
  run is no longer served or their input is gone); a job that was running when the server died is failed as
  interrupted (it may be what killed the server).
* **Expiry**: a finished job and its files are deleted ``ttl_s`` after it finished (checked at start and every
  minute); job folders the database does not know (a server killed while accepting an upload) are removed at start.
* **Errors**: a failed job shows :func:`~medsight.serve.security.public_message` (no paths, an error id); the full
  message is logged with that id. ``WORK/audit.jsonl`` gets one line per finished job: ids, SHA-256 digests and
  counts, never file names.
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.core.hashing import input_checksums, sha256_file, utc_timestamp
from medsight.deploy.audit import append_record
from medsight.serve.inference import JobResult, run_job
from medsight.serve.security import api_error, new_error_id, public_message
from medsight.serve.store import DB_NAME, JobStore

log = logging.getLogger(__name__)

AUDIT_NAME = "audit.jsonl"
#: A new job needs at least this much free disk in the work folder (else 503).
MIN_FREE_DISK = 256 * 1024 * 1024


@dataclass
class Job:
    """One prediction request and what became of it (``status``: queued, running, done or failed)."""

    id: str
    run: str
    run_path: Path
    folder: Path
    input_path: Path
    input_kind: str
    input_bytes: int
    tta: bool = False
    explain: bool = False
    reference_path: Path | None = None
    status: str = "queued"
    message: str = ""
    error_id: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: JobResult | None = None

    def as_json(self) -> dict[str, Any]:
        """What the API shows: status, timings, output roles and viewer volumes (no server paths, no file names)."""
        res = self.result
        return {
            "id": self.id, "run": self.run, "status": self.status, "message": self.message, "error_id": self.error_id,
            "input": {"kind": self.input_kind, "bytes": self.input_bytes, "has_reference": self.reference_path is not None},
            "options": {"tta": self.tta, "explain": self.explain},
            "created": self.created, "started": self.started, "finished": self.finished,
            "seconds": round(self.finished - self.started, 3) if self.finished and self.started else None,
            "task": res.task if res else None,
            "case_id": self.id,
            "outputs": sorted(res.outputs) if res else [],
            "classification": res.classification if res else None,
            "warnings": res.warnings if res else [],
            "volumes": self.volume_names(),
        }

    def volume_names(self) -> list[str]:
        """Volumes the viewer can load for this job."""
        names = ["image"]
        if self.reference_path is not None:
            names.append("reference")
        if self.result is not None:
            outs = self.result.outputs
            names += [n for n in ("labels", "probabilities") if n in outs]
            if "heatmap" in outs:
                names += ["heatmap", "heatmap_image"]
        return names

    # ------------------------------------------------------------------------------------------ storage
    def to_record(self, work: Path) -> dict[str, Any]:
        """The job as JSON for the database (paths relative to ``work``)."""
        def rel(p: Path | None) -> str | None:
            return None if p is None else (p.relative_to(work).as_posix() if p.is_relative_to(work) else str(p))

        res = self.result
        return {
            "id": self.id, "run": self.run, "folder": rel(self.folder), "input_path": rel(self.input_path),
            "input_kind": self.input_kind, "input_bytes": self.input_bytes, "tta": self.tta, "explain": self.explain,
            "reference_path": rel(self.reference_path), "status": self.status, "message": self.message,
            "error_id": self.error_id, "created": self.created, "started": self.started, "finished": self.finished,
            "result": None if res is None else {
                "task": res.task, "case_id": res.case_id, "outputs": {k: rel(v) for k, v in res.outputs.items()},
                "classification": res.classification, "warnings": res.warnings},
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any], work: Path, run_path: Path) -> Job:
        def path(p: str | None) -> Path | None:
            return None if p is None else work / p

        res = rec.get("result")
        result = None if res is None else JobResult(
            task=res["task"], case_id=res["case_id"], outputs={k: work / v for k, v in res["outputs"].items()},
            classification=res.get("classification"), warnings=list(res.get("warnings") or []))
        return cls(id=rec["id"], run=rec["run"], run_path=run_path, folder=work / rec["folder"],
                   input_path=work / rec["input_path"], input_kind=rec["input_kind"], input_bytes=int(rec["input_bytes"]),
                   tta=bool(rec["tta"]), explain=bool(rec["explain"]), reference_path=path(rec.get("reference_path")),
                   status=rec["status"], message=rec.get("message", ""), error_id=rec.get("error_id"),
                   created=float(rec["created"]), started=rec.get("started"), finished=rec.get("finished"),
                   result=result)


@dataclass(frozen=True)
class Refusal:
    """Why a job request is refused before its body is read: status, one-line message, seconds to wait."""

    status: int
    message: str
    retry_after: int


class JobManager:
    """Creates job folders, queues jobs, runs them on one worker thread, persists and expires them."""

    def __init__(self, work_dir: Path, *, runs: Mapping[str, Path] | None = None, device: str | None = None,
                 max_pending: int = 16, ttl_s: float = 24 * 3600.0) -> None:
        self.work_dir = work_dir
        self.device = device
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self.runs = dict(runs or {})
        self.jobs: dict[str, Job] = {}
        self.on_expire: Callable[[str], None] | None = None
        self.store = JobStore(work_dir / DB_NAME)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()
        self._incoming = 0
        (work_dir / "jobs").mkdir(mode=0o700, exist_ok=True)
        self._recover()

    # ------------------------------------------------------------------------------------------ lifecycle
    def _recover(self) -> None:
        """Load the database: finished jobs as they were, queued ones queued again, interrupted ones failed."""
        resumed = 0
        for rec in self.store.records():
            run_path = self.runs.get(rec["run"], Path(rec["run"]))
            job = Job.from_record(rec, self.work_dir, run_path)
            if job.status == "running":
                self._fail(job, "Expected the job to finish, got a server that stopped while it ran; submit it again "
                           "(it was not restarted, in case it is what stopped the server)", "interrupted")
            elif job.status == "queued" and rec["run"] not in self.runs:
                self._fail(job, f"Expected the run {job.run!r} to be served, got a server restarted without it; "
                           "restart the server with that run, or submit again", "run no longer served")
            elif job.status == "queued" and not job.input_path.exists():
                self._fail(job, "Expected the job's input to be kept, got an input that is gone; submit again",
                           "input gone")
            elif job.status == "queued":
                self._queue.put(job.id)
                resumed += 1
            self.jobs[job.id] = job
        known = set(self.jobs)
        orphans = [p for p in (self.work_dir / "jobs").iterdir() if p.name not in known]
        for p in orphans:
            shutil.rmtree(p, ignore_errors=True)
        if self.jobs or orphans:
            log.info("job database: %d job(s), %d queued again, %d unfinished upload folder(s) removed",
                     len(self.jobs), resumed, len(orphans))
        self.expire()

    def _fail(self, job: Job, message: str, why: str) -> None:
        job.status, job.message, job.error_id = "failed", message, new_error_id()
        job.finished = time.time()
        log.warning("job %s failed at restart (%s), error id %s", job.id, why, job.error_id)
        self._save(job)

    def start(self) -> None:
        """Start the worker (which runs the resumed jobs first) and the expiry sweeper."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="medsight-serve-worker", daemon=True)
                self._thread.start()
            if self._sweeper is None or not self._sweeper.is_alive():
                self._sweeper = threading.Thread(target=self._sweep, name="medsight-serve-expiry", daemon=True)
                self._sweeper.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new jobs, let the running job finish (up to ``timeout`` s), end the threads, close the database."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        if self._sweeper is not None:
            self._sweeper.join(5)
        self.store.close()

    # ------------------------------------------------------------------------------------------ admission
    def pending(self) -> int:
        """Queued and running jobs, plus job requests whose body is still arriving."""
        with self._lock:
            return self._incoming + sum(j.status in ("queued", "running") for j in self.jobs.values())

    def retry_after(self) -> int:
        """Seconds after which a refused client may try again: the mean job time times the jobs ahead (5..600)."""
        with self._lock:
            times = [j.finished - j.started for j in self.jobs.values() if j.finished and j.started]
            ahead = sum(j.status in ("queued", "running") for j in self.jobs.values())
        mean = sum(times[-20:]) / len(times[-20:]) if times else 30.0
        return int(min(600, max(5, mean * max(ahead, 1))))

    def admit(self) -> Refusal | None:
        """Reserve a place for a job request (``None``), or say why it is refused; call :meth:`release` after."""
        if self._stop.is_set():
            return Refusal(503, "Expected a server accepting jobs, got one that is stopping; retry later", 30)
        if shutil.disk_usage(self.work_dir).free < MIN_FREE_DISK:
            return Refusal(503, f"Expected free disk space for a job in the server's work folder, got less than "
                           f"{MIN_FREE_DISK // 2**20} MiB; retry later, or tell the server's administrator", 60)
        with self._lock:
            waiting = self._incoming + sum(j.status in ("queued", "running") for j in self.jobs.values())
            if waiting >= self.max_pending:
                refused = True
            else:
                refused = False
                self._incoming += 1
        if refused:
            return Refusal(429, f"Expected at most {self.max_pending} jobs waiting, got {waiting}; wait for running "
                           "jobs to finish (see Retry-After), then submit again", self.retry_after())
        return None

    def release(self) -> None:
        """End the reservation :meth:`admit` made."""
        with self._lock:
            self._incoming = max(0, self._incoming - 1)

    # ------------------------------------------------------------------------------------------ jobs
    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its private folder."""
        job_id = secrets.token_hex(6)
        folder = self.work_dir / "jobs" / job_id
        folder.mkdir(parents=True, mode=0o700)
        return job_id, folder

    def _save(self, job: Job) -> None:
        self.store.put(job.to_record(self.work_dir))

    def submit(self, job: Job) -> Job:
        """Queue a job (429 when too many are waiting); it is in the database before this returns."""
        with self._lock:
            pending = sum(j.status in ("queued", "running") for j in self.jobs.values())
            if pending >= self.max_pending:
                shutil.rmtree(job.folder, ignore_errors=True)
                raise api_error(429, f"at most {self.max_pending} jobs waiting", f"{pending}", None,
                                "wait for running jobs to finish, then submit again")
            self.jobs[job.id] = job
        self._save(job)
        log.info("job %s queued: run %s, %s input of %d bytes", job.id, job.run, job.input_kind, job.input_bytes)
        self.start()
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise api_error(404, "a known job id", repr(job_id[:40]), None, "list jobs with GET /api/jobs")
        return job

    def delete(self, job_id: str) -> None:
        """Remove a finished job and its files (409 while it is queued or running)."""
        job = self.get(job_id)
        if job.status in ("queued", "running"):
            raise api_error(409, "a finished job to delete", f"a {job.status} job", None, "wait until it has finished")
        self._remove(job)
        log.info("job %s deleted", job_id)

    def _remove(self, job: Job) -> None:
        with self._lock:
            self.jobs.pop(job.id, None)
        self.store.delete(job.id)
        shutil.rmtree(job.folder, ignore_errors=True)
        if self.on_expire is not None:
            self.on_expire(job.id)

    def expire(self, now: float | None = None) -> list[str]:
        """Delete finished jobs (with their inputs and outputs) older than the job lifetime; returns their ids."""
        now = time.time() if now is None else now
        with self._lock:
            old = [j for j in self.jobs.values() if j.finished is not None and now - j.finished > self.ttl_s]
        for job in old:
            self._remove(job)
        if old:
            log.info("%d finished job(s) expired and deleted", len(old))
        return [j.id for j in old]

    def _sweep(self) -> None:
        interval = max(1.0, min(60.0, self.ttl_s / 4))
        while not self._stop.wait(interval):
            try:
                self.expire()
            except Exception as exc:  # noqa: BLE001 - the sweeper must survive; the log names the type only
                log.error("job expiry failed: %s", type(exc).__name__)

    # ------------------------------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self.jobs.get(job_id)
            if job is not None and job.status == "queued":
                self._execute(job)

    def _execute(self, job: Job) -> None:
        job.status, job.started = "running", time.time()
        self._save(job)
        log.info("job %s running", job.id)
        try:
            job.result = run_job(job.run_path, job.input_path, job.folder / "output", tta=job.tta, explain=job.explain,
                                 device=self.device)
            job.status = "done"
        except Exception as exc:  # noqa: BLE001 - the worker must survive any job
            job.error_id = new_error_id()
            job.message = public_message(exc, job.error_id)
            job.status = "failed"
            log.warning("job %s failed, error id %s: %s: %s", job.id, job.error_id, type(exc).__name__, exc)
            log.debug("job %s traceback", job.id, exc_info=True)
        job.finished = time.time()
        self._save(job)
        log.info("job %s %s in %.1f s", job.id, job.status, job.finished - job.started)
        try:
            append_record(self.work_dir / AUDIT_NAME, _audit_record(job))
        except OSError as exc:
            log.error("job %s: audit line not written (%s)", job.id, type(exc).__name__)


def _audit_record(job: Job) -> dict[str, Any]:
    """One audit line: ids, options, the input's and each output's SHA-256 and size; never a file name."""
    sums = input_checksums(job.input_path) if job.input_path.exists() else None
    outputs = job.result.outputs if job.result else {}
    return {
        "time": utc_timestamp(), "event": "serve-job", "job": job.id, "run": job.run, "status": job.status,
        "error_id": job.error_id, "seconds": round((job.finished or 0) - (job.started or 0), 3),
        "parameters": {"tta": job.tta, "explain": job.explain},
        "input": {"kind": job.input_kind.split(" (")[0], "sha256": sums["sha256"] if sums else None,
                  "files": sums["files"] if sums else 0, "bytes": sums["bytes"] if sums else 0},
        "outputs": [{"role": role, "sha256": sha256_file(p), "bytes": p.stat().st_size}
                    for role, p in sorted(outputs.items()) if p.is_file()],
        "output_count": len(outputs),
    }


__all__ = ["AUDIT_NAME", "MIN_FREE_DISK", "Job", "JobManager", "Refusal"]
