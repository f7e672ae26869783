"""The REST API with FastAPI's TestClient: runs, upload -> job -> download, volumes and slices, run reports."""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from medsight.io import read_image

from .helpers import copy_series, submit, wait_for_job

IMAGE3D = "imagesTr/case_000_0000.nii.gz"
LABEL3D = "labelsTr/case_000.nii.gz"


def test_runs_list_shows_tasks_labels_metrics_and_reports(client: TestClient) -> None:
    runs = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(runs) == {"run2d", "run3d"}
    r3 = runs["run3d"]
    assert r3["task"] == "segmentation" and r3["dims"] == 3 and r3["folds"] == ["fold_0"]
    assert r3["labels"] == {"background": 0, "structure_1": 1, "structure_2": 2}
    assert 0.0 <= r3["metrics"]["mean_dice"] <= 1.0 and "report.html" in r3["reports"]
    one = client.get("/api/runs/run3d").json()
    assert one["cases"] and {"case_id", "fold", "has_image", "has_reference"} <= set(one["cases"][0])
    assert one["cases"][0]["has_image"] and one["cases"][0]["has_reference"]
    report = client.get("/api/runs/run3d/files/report.html")
    assert report.status_code == 200 and b"<html" in report.content[:500].lower()
    assert "script-src" not in report.headers["content-security-policy"]  # no scripts allowed in reports
    missing = client.get("/api/runs/run3x")
    assert missing.status_code == 404 and "did you mean 'run3d'" in missing.json()["detail"]


