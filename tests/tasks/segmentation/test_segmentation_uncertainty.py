"""Uncertainty of segmentation runs: uncertainty.json from the validation folds, maps in the input's geometry, the CSV
and review flag of ``medsight predict --uncertainty`` (2D PNG and 3D NIfTI), ``medsight uncertainty RUN``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.engine.config import RunOptions
from medsight.io import read_image
from medsight.tasks.segmentation.pipeline import predict, train
from medsight.tasks.segmentation.uncertainty import map_path, uncertainty_csv

FAST = RunOptions(epochs=1, iterations_per_epoch=2, seed=0, device="cpu")
SCHEMA = {"measure": str, "goal": dict, "threshold": float, "n_failed": int, "cases": list}


def _train(dataset: Path, run: Path) -> Path:
    train(dataset, run, folds=[0, 1], config=FAST, base_filters=4)
    return run


@pytest.fixture
def run3d(phantom3d_dataset: Path, tmp_path: Path) -> Path:
    return _train(phantom3d_dataset, tmp_path / "run3d")


@pytest.mark.slow
def test_uncertainty_json_schema_and_validation_maps(run3d: Path) -> None:
    data = json.loads((run3d / "uncertainty.json").read_text())
    for key, kind in SCHEMA.items():
        assert isinstance(data[key], kind), key
    assert isinstance(data["goal"]["dice_below"], float)
    assert data["spearman"] is None or -1 <= data["spearman"] <= 1
    assert data["auroc"] is None or 0 <= data["auroc"] <= 1
    assert data["cases"] and {"case", "fold", "score", "dice", "review"} == set(data["cases"][0])
    assert data["n_failed"] == sum(c["dice"] < data["goal"]["dice_below"] for c in data["cases"])
    for c in data["cases"]:
        assert 0 <= c["score"] <= 1 and c["review"] == (c["score"] > data["threshold"]) and c["fold"] in ("0", "1")
        umap = read_image(run3d / f"fold_{c['fold']}" / "validation" / f"{c['case']}_uncertainty.nii.gz")
        label = read_image(run3d / f"fold_{c['fold']}" / "validation" / f"{c['case']}.nii.gz")
        assert umap.shape == label.shape and np.allclose(umap.spacing, label.spacing)
        assert np.allclose(umap.origin, label.origin) and np.allclose(umap.direction, label.direction)
        assert umap.array.dtype == np.float32 and 0 <= umap.array.min() and umap.array.max() <= 1
    # the maps beside the label maps are not taken for validation cases when the run is pooled again
    summary = json.loads((run3d / "summary.json").read_text())
    assert summary["cross_validation"]["cases"] == len(data["cases"])
    assert summary["uncertainty"]["threshold"] == data["threshold"]

    # recompute for another goal without retraining
    assert main(["-q", "uncertainty", str(run3d), "--dice-below", "1.0"]) == 0
    again = json.loads((run3d / "uncertainty.json").read_text())
    assert again["goal"]["dice_below"] == 1.0 and again["n_failed"] == sum(c["dice"] < 1.0 for c in again["cases"])


@pytest.mark.slow
def test_predict_uncertainty_3d_nifti_keeps_geometry_and_flags(run3d: Path, phantom3d_dataset: Path, tmp_path: Path) -> None:
    threshold = json.loads((run3d / "uncertainty.json").read_text())["threshold"]
    images = phantom3d_dataset / "imagesTr"
    out = tmp_path / "pred"
    assert main(["-q", "predict", str(run3d), str(images), str(out), "--uncertainty", "--no-tta"]) == 0
    rows = list(csv.DictReader((out / "uncertainty.csv").open()))
    inputs = sorted(images.iterdir())
    assert [r["case"] for r in rows] == [f.name.removesuffix("_0000.nii.gz") for f in inputs]
    for row, f in zip(rows, inputs):
        src = read_image(f)
        umap = read_image(out / f"{row['case']}_uncertainty.nii.gz")
        assert umap.array.shape[1:] == src.array.shape[1:]
        assert np.allclose(umap.spacing, src.spacing) and np.allclose(umap.origin, src.origin)
        assert np.allclose(umap.direction, src.direction)
        assert float(row["threshold"]) == pytest.approx(threshold)
        assert row["review"] == ("true" if float(row["score"]) > threshold else "false")
    # an existing CSV is kept without --overwrite
    assert main(["-q", "predict", str(run3d), str(images), str(out), "--uncertainty"]) == 2


@pytest.mark.slow
def test_predict_uncertainty_2d_png(phantom2d_dataset: Path, tmp_path: Path) -> None:
    run = _train(phantom2d_dataset, tmp_path / "run2d")
    image = phantom2d_dataset / "imagesTr" / "case_000_0000.png"
    written = predict(run, image, tmp_path / "out", uncertainty=True)
    umap_file = tmp_path / "out" / "case_000_0000_uncertainty.png"  # beside case_000_0000.png, the label map
    assert umap_file in written and (tmp_path / "out" / "uncertainty.csv") in written
    umap, src = read_image(umap_file), read_image(image)
    assert written.index(umap_file) == written.index(tmp_path / "out" / "case_000_0000.png") + 1
    assert umap.array.shape[1:] == src.array.shape[1:] and umap.array.dtype == np.uint8


def test_map_path_and_csv_without_threshold() -> None:
    assert map_path(Path("o/21_training.tif")) == Path("o/21_training_uncertainty.tif")
    assert map_path(Path("o/case.nii.gz")) == Path("o/case_uncertainty.nii.gz")
    text = uncertainty_csv([("a", 0.25, 0.2), ("b", 0.1, 0.2), ("c", 0.3, None)])
    rows = list(csv.DictReader(text.splitlines()))
    assert [(r["case"], r["review"]) for r in rows] == [("a", "true"), ("b", "false"), ("c", "")]
