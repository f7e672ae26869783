"""Decompressed-size limits (issue 20): upload bombs of every kind are refused with 413 from their headers, and a
full queue is refused before the request body is read."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medsight.core.image import Image
from medsight.io import write_image

from .bombs import nifti_bomb, png_bomb, zip_bomb
from .helpers import copy_series


def _post(client: TestClient, name: str, content: bytes, field: str = "file", **extra: tuple[str, bytes]) -> tuple[int, str]:
    files = {field: (name, content), **extra}
    r = client.post("/api/jobs", data={"run": "run3d"}, files=files)
    return r.status_code, r.json().get("detail", "")


def _no_job_left(client: TestClient) -> bool:
    work = Path(client.app.state.medsight.work_dir)  # type: ignore[attr-defined]
    return not list((work / "jobs").iterdir()) and client.get("/api/jobs").json()["jobs"] == []


def test_nifti_bomb_is_refused_from_its_header(client: TestClient) -> None:
    bomb = nifti_bomb()
    assert len(bomb) < 200_000  # 128 MiB of voxels in ~130 KB
    code, detail = _post(client, "scan.nii.gz", bomb)
    assert code == 413 and "decompress to 128 MB (a decompression bomb?)" in detail, detail
    assert _no_job_left(client)


def test_every_upload_kind_has_a_voxel_limit(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client(max_image_mb=0.01)  # 10 KiB of voxels
    image = Image(np.random.default_rng(0).integers(0, 999, (1, 16, 32, 32)).astype(np.int16))  # 32 KiB
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        path = write_image(image, tmp_path / f"big{suffix}")
        code, detail = _post(client, f"x{suffix}", path.read_bytes())
        assert code == 413 and detail.startswith("Expected an image of at most 0.01 MB of voxels, got one of 0.0312 MB"), (
            suffix, detail)
    for suffix in (".png", ".tif"):
        path = write_image(Image(image.array[:, 0].astype(np.uint8).repeat(16, axis=1)), tmp_path / f"big{suffix}")
        code, detail = _post(client, f"x{suffix}", path.read_bytes())
        assert code == 413 and "of voxels" in detail, (suffix, detail)
    small = write_image(Image(np.zeros((1, 8, 8, 8), np.int16)), tmp_path / "small.nii.gz")  # a reference too
    big_ref = write_image(image, tmp_path / "ref.nii.gz")
    code, detail = _post(client, "x.nii.gz", small.read_bytes(), reference=("r.nii.gz", big_ref.read_bytes()))
    assert code == 413 and "'reference'" in detail
    assert _no_job_left(client)


def test_png_bomb_is_refused_from_its_header(client: TestClient) -> None:
    code, detail = _post(client, "x.png", png_bomb(20000, 20000))  # 381 MiB: under the limit, claimed by ~70 bytes
    assert code == 413 and "(a decompression bomb?)" in detail, detail
    code, detail = _post(client, "x.png", png_bomb())  # 858 MiB: over the limit
    assert code == 413 and "Expected an image of at most 512 MB of voxels" in detail, detail


def test_zip_ratio_is_checked_for_every_member(client: TestClient) -> None:
    bomb = zip_bomb()
    assert len(bomb) < 6000  # 4 MiB in ~4.5 KB: members of 1 MiB each, which the old check skipped
    code, detail = _post(client, "series.zip", bomb)
    assert code == 413 and "zip bomb" in detail, detail
    code, detail = _post(client, "series.zip", zip_bomb(members=64, size=64 * 1024))  # many small members
    assert code == 413 and "zip bomb" in detail, detail
    assert _no_job_left(client)


def test_dicom_headers_count_towards_the_limit(client: TestClient, shared_data: Path, tmp_path: Path) -> None:
    import pydicom

    path = copy_series(shared_data, tmp_path / "s", count=1) / "000010.dcm"
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 20000  # a header claiming 20000 frames of its rows x columns
    out = io.BytesIO()
    ds.save_as(out)
    code, detail = _post(client, "x.dcm", out.getvalue())
    assert code == 413 and "of voxels" in detail, detail
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", out.getvalue())
    code, detail = _post(client, "s.zip", buf.getvalue())
    assert code == 413 and "of voxels" in detail, detail
    assert _no_job_left(client)


@pytest.mark.parametrize(("name", "header"), [
    ("x.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: /etc/passwd\n\n"),
    ("x.mha", b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
              b"ElementDataFile = /etc/shadow\n"),
])
def test_headers_naming_a_server_file_are_refused(client: TestClient, name: str, header: bytes) -> None:
    code, detail = _post(client, name, header)
    assert code == 415 and "a header that names a separate data file" in detail


def _stream(flag: list[bool]) -> Iterator[bytes]:
    flag.append(True)  # consumed: the server read the body
    yield b'--b\r\nContent-Disposition: form-data; name="run"\r\n\r\nrun3d\r\n--b--\r\n'


def test_a_full_queue_is_refused_before_the_body_is_read(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_pending_jobs=1)
    jobs = client.app.state.medsight.jobs  # type: ignore[attr-defined]
    assert jobs.admit() is None  # an upload on its way takes the only place
    try:
        read: list[bool] = []
        r = client.post("/api/jobs", content=_stream(read), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 5
        assert r.json()["detail"].startswith("Expected at most 1 jobs waiting, got 1")
        assert not read  # refused on the headers alone
    finally:
        jobs.release()
    read = []
    r = client.post("/api/jobs", content=_stream(read), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and read  # admitted now: the body was read (and lacks a file)
    jobs.stop()  # a stopping server: 503
    r = client.post("/api/jobs", data={"run": "run3d"})
    assert r.status_code == 503 and "Retry-After" in r.headers
