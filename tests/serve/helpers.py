"""Helpers of the ``medsight serve`` tests: submitting jobs, waiting for them, copying a DICOM series."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

TOKEN = "s3cret-token-for-tests"
BASE_URL = "http://127.0.0.1"


def wait_for_job(client: TestClient, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll a job until it is done or failed; returns its JSON."""
    end = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed") or time.monotonic() > end:
            return job
        time.sleep(0.05)


def submit(client: TestClient, run: str, file: Path | None = None, *, name: str | None = None,
           reference: Path | None = None, **fields: Any) -> Any:
    """POST /api/jobs with an upload (and optional reference); returns the response."""
    files = {}
    if file is not None:
        files["file"] = (name or file.name, file.read_bytes())
    if reference is not None:
        files["reference"] = (reference.name, reference.read_bytes())
    return client.post("/api/jobs", data={"run": run, **fields}, files=files or None)


def copy_series(shared_data: Path, dest: Path, count: int = 4) -> Path:
    """The first ``count`` slices from the middle of the shared TCIA MR series, copied to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for n in range(10, 10 + count):
        shutil.copyfile(shared_data / "tcia_pgbm005_mr_t1post_dicom" / "volume" / f"{n:06d}.dcm", dest / f"{n:06d}.dcm")
    return dest
