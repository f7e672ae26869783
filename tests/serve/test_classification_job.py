"""A classification run behind the API: predictions CSV, class probabilities in the job, Grad-CAM volumes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from medsight.cli.app import main
from medsight.serve import ServeConfig, create_app

from .helpers import BASE_URL, TOKEN, submit, wait_for_job


@pytest.mark.slow
def test_classification_job_with_grad_cam(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, bright in (("normal", False), ("lesion", True)):
        (tmp_path / "cls" / name).mkdir(parents=True)
        for i in range(8):
            img = rng.normal(80, 12, (24, 24))
            if bright:
                y, x = rng.integers(2, 16, 2)
                img[y:y + 6, x:x + 6] += 90
            PILImage.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp_path / "cls" / name / f"{name}_{i}.png")
    assert main(["-q", "train", str(tmp_path / "cls"), "--out", str(tmp_path / "runs" / "cls"), "--epochs", "1",
                 "--model", "smallcnn"]) == 0
    with TestClient(create_app(ServeConfig(runs=(tmp_path / "runs",), work_dir=tmp_path / "work", token=TOKEN)),
                    base_url=BASE_URL, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        run = client.get("/api/runs").json()["runs"][0]
        assert run["task"] == "classification" and run["classes"] == ["lesion", "normal"] and "auc" in run["metrics"]
        job = wait_for_job(client, submit(client, "cls", tmp_path / "cls" / "lesion" / "lesion_0.png", explain="true")
                           .json()["id"])
        assert job["status"] == "done", job["message"]
        probs = job["classification"]["probabilities"]
        assert set(probs) == {"lesion", "normal"} and sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert job["classification"]["prediction"] in probs
        table = list(csv.DictReader(io.StringIO(client.get(f"/api/jobs/{job['id']}/files/predictions").text)))
        assert table[0]["file"] == f"{job['id']}.png"  # no server paths in what the client gets
        assert job["volumes"] == ["image", "heatmap", "heatmap_image"]
        heat = client.get(f"/api/jobs/{job['id']}/volumes/heatmap").json()
        assert heat["grid"] == "network" and heat["kind"] == "heatmap" and heat["max"] <= 1.0
        assert client.get(f"/api/jobs/{job['id']}/files/heatmap_png").content.startswith(b"\x89PNG")
