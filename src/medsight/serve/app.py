"""The FastAPI application: API routes, the static viewer, error handlers, the request guard and job admission.

``create_app(config)`` discovers the runs, locks the work folder (a private temporary folder unless
``config.work_dir`` is given; removed at shutdown when temporary; see :mod:`medsight.serve.workdir`), opens the job
database, and returns the app. There is always a token: ``config.token``, or one generated here
(``app.state.medsight.token``). The interactive API pages (``/docs``) are off because they load scripts from a CDN;
the schema is at ``/openapi.json``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
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
from medsight.serve.security import (
    FORM_OVERHEAD_BYTES,
    ASGIApp,
    Message,
    RequestGuard,
    Scope,
    mentions_paths,
    new_error_id,
    public_message,
)
from medsight.serve.volumes import VolumeCache
from medsight.serve.workdir import WorkFolder

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: The viewer's policy: its own scripts, styles and images only (volumes arrive as data; no CDN, no inline code).
VIEWER_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
              "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    got = repr(first.get("input"))[:60] if "input" in first else "nothing"
    detail = f"Expected a valid '{where}' ({first.get('msg', 'invalid')}), got {got} in the request; fix '{where}'"
    return JSONResponse({"detail": detail}, status_code=422)


class JobAdmission:
    """ASGI middleware: ``POST /api/jobs`` is admitted (or refused with 429/503 and ``Retry-After``) before its body
    is read, and holds a place in the queue while its body arrives."""

    def __init__(self, app: ASGIApp, *, jobs: JobManager) -> None:
        self.app = app
        self.jobs = jobs

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != "/api/jobs":
            await self.app(scope, receive, send)
            return
        refusal = self.jobs.admit()
        if refusal is not None:
            log.info("job request refused before its body: %d", refusal.status)
            response = JSONResponse({"detail": refusal.message}, status_code=refusal.status,
                                    headers={"Retry-After": str(refusal.retry_after), "Connection": "close"})
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.jobs.release()


def create_app(config: ServeConfig) -> FastAPI:
    """Build the application for ``config`` (runs, roots, token, limits, work folder)."""
    catalog = RunCatalog(discover_runs(config.runs))
    work = WorkFolder.open(config.work_dir, legacy_age_s=config.job_ttl_hours * 3600)
    try:
        jobs = JobManager(work.path, runs=catalog.runs, device=config.device, max_pending=config.max_pending_jobs,
                          ttl_s=config.job_ttl_hours * 3600)
    except BaseException:
        work.close()
        raise
    token = config.token or secrets.token_urlsafe(24)
    volumes = VolumeCache()
    jobs.on_expire = volumes.drop
    known_paths = [work.path, *(Path(r).resolve() for r in config.roots), *catalog.runs.values()]

    def close() -> None:
        jobs.stop()
        work.close()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("serving %d run(s); work folder ready", len(catalog.runs))
        jobs.start()
        yield
        close()

    def medsight_error(request: Request, exc: Exception) -> JSONResponse:
        status = 404 if isinstance(exc, InputNotFoundError) else 400
        message = str(exc)
        if mentions_paths(message, known_paths):  # a reader's message about a server file: no paths to clients
            error_id = new_error_id()
            log.warning("request error, error id %s: %s", error_id, message)
            message = public_message(exc, error_id)
        return JSONResponse({"detail": message}, status_code=status)

    app = FastAPI(title="medsight", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Browse trained runs, run predictions as background jobs, and view volumes, label maps "
                              "and heat maps. Errors come as JSON {\"detail\": \"Expected ..., got ...; fix\"}.")
    app.state.medsight = ServerState(config=config, catalog=catalog, jobs=jobs, volumes=volumes, work_dir=work.path,
                                     token=token, close=close)
    app.include_router(router)
    app.add_exception_handler(MedsightError, medsight_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": VIEWER_CSP,
                                                            "Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(JobAdmission, jobs=jobs)  # inner: runs after the guard's token and size checks
    app.add_middleware(RequestGuard, token=token, max_body_bytes=config.max_upload_bytes + FORM_OVERHEAD_BYTES,
                       allowed_hosts=config.allowed_hosts(), secure_cookie=config.tls)
    return app


__all__ = ["STATIC", "JobAdmission", "create_app"]
