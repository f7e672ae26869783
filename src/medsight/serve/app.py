"""The FastAPI application: API routes, the static viewer, error handlers and the request guard.

``create_app(config)`` discovers the runs, makes the work folder (a private temporary folder unless
``config.work_dir`` is given; removed at shutdown when temporary) and returns the app. The interactive API pages
(``/docs``) are off because they load scripts from a CDN; the schema is at ``/openapi.json``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from medsight import __version__
from medsight.errors import InputNotFoundError, MedsightError
from medsight.serve.config import ServeConfig
from medsight.serve.jobs import JobManager
from medsight.serve.routes import ServerState, router
from medsight.serve.runs import RunCatalog, discover_runs
from medsight.serve.security import FORM_OVERHEAD_BYTES, RequestGuard
from medsight.serve.volumes import VolumeCache

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: The viewer's policy: its own scripts, styles and images only (volumes arrive as data; no CDN, no inline code).
VIEWER_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
              "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _work_folder(config: ServeConfig) -> tuple[Path, bool]:
    if config.work_dir is not None:
        config.work_dir.mkdir(parents=True, exist_ok=True)
        return config.work_dir.resolve(), False
    return Path(tempfile.mkdtemp(prefix="medsight-serve-")).resolve(), True  # mkdtemp makes it 0700


def _medsight_error(request: Request, exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, InputNotFoundError) else 400
    return JSONResponse({"detail": str(exc)}, status_code=status)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    got = repr(first.get("input"))[:60] if "input" in first else "nothing"
    detail = f"Expected a valid '{where}' ({first.get('msg', 'invalid')}), got {got} in the request; fix '{where}'"
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(config: ServeConfig) -> FastAPI:
    """Build the application for ``config`` (runs, roots, token, upload limit, work folder)."""
    catalog = RunCatalog(discover_runs(config.runs))
    work, temporary = _work_folder(config)
    jobs = JobManager(work, device=config.device, max_pending=config.max_pending_jobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("serving %d run(s); work folder ready", len(catalog.runs))
        yield
        jobs.stop()
        if temporary:
            shutil.rmtree(work, ignore_errors=True)

    app = FastAPI(title="medsight", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Browse trained runs, run predictions as background jobs, and view volumes, label maps "
                              "and heat maps. Errors come as JSON {\"detail\": \"Expected ..., got ...; fix\"}.")
    app.state.medsight = ServerState(config=config, catalog=catalog, jobs=jobs, volumes=VolumeCache(), work_dir=work)
    app.include_router(router)
    app.add_exception_handler(MedsightError, _medsight_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": VIEWER_CSP,
                                                            "Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(RequestGuard, token=config.token, max_body_bytes=config.max_upload_bytes + FORM_OVERHEAD_BYTES,
                       allowed_hosts=config.allowed_hosts())
    return app


__all__ = ["STATIC", "create_app"]
