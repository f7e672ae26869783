"""The REST API (``/api/...``); the schema is at ``/openapi.json``.

========================================================  =====================================================
route                                                     what
========================================================  =====================================================
``GET /api/health``                                       liveness (no token needed)
``GET /api/presets``                                      CT window presets ``{name: [level, width]}``
``GET /api/runs``, ``GET /api/runs/{run}``                runs, task, labels, metrics; one run with its cases
``GET /api/runs/{run}/files/{path}``                      report pages and their figures (no checkpoints)
``POST /api/jobs``                                        upload (or name a server file) and queue a prediction
``GET /api/jobs``, ``GET|DELETE /api/jobs/{id}``          job status; delete a finished job
``GET /api/jobs/{id}/files/{role}``                       download an output (label map, CSV, DICOM-SEG, ...)
``GET .../volumes/{name}``                                a volume's geometry (JSON) for jobs and run cases
``GET .../volumes/{name}/data``                           the volume as ``(C, *spatial)`` little-endian bytes
``GET .../volumes/{name}/slice.png``                      one slice as PNG, windowed (``window=lung`` or level/width)
``GET /api/pacs/studies``                                 the DICOM node's studies and their state (``--pacs-workdir``)
========================================================  =====================================================
"""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response

from medsight.core.display import WINDOW_PRESETS, window_bounds
from medsight.engine.run import run_task
from medsight.io import full_suffix
from medsight.pacs.config import NodeConfig
from medsight.pacs.store import JobStore
from medsight.serve.config import ServeConfig
from medsight.serve.inference import JOBS
from medsight.serve.jobs import Job, JobManager
from medsight.serve.limits import check_image
from medsight.serve.runs import RUN_FILE_SUFFIXES, RunCase, RunCatalog, run_facts
from medsight.serve.security import api_error, resolve_under_roots
from medsight.serve.uploads import (
    CHUNK,
    UNZIP_FACTOR,
    ZIP_HEADER_ALLOWANCE,
    extract_dicom_zip,
    save_upload,
    sniff,
)
from medsight.serve.viewer_data import CASE_VOLUMES, case_volume, job_volume
from medsight.serve.volumes import Volume, VolumeCache, render_png

router = APIRouter(prefix="/api")

#: Content-Security-Policy of report pages: their inline styles and embedded images, no scripts.
REPORT_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


@dataclass
class ServerState:
    """Everything the routes share, created once by :func:`medsight.serve.app.create_app`."""

    config: ServeConfig
    catalog: RunCatalog
    jobs: JobManager
    volumes: VolumeCache
    work_dir: Path
    token: str
    close: Callable[[], None]


def _state(request: Request) -> ServerState:
    return request.app.state.medsight


def _unknown(kind: str, name: str, choices: list[str]) -> Exception:
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return api_error(404, f"a known {kind}", repr(name[:80]), None, f"{hint}choose one of: {', '.join(sorted(choices)) or '(none)'}")


def _run_path(state: ServerState, run: str) -> Path:
    if run not in state.catalog.runs:
        raise _unknown("run", run, list(state.catalog.runs))
    return state.catalog.path(run)


# ---------------------------------------------------------------------------------------------- basics
@router.get("/health", summary="Liveness check (open without a token)")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/presets", summary="CT window presets (level, width in HU)")
def presets() -> dict[str, Any]:

    return {"presets": {k: list(v) for k, v in WINDOW_PRESETS.items()}}


# ---------------------------------------------------------------------------------------------- runs
@router.get("/runs", summary="Served runs with their task, labels and cross-validation metrics")
def list_runs(request: Request) -> dict[str, Any]:
    state = _state(request)
    return {"runs": [{"name": name, **run_facts(path)} for name, path in state.catalog.runs.items()]}


@router.get("/runs/{run}", summary="One run with its validation cases")
def get_run(request: Request, run: str) -> dict[str, Any]:
    state = _state(request)
    path = _run_path(state, run)
    return {"name": run, **run_facts(path), "cases": [c.as_json() for c in state.catalog.cases(run)]}


