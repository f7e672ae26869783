"""Security defaults: bad uploads refused with 4xx, path traversal refused, token, host and origin checks, logs."""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from .helpers import TOKEN, copy_series, submit, wait_for_job

IMAGE3D = "imagesTr/case_000_0000.nii.gz"


def _zip(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _post(client: TestClient, name: str, content: bytes, run: str = "run3d") -> tuple[int, str]:
    r = client.post("/api/jobs", data={"run": run}, files={"file": (name, content)})
    return r.status_code, r.json()["detail"]


@pytest.mark.parametrize(("name", "content", "status", "start"), [
    ("scan.nii.gz", b"", 400, "Expected a non-empty 'file' upload, got 0 bytes"),
    ("notes.txt", b"patient notes, not an image" * 40, 415, "Expected NIfTI (.nii, .nii.gz), NRRD"),
    ("scan.png", b"\x1f\x8b\x08\x00" + b"\x00" * 600, 415, "Expected NIfTI"),  # gzip that is no NIfTI
    ("scan.nii.gz", b"\x89PNG\r\n\x1a\n" + b"\x00" * 600, 415, "Expected content matching the file name's suffix (nifti-gz), got png content"),
    ("series.zip", b"PK\x03\x04 damaged", 415, "Expected a valid zip archive, got a damaged zip"),
])
def test_bad_uploads_are_refused_with_a_clear_message(client: TestClient, name: str, content: bytes, status: int,
                                                      start: str) -> None:
    code, detail = _post(client, name, content)
    assert code == status and detail.startswith(start), detail
    assert "\n" not in detail and "; " in detail  # one line: Expected ..., got ...; fix


def test_unsafe_zips_are_refused(client: TestClient, shared_data: Path, tmp_path: Path) -> None:
    dicom = copy_series(shared_data, tmp_path / "s", count=1).joinpath("000010.dcm").read_bytes()
    code, detail = _post(client, "a.zip", _zip({"../../etc/evil.dcm": dicom}))
    assert code == 400 and "a member name with '..'" in detail
    code, detail = _post(client, "a.zip", _zip({"/abs/evil.dcm": dicom}))
    assert code == 400 and "an absolute member name" in detail
    link = zipfile.ZipInfo("link.dcm")
    link.external_attr = 0o120777 << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    code, detail = _post(client, "a.zip", buf.getvalue())
    assert code == 400 and "a symbolic link" in detail
    code, detail = _post(client, "a.zip", _zip({"bomb.dcm": b"\x00" * (40 * 1024 * 1024)}))
    assert code == 413 and "zip bomb" in detail
    code, detail = _post(client, "a.zip", _zip({"readme.txt": b"hello"}))
    assert code == 415 and "a zip with no DICOM file" in detail
    assert not list((Path(client.app.state.medsight.work_dir) / "jobs").iterdir())  # type: ignore[attr-defined]


def test_upload_size_limit(make_client: Callable[..., TestClient], serve_runs: dict[str, Path]) -> None:
    client = make_client(max_upload_mb=0.05)  # 51 KB; the 3D phantom is larger
    image = (serve_runs["ds3d"] / IMAGE3D).read_bytes()  # ~70 KB: over the file limit, under the request limit
    code, detail = _post(client, "scan.nii.gz", image)
    assert code == 413 and detail.startswith("Expected an upload of at most 0.05 MB, got a larger file")
    code, detail = _post(client, "scan.nii.gz", image + b"\x00" * (400 * 1024))  # refused on its Content-Length
    assert code == 413 and detail.startswith("Expected a request body of at most 0.3 MB")
    # a streamed body without a Content-Length is cut off once it passes the limit
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.nii.gz"\r\n\r\n'
    r = client.post("/api/jobs", content=iter([head] + [b"x" * 65536] * 8),
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["detail"].startswith("Expected a request body of at most")


def test_path_traversal_is_refused(client: TestClient, serve_runs: dict[str, Path], tmp_path: Path) -> None:
    def post_path(path: str) -> tuple[int, str]:
        r = client.post("/api/jobs", data={"run": "run3d", "path": path})
        return r.status_code, r.json()["detail"]

    code, detail = post_path("../ds2d/imagesTr/case_000_0000.png")
    assert code == 400 and "without '..'" in detail
    code, detail = post_path("imagesTr/../../ds2d/imagesTr/case_000_0000.png")
    assert code == 400
    code, detail = post_path(str(serve_runs["ds2d"] / "imagesTr" / "case_000_0000.png"))  # absolute, outside
    assert code == 404 and "an existing file under the served roots" in detail  # like a missing file: no oracle
    outside = tmp_path / "secret.nii.gz"
    outside.write_bytes((serve_runs["ds3d"] / IMAGE3D).read_bytes())
    link = serve_runs["ds3d"] / "leak.nii.gz"
    os.symlink(outside, link)
    try:
        code, detail = post_path("leak.nii.gz")
        assert code == 404 and "an existing file under the served roots" in detail
    finally:
        link.unlink()
    code, detail = post_path("imagesTr/missing.nii.gz")
    assert code == 404
    r = client.get("/api/runs/run3d/files/../../ds3d/dataset.json")
    assert r.status_code in (400, 404)
    r = client.get("/api/runs/run3d/files/%2e%2e/%2e%2e/ds3d/dataset.json")
    assert r.status_code in (400, 404)
    r = client.get("/api/runs/run3d/files/fold_0/checkpoint_best.pt")
    assert r.status_code == 404 and "report file" in r.json()["detail"]


def test_no_root_means_no_server_side_files(make_client: Callable[..., TestClient]) -> None:
    client = make_client(roots=())
    r = client.post("/api/jobs", data={"run": "run3d", "path": IMAGE3D})
    assert r.status_code == 403 and "--root" in r.json()["detail"]
    r = client.post("/api/jobs", data={"run": "run3d"})
    assert r.status_code == 400 and "exactly one of 'file'" in r.json()["detail"]


def test_token_is_required(make_client: Callable[..., TestClient]) -> None:
    client = make_client(authorized=False)
    r = client.get("/api/runs")
    assert r.status_code == 401 and r.json()["detail"].startswith("Expected an access token, got no token")
    assert client.get("/api/runs", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert client.get("/api/runs", headers={"X-Medsight-Token": TOKEN}).status_code == 401  # header or cookie only
    assert client.get("/api/health").status_code == 200  # liveness stays open
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # the viewer URL with ?token= sets an HttpOnly cookie and drops the token from the address
    r = client.get("/", params={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert client.get("/api/runs").status_code == 200  # the cookie now authenticates


def test_host_and_origin_checks(client: TestClient, serve_runs: dict[str, Path]) -> None:
    r = client.get("/api/runs", headers={"Host": "attacker.example"})
    assert r.status_code == 400 and "Host header" in r.json()["detail"]
    r = client.post("/api/jobs", data={"run": "run3d", "path": IMAGE3D}, headers={"Origin": "http://attacker.example"})
    assert r.status_code == 403 and "another origin" in r.json()["detail"]
    r = client.post("/api/jobs", data={"run": "run9d", "path": IMAGE3D}, headers={"Origin": "http://127.0.0.1"})
    assert r.status_code == 404 and "a known run" in r.json()["detail"]  # past the origin check


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_logs_name_jobs_not_files(client: TestClient, serve_runs: dict[str, Path], shared_data: Path,
                                  tmp_path: Path) -> None:
    import pydicom

    series = copy_series(shared_data, tmp_path / "DOE_JOHN_1970", count=2)
    patient = str(pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True).PatientName)
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as zf:
        for f in series.iterdir():
            zf.write(f, f"DOE_JOHN_1970/{f.name}")
    logger, collect = logging.getLogger("medsight"), _Collect()  # on the logger itself: the CLI may stop propagation
    level = logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    try:
        job = client.post("/api/jobs", data={"run": "run3d"}, files={"file": ("DOE_JOHN_1970.zip", payload.getvalue())})
        wait_for_job(client, job.json()["id"])
        wait_for_job(client, submit(client, "run3d", serve_runs["ds3d"] / IMAGE3D, name="Smith_Jane.nii.gz").json()["id"])
        client.get("/api/runs", params={"token": "not-logged"})
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    text = "\n".join(collect.lines)
    assert job.json()["id"] in text and "POST /api/jobs -> 202" in text
    for secret in ("DOE_JOHN", "Smith_Jane", "not-logged", *([patient] if patient.strip() else [])):
        assert secret not in text, secret
