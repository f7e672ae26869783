"""A validation case's voxel uncertainty map is listed and served as a viewer volume; it is never a case itself."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from medsight.io import read_image, write_image


def test_uncertainty_map_is_a_case_volume(serve_runs: dict[str, Path], make_client: Callable[..., TestClient],
                                          tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(serve_runs["run3d"], runs / "run3d")
    pred = sorted((runs / "run3d" / "fold_0" / "validation").glob("*.nii.gz"))[0]
    labels = read_image(pred)
    umap = np.linspace(0, 1, labels.array.size, dtype=np.float32).reshape(labels.array.shape)
    write_image(labels.with_array(umap), pred.parent / pred.name.replace(".nii.gz", "_uncertainty.nii.gz"))
    client = make_client(runs=(runs,))
    cases = client.get("/api/runs/run3d").json()["cases"]
    assert not any(c["case_id"].endswith("_uncertainty") for c in cases)
    case = next(c for c in cases if c["case_id"] == pred.name.removesuffix(".nii.gz"))
    assert case["has_uncertainty"] and not any(c["has_uncertainty"] for c in cases if c is not case)
    meta = client.get(f"/api/runs/run3d/cases/{case['case_id']}/volumes/uncertainty").json()
    assert meta["kind"] == "uncertainty" and meta["shape"][-3:] == list(labels.shape)
    data = client.get(f"/api/runs/run3d/cases/{case['case_id']}/volumes/uncertainty/data")
    assert data.status_code == 200 and len(data.content) == labels.array.size  # uint8, scale 1/255