def test_upload_nifti_then_job_then_downloads_and_volumes(client: TestClient, serve_runs: dict[str, Path]) -> None:
    ds = serve_runs["ds3d"]
    resp = submit(client, "run3d", ds / IMAGE3D, reference=ds / LABEL3D)
    assert resp.status_code == 202, resp.text
    assert resp.headers["location"] == f"/api/jobs/{resp.json()['id']}"
    job = wait_for_job(client, resp.json()["id"])
    assert job["status"] == "done", job["message"]
    assert set(job["outputs"]) == {"labels", "probabilities", "quantification"}
    assert job["volumes"] == ["image", "reference", "labels", "probabilities"]
    base = f"/api/jobs/{job['id']}"
    # the label map comes back as NIfTI in the input's geometry
    labels = client.get(f"{base}/files/labels")
    assert labels.status_code == 200 and labels.content[:2] == b"\x1f\x8b"
    out = Path(client.app.state.medsight.work_dir) / "check.nii.gz"  # type: ignore[attr-defined]
    out.write_bytes(labels.content)
    assert read_image(out).same_geometry(read_image(ds / IMAGE3D))
    table = list(csv.DictReader(io.StringIO(client.get(f"{base}/files/quantification").text)))
    assert table and {"label", "volume_ml", "centroid_x_mm"} <= set(table[0])
    probs = np.load(io.BytesIO(client.get(f"{base}/files/probabilities").content))["probabilities"]
    assert probs.shape == (3, 24, 32, 28)
    # volumes: geometry JSON + compact bytes the viewer decodes
    meta = client.get(f"{base}/volumes/image").json()
    assert meta["shape"] == [24, 32, 28] and meta["kind"] == "image" and len(meta["direction"]) == 3
    raw = client.get(f"{base}/volumes/image/data", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    data = np.frombuffer(raw.content, dtype=meta["dtype"]).reshape(meta["channels"], *meta["shape"])
    assert np.allclose(data * meta["scale"], read_image(ds / IMAGE3D).array, atol=1e-4)
    zipped = client.get(f"{base}/volumes/labels/data", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and len(zipped.content) == 24 * 32 * 28
    ref = client.get(f"{base}/volumes/reference").json()
    assert ref["kind"] == "labels" and ref["labels"]["1"]["name"] == "structure_1"
    prob = client.get(f"{base}/volumes/probabilities").json()
    assert prob["channels"] == 3 and prob["dtype"] == "uint8" and prob["scale"] == pytest.approx(1 / 255)


def test_slice_png_with_window_presets_and_planes(client: TestClient, serve_runs: dict[str, Path]) -> None:
    job = wait_for_job(client, submit(client, "run3d", serve_runs["ds3d"] / IMAGE3D).json()["id"])
    base = f"/api/jobs/{job['id']}/volumes"
    sizes = {}
    for axis in ("axial", "coronal", "sagittal"):
        r = client.get(f"{base}/image/slice.png", params={"axis": axis, "index": 5})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        sizes[axis] = PILImage.open(io.BytesIO(r.content)).size  # (width, height)
        assert r.headers["x-medsight-pixel-spacing"] == "4,4"
    assert sizes == {"axial": (28, 32), "coronal": (28, 24), "sagittal": (32, 24)}
    lung = client.get(f"{base}/image/slice.png", params={"window": "lung"}).content
    narrow = client.get(f"{base}/image/slice.png", params={"level": 300, "width": 50}).content
    assert lung != narrow
    labels = np.asarray(PILImage.open(io.BytesIO(client.get(f"{base}/labels/slice.png").content)))
    assert labels.ndim == 3 and labels.shape[-1] == 3  # coloured label map
    bad = client.get(f"{base}/image/slice.png", params={"window": "lugn"})
    assert bad.status_code == 400 and "did you mean 'lung'" in bad.json()["detail"]
    out_of_range = client.get(f"{base}/image/slice.png", params={"index": 99})
    assert out_of_range.status_code == 400 and out_of_range.json()["detail"].startswith("Expected a slice index in 0..23")
    not_int = client.get(f"{base}/image/slice.png", params={"index": "x"})
    assert not_int.status_code == 422 and not_int.json()["detail"].startswith("Expected a valid 'index'")


def test_png_upload_gives_png_labels(client: TestClient, serve_runs: dict[str, Path]) -> None:
    image = serve_runs["ds2d"] / "imagesTr" / "case_000_0000.png"
    job = wait_for_job(client, submit(client, "run2d", image).json()["id"])
    assert job["status"] == "done", job["message"]
    r = client.get(f"/api/jobs/{job['id']}/files/labels")
    assert r.content.startswith(b"\x89PNG") and r.headers["content-disposition"].endswith('.png"')
    assert PILImage.open(io.BytesIO(r.content)).size == (48, 48)
    assert client.get(f"/api/jobs/{job['id']}/volumes/image").json()["shape"] == [48, 48]


def test_job_with_a_wrong_image_fails_with_a_clear_message(client: TestClient, serve_runs: dict[str, Path]) -> None:
    job = wait_for_job(client, submit(client, "run3d", serve_runs["ds2d"] / "imagesTr" / "case_000_0000.png").json()["id"])
    assert job["status"] == "failed"
    # the requirement that was not met, an error id for the server log, and nothing found in the input or a path
    assert job["message"].startswith("Expected a 3D image as in training, got an input that does not meet it (error id ")
    assert job["error_id"] and job["error_id"] in job["message"]
    assert "/" not in job["message"] and ".png" not in job["message"] and "2D" not in job["message"]
    r = client.get(f"/api/jobs/{job['id']}/files/labels")
    assert r.status_code == 409 and r.json()["detail"].startswith("Expected a job that succeeded, got a failed job")
    r = client.get(f"/api/jobs/{job['id']}/volumes/image")  # the input can still be looked at
    assert r.status_code == 200 and r.json()["shape"] == [48, 48]


def test_server_side_file_under_a_root(client: TestClient) -> None:
    resp = client.post("/api/jobs", data={"run": "run3d", "path": IMAGE3D, "reference_path": LABEL3D})
    assert resp.status_code == 202, resp.text
    job = wait_for_job(client, resp.json()["id"])
    assert job["status"] == "done" and job["input"]["kind"] == "server file" and job["input"]["has_reference"]
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404


def test_run_validation_case_volumes(client: TestClient) -> None:
    case = client.get("/api/runs/run3d").json()["cases"][0]["case_id"]
    base = f"/api/runs/run3d/cases/{case}/volumes"
    for name, kind in (("image", "image"), ("labels", "labels"), ("reference", "labels"), ("probabilities", "probabilities")):
        meta = client.get(f"{base}/{name}").json()
        assert meta["kind"] == kind and meta["shape"] == [24, 32, 28], name
    assert client.get(f"{base}/reference/slice.png", params={"axis": "coronal"}).status_code == 200
    assert client.get(f"{base}/nothing").status_code == 404
    assert client.get("/api/runs/run3d/cases/case_999/volumes/image").status_code == 404


@pytest.mark.slow
def test_zipped_dicom_series_gives_nifti_and_dicom_seg(client: TestClient, shared_data: Path, tmp_path: Path) -> None:
    import highdicom as hd

    series = copy_series(shared_data, tmp_path / "series")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(series.iterdir()):
            zf.write(f, f"PATIENT_NAME_FOLDER/{f.name}")
        zf.writestr("README.txt", "not a DICOM file")
    resp = client.post("/api/jobs", data={"run": "run3d"}, files={"file": ("series.zip", buf.getvalue())})
    assert resp.status_code == 202, resp.text
    assert resp.json()["input"]["kind"] == "zipped DICOM series (4 files)"
    job = wait_for_job(client, resp.json()["id"])
    assert job["status"] == "done", job["message"]
    assert {"labels", "dicom_seg"} <= set(job["outputs"])
    base = f"/api/jobs/{job['id']}"
    assert client.get(f"{base}/files/labels").content[:2] == b"\x1f\x8b"  # DICOM in -> NIfTI out
    seg = hd.seg.segread(io.BytesIO(client.get(f"{base}/files/dicom_seg").content))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == read_image(series).source.series_uid
    assert client.get(f"{base}/volumes/image").json()["modality"] == "MR"


def test_openapi_schema_lists_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/runs", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/files/{role}",
            "/api/jobs/{job_id}/volumes/{name}/slice.png"} <= paths
    assert "multipart/form-data" in schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 404  # the interactive pages would load scripts from a CDN


def test_viewer_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "medsight viewer" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing loaded from another host
    js = client.get("/static/viewer.js")
    assert js.status_code == 200 and "/api/jobs" in js.text and "https://" not in js.text


def test_data_endpoint_decodes_after_gzip(make_client: Callable[..., TestClient], serve_runs: dict[str, Path]) -> None:
    client = make_client()
    case = client.get("/api/runs/run2d").json()["cases"][0]["case_id"]
    volume = client.app.state.medsight.volumes  # type: ignore[attr-defined]
    r = client.get(f"/api/runs/run2d/cases/{case}/volumes/image/data")
    cached = next(iter(volume._items.values()))
    assert gzip.decompress(cached.gzip_bytes) == r.content == cached.data.tobytes()