@router.get("/runs/{run}/files/{file_path:path}", summary="A report page or figure of a run")
def run_file(request: Request, run: str, file_path: str) -> FileResponse:
    state = _state(request)
    root = _run_path(state, run)
    real = resolve_under_roots(file_path, [root], what="run file")
    if not real.is_file() or real.suffix.lower() not in RUN_FILE_SUFFIXES:  # 404 like a missing file: no oracle
        raise api_error(404, f"an existing report file ({', '.join(RUN_FILE_SUFFIXES)})", repr(file_path[:120]), None,
                        "ask for report.html or a file it links to (checkpoints are never served)")
    headers = {"Content-Security-Policy": REPORT_CSP} if real.suffix.lower() in (".html", ".svg") else {}
    return FileResponse(real, headers=headers)


def _run_case(state: ServerState, run: str, case_id: str) -> RunCase:
    _run_path(state, run)
    try:
        return state.catalog.case(run, case_id)
    except KeyError:
        raise _unknown(f"validation case of run {run}", case_id, [c.case_id for c in state.catalog.cases(run)]) from None


# ---------------------------------------------------------------------------------------------- jobs
@router.post("/jobs", status_code=202, summary="Queue a prediction of an uploaded image or a server-side file")
def create_job(
    request: Request,
    run: Annotated[str, Form(description="name of a served run")],
    file: Annotated[UploadFile | None, File(description="an image file, or a zip of one DICOM series")] = None,
    path: Annotated[str | None, Form(description="instead of a file: a path under a --root")] = None,
    reference: Annotated[UploadFile | None, File(description="optional reference label map (same grid)")] = None,
    reference_path: Annotated[str | None, Form(description="optional reference label map under a --root")] = None,
    tta: Annotated[bool, Form(description="mirror test-time augmentation")] = False,
    explain: Annotated[bool, Form(description="also compute a Grad-CAM / saliency heat map")] = False,
) -> Response:

    state = _state(request)
    run_path = _run_path(state, run)
    task = run_task(run_path)
    if task not in JOBS:
        raise api_error(400, f"a run of a task the server predicts ({', '.join(JOBS)})", f"a {task} run", run,
                        "choose another run")
    if (file is None) == (path is None or not path.strip()):
        raise api_error(400, "exactly one of 'file' (an upload) and 'path' (a server-side file)",
                        "both" if file is not None else "neither", None, "send one of them")
    job_id, folder = state.jobs.new_folder()
    try:
        job = _build_job(state, job_id, folder, run, run_path, file=file, path=path, reference=reference,
                         reference_path=reference_path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    job.tta, job.explain = tta, explain
    state.jobs.submit(job)
    return JSONResponse(job.as_json(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


def _link_input(real: Path, folder: Path, job_id: str) -> Path:
    """A link ``folder/<job id><suffix>`` to a file (or series folder) under a root: the case id and every output
    name then come from the job id, not from the server file's name."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / (job_id + ("" if real.is_dir() else full_suffix(real)))
    link.symlink_to(real, target_is_directory=real.is_dir())
    return link


def _server_kind(real: Path) -> str | None:
    """The upload kind of a server-side file, from its first bytes (``None``: not one the limits measure)."""
    with real.open("rb") as fh:
        return sniff(fh.read(CHUNK))


def _build_job(state: ServerState, job_id: str, folder: Path, run: str, run_path: Path, *, file: UploadFile | None,
               path: str | None, reference: UploadFile | None, reference_path: str | None) -> Job:

    cfg = state.config
    if file is not None:
        saved = save_upload(file.file, file.filename or "", folder / "input", job_id, max_bytes=cfg.max_upload_bytes)
        input_path, kind, size = saved.path, saved.kind, saved.size
        if kind == "zip":
            input_path = folder / "input" / job_id
            count = extract_dicom_zip(saved.path, input_path, max_total_bytes=min(
                UNZIP_FACTOR * cfg.max_upload_bytes, cfg.max_image_bytes + ZIP_HEADER_ALLOWANCE))
            saved.path.unlink()
            check_image(input_path, "dicom", max_bytes=cfg.max_image_bytes)
            kind = f"zipped DICOM series ({count} files)"
        else:
            check_image(input_path, kind, max_bytes=cfg.max_image_bytes)
    else:
        real = resolve_under_roots(path or "", cfg.roots)
        if real.is_file() and (server_kind := _server_kind(real)) is not None:
            check_image(real, server_kind, max_bytes=cfg.max_image_bytes)
        kind = "server folder" if real.is_dir() else "server file"
        size = real.stat().st_size if real.is_file() else 0
        input_path = _link_input(real, folder / "input", job_id)
    ref = None
    if reference is not None:
        ref_saved = save_upload(reference.file, reference.filename or "", folder / "reference", job_id,
                                max_bytes=cfg.max_upload_bytes, field="reference")
        if ref_saved.kind in ("zip", "dicom"):
            raise api_error(415, "a reference label map file (NIfTI, NRRD, MHA, PNG, TIFF)", ref_saved.kind, "'reference'",
                            "convert the reference with 'medsight convert'")
        check_image(ref_saved.path, ref_saved.kind, max_bytes=cfg.max_image_bytes, field="reference")
        ref = ref_saved.path
    elif reference_path:
        real_ref = resolve_under_roots(reference_path, cfg.roots, what="reference file")
        if real_ref.is_file() and (ref_kind := _server_kind(real_ref)) is not None:
            check_image(real_ref, ref_kind, max_bytes=cfg.max_image_bytes, field="reference")
        ref = _link_input(real_ref, folder / "reference", job_id)
    return Job(id=job_id, run=run, run_path=run_path, folder=folder, input_path=input_path, input_kind=kind,
               input_bytes=size, reference_path=ref)


@router.get("/jobs", summary="All jobs, newest first")
def list_jobs(request: Request) -> dict[str, Any]:
    jobs = sorted(_state(request).jobs.jobs.values(), key=lambda j: j.created, reverse=True)
    return {"jobs": [j.as_json() for j in jobs]}


@router.get("/pacs/studies", summary="Studies the DICOM node received, newest first, with their state")
def pacs_studies(request: Request) -> dict[str, Any]:
    """Read-only view of the node's job store (``medsight pacs listen``): UIDs, states, counts and reasons; the
    store holds no patient names or IDs."""
    workdir = _state(request).config.pacs_workdir
    if workdir is None:
        raise api_error(404, "a DICOM node to show", "none", None, "start the server with --pacs-workdir DIR")
    path = NodeConfig(workdir=workdir).store_path
    if not path.is_file():
        return {"studies": [], "node": "no studies received yet"}
    store = JobStore(path)
    try:
        studies = store.studies()
    finally:
        store.close()
    node = str(workdir.resolve())
    for study in studies:  # no server paths: the node's folders are dropped, and named only as "NODE" in reasons
        for series in study["series"]:
            series.pop("folder", None)
            series["reason"] = str(series.get("reason", "")).replace(node, "NODE").replace(str(workdir), "NODE")
    return {"studies": studies}


@router.get("/jobs/{job_id}", summary="A job's status, outputs and viewer volumes")
def get_job(request: Request, job_id: str) -> dict[str, Any]:
    return _state(request).jobs.get(job_id).as_json()


@router.delete("/jobs/{job_id}", status_code=204, summary="Delete a finished job and its files")
def delete_job(request: Request, job_id: str) -> Response:
    state = _state(request)
    state.jobs.delete(job_id)
    state.volumes.drop(job_id)
    return Response(status_code=204)


@router.get("/jobs/{job_id}/files/{role}", summary="Download an output: labels, probabilities, quantification, "
            "predictions, dicom_seg, heatmap, heatmap_png")
def job_file(request: Request, job_id: str, role: str) -> FileResponse:
    job = _state(request).jobs.get(job_id)
    outputs = job.result.outputs if job.result else {}
    _require(job, role, list(outputs), "output")
    return FileResponse(outputs[role], filename=download_name(job.id, role, outputs[role]))


def download_name(job_id: str, role: str, path: Path) -> str:
    """``<job id>_<role><suffix>``: what a download is called (never the uploaded file's name)."""
    return f"{job_id}_{role}{full_suffix(path)}"


def _require(job: Job, name: str, available: list[str], kind: str) -> None:
    """409 while the job has not finished well, 404 (with the choices) for an unknown name."""
    if name in available:
        return
    if job.status in ("queued", "running"):
        raise api_error(409, "a finished job", f"a {job.status} job", None, "poll GET /api/jobs/{id} until 'done'")
    if job.status == "failed":
        raise api_error(409, "a job that succeeded", "a failed job", None, "read the job's 'message', fix the input, submit again")
    raise _unknown(f"{kind} of job {job.id}", name, available)


# ---------------------------------------------------------------------------------------------- volumes
def _job_volume(state: ServerState, job_id: str, name: str) -> Volume:

    job = state.jobs.get(job_id)
    _require(job, name, job.volume_names(), "volume")
    return state.volumes.get((job_id, name), lambda: job_volume(job, name))


def _case_volume(state: ServerState, run: str, case_id: str, name: str) -> Volume:

    case = _run_case(state, run, case_id)
    available = [n for n, attr in CASE_VOLUMES.items() if getattr(case, attr) is not None]
    if name not in available:
        raise _unknown(f"volume of case {case_id}", name, available)
    path = getattr(case, CASE_VOLUMES[name])
    key = (f"run:{run}", case_id, name, path.stat().st_mtime_ns)
    return state.volumes.get(key, lambda: case_volume(case, name, _run_path(state, run)))


def _data_response(request: Request, volume: Volume) -> Response:
    headers = {"X-Medsight-Dtype": str(volume.data.dtype), "Cache-Control": "private, max-age=60"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(volume.gzip_bytes, media_type="application/octet-stream",
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(volume.data.tobytes(), media_type="application/octet-stream", headers=headers)


def _slice_response(volume: Volume, axis: str, index: int | None, channel: int, window: str | None,
                    level: float | None, width: float | None) -> Response:

    if window:
        bounds: tuple[float, float] | None = window_bounds(window)
    elif level is not None or width is not None:
        if level is None or width is None:
            raise api_error(400, "both 'level' and 'width'", "only one of them", None, "give both, or a 'window' preset")
        bounds = window_bounds((level, width))
    else:
        bounds = None
    shape = volume.shape
    if index is None:
        index = 0 if len(shape) == 2 else shape[{"axial": 0, "coronal": 1, "sagittal": 2}.get(axis, 0)] // 2
    png = render_png(volume, axis, index, channel=channel, window=bounds)
    rs, cs = volume.pixel_spacing(axis)
    return Response(png, media_type="image/png", headers={"X-Medsight-Pixel-Spacing": f"{rs:g},{cs:g}"})


Axis = Annotated[str, Query(description="axial, coronal or sagittal")]
Index = Annotated[int | None, Query(description="slice index (default: the middle slice)")]
Channel = Annotated[int, Query(ge=0, description="channel (probabilities: the label value)")]
WindowName = Annotated[str | None, Query(description="a CT preset (lung, bone, ...) or 'LEVEL,WIDTH'")]


@router.get("/jobs/{job_id}/volumes/{name}", summary="Geometry and value range of a job's volume")
def job_volume_meta(request: Request, job_id: str, name: str) -> dict[str, Any]:
    return {"name": name, **_job_volume(_state(request), job_id, name).meta()}


@router.get("/jobs/{job_id}/volumes/{name}/data", summary="A job's volume as (C, *spatial) little-endian bytes")
def job_volume_data(request: Request, job_id: str, name: str) -> Response:
    return _data_response(request, _job_volume(_state(request), job_id, name))


@router.get("/jobs/{job_id}/volumes/{name}/slice.png", summary="One slice of a job's volume as a PNG")
def job_volume_slice(request: Request, job_id: str, name: str, axis: Axis = "axial", index: Index = None,
                     channel: Channel = 0, window: WindowName = None, level: float | None = None,
                     width: float | None = None) -> Response:
    return _slice_response(_job_volume(_state(request), job_id, name), axis, index, channel, window, level, width)


@router.get("/runs/{run}/cases/{case_id}/volumes/{name}", summary="Geometry of a validation case's volume")
def case_volume_meta(request: Request, run: str, case_id: str, name: str) -> dict[str, Any]:
    return {"name": name, **_case_volume(_state(request), run, case_id, name).meta()}


@router.get("/runs/{run}/cases/{case_id}/volumes/{name}/data", summary="A validation case's volume as bytes")
def case_volume_data(request: Request, run: str, case_id: str, name: str) -> Response:
    return _data_response(request, _case_volume(_state(request), run, case_id, name))


@router.get("/runs/{run}/cases/{case_id}/volumes/{name}/slice.png", summary="One slice of a validation case's volume")
def case_volume_slice(request: Request, run: str, case_id: str, name: str, axis: Axis = "axial", index: Index = None,
                      channel: Channel = 0, window: WindowName = None, level: float | None = None,
                      width: float | None = None) -> Response:
    return _slice_response(_case_volume(_state(request), run, case_id, name), axis, index, channel, window, level, width)


__all__ = ["ServerState", "download_name", "router"]
