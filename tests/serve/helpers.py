"""Helpers of the ``medsight serve`` tests: submitting jobs, waiting for them, copying a DICOM series, a live
uvicorn server."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(app: Any, *, header_timeout: float = 10.0, body_timeout: float = 30.0, min_rate: float = 65536,
                **uvicorn_options: Any) -> Iterator[int]:
    """uvicorn serving ``app`` on a free loopback port in a thread, with medsight's timeout protocol; yields the port."""
    import uvicorn

    from medsight.serve.protocol import guarded_protocol

    protocol = guarded_protocol(header_timeout=header_timeout, body_timeout=body_timeout, min_rate=min_rate)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           access_log=False, http=protocol, **uvicorn_options))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > end or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.05)
    try:
        yield int(server.config.port)
    finally:
        server.should_exit = True
        thread.join(15)
