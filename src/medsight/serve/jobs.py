"""Prediction jobs: queued by the API, run one at a time by a single worker thread (one model in memory at once).

A job's folder is ``WORK/jobs/<id>/`` with ``input/`` (the upload, stored as ``<id><suffix>``, or the unpacked DICOM
series ``<id>/``), ``reference/`` (an optional reference label map) and ``output/``. The log names jobs by id and
sizes only. Error messages of failed jobs are given to the client with the work folder left out of paths.
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.errors import MedsightError
from medsight.serve.inference import JobResult, run_job
from medsight.serve.security import api_error

log = logging.getLogger(__name__)

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
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: JobResult | None = None

    def as_json(self) -> dict[str, Any]:
        """What the API shows: status, timings, output roles and viewer volumes (no server paths)."""
        res = self.result
        return {
            "id": self.id, "run": self.run, "status": self.status, "message": self.message,
            "input": {"kind": self.input_kind, "bytes": self.input_bytes, "has_reference": self.reference_path is not None},
            "options": {"tta": self.tta, "explain": self.explain},
            "created": self.created, "started": self.started, "finished": self.finished,
            "seconds": round(self.finished - self.started, 3) if self.finished and self.started else None,
            "task": res.task if res else None,
            "case_id": res.case_id if res else None,
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


class JobManager:
    """Creates job folders, queues jobs and runs them on one worker thread."""

    def __init__(self, work_dir: Path, *, device: str | None = None, max_pending: int = 16) -> None:
        self.work_dir = work_dir
        self.device = device
        self.max_pending = max_pending
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="medsight-serve-worker", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the running job finish (up to ``timeout`` s) and end the worker."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # ------------------------------------------------------------------------------------------ jobs
    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its private folder."""
        job_id = secrets.token_hex(6)
        folder = self.work_dir / "jobs" / job_id
        folder.mkdir(parents=True, mode=0o700)
        return job_id, folder

    def submit(self, job: Job) -> Job:
        """Queue a job (429 when too many are waiting)."""
        with self._lock:
            pending = sum(j.status in ("queued", "running") for j in self.jobs.values())
            if pending >= self.max_pending:
                shutil.rmtree(job.folder, ignore_errors=True)
                raise api_error(429, f"at most {self.max_pending} jobs waiting", f"{pending}", None,
                                "wait for running jobs to finish, then submit again")
            self.jobs[job.id] = job
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
        with self._lock:
            self.jobs.pop(job_id, None)
        shutil.rmtree(job.folder, ignore_errors=True)
        log.info("job %s deleted", job_id)

    # ------------------------------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self.jobs.get(job_id)
            if job is not None:
                self._execute(job)

    def _execute(self, job: Job) -> None:
        job.status, job.started = "running", time.time()
        log.info("job %s running", job.id)
        try:
            job.result = run_job(job.run_path, job.input_path, job.folder / "output", tta=job.tta, explain=job.explain,
                                 device=self.device)
            job.status = "done"
        except MedsightError as exc:
            job.message = str(exc).replace(str(job.folder) + "/", "")
            job.status = "failed"
        except Exception as exc:  # noqa: BLE001 - the worker must survive any job; the log names the type only
            log.debug("job %s traceback", job.id, exc_info=True)
            job.message = (f"Expected the prediction to run, got an internal error ({type(exc).__name__}); "
                           "check the input, or run 'medsight --debug serve' to see the traceback")
            job.status = "failed"
        job.finished = time.time()
        log.info("job %s %s in %.1f s", job.id, job.status, job.finished - job.started)


__all__ = ["Job", "JobManager"]
