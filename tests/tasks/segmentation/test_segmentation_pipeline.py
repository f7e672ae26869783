"""Plan -> preprocess -> train a few steps -> predict -> evaluate, on tiny synthetic phantoms."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.core.image import Image
from medsight.engine.config import RunOptions
from medsight.io import read_image, write_image
from medsight.tasks.segmentation.pipeline import plan_dataset, predict, train
from medsight.tasks.segmentation.predictor import Predictor

FAST = RunOptions(epochs=1, iterations_per_epoch=2, seed=0, device="cpu")


def _train(dataset: Path, run: Path, folds=(0,), config: RunOptions = FAST) -> dict:
    return train(dataset, run, folds=list(folds), config=config, base_filters=4)


def test_plan_writes_editable_json(phantom3d_dataset: Path, tmp_path: Path) -> None:
    plan = plan_dataset(phantom3d_dataset, tmp_path / "run", base_filters=4)
    data = json.loads((tmp_path / "run" / "plans.json").read_text())
    assert data["dims"] == 3 and plan.dims == 3
    assert data["labels"] == {"background": 0, "structure_1": 1, "structure_2": 2}
    assert data["normalization"][0]["scheme"] == "zscore"  # MR channel: per-image z-score
    assert all(p % s == 0 for p, s in zip(plan.patch_size, np.prod(plan.network.strides, axis=0)))


def test_plan_dataset_passes_the_first_stage_choice(phantom3d_dataset: Path, tmp_path: Path) -> None:
    """3D plans keep a full-resolution first stage unless asked; asked, the first stage pools (2D's default)."""
    default = plan_dataset(phantom3d_dataset, tmp_path / "default", base_filters=4)
    strided = plan_dataset(phantom3d_dataset, tmp_path / "strided", base_filters=4, strided_first_stage=True)
    assert default.network.strides[0] == [1, 1, 1]
    assert 2 in strided.network.strides[0] and len(strided.network.strides) == len(default.network.strides) - 1
    assert json.loads((tmp_path / "strided" / "plans.json").read_text())["network"]["strides"] == strided.network.strides


def test_train_predict_evaluate_3d(phantom3d_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    summary = _train(phantom3d_dataset, run)
    fold = run / "fold_0"
    for name in ("checkpoint_best.pt", "checkpoint_last.pt", "metrics.csv", "curves.png"):
        assert (fold / name).is_file(), name
    rows = list(csv.DictReader((fold / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"]
    assert set(rows[0]) >= {"epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds"}
    assert np.isfinite(float(rows[0]["train_loss"]))
    assert (run / "splits.json").is_file() and (run / "summary.json").is_file() and (run / "report.html").is_file()
    assert summary["trained_now"]["0"]["validation"]["cases"] >= 1
    # predict a folder in the input's format and geometry
    out = tmp_path / "pred"
    written = predict(run, phantom3d_dataset / "imagesTr", out, tta=False)
    assert len(written) == 6 and all(w.name.endswith(".nii.gz") for w in written)
    src = read_image(phantom3d_dataset / "imagesTr" / "case_000_0000.nii.gz")
    pred = read_image(out / "case_000.nii.gz")
    assert pred.same_geometry(src) and set(np.unique(pred.array)) <= {0, 1, 2}
    assert main(["evaluate", str(out), str(phantom3d_dataset / "labelsTr")]) == 0


def test_prediction_keeps_oblique_geometry(phantom3d_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(phantom3d_dataset, run)
    src = read_image(phantom3d_dataset / "imagesTr" / "case_001_0000.nii.gz")
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    odd = Image(src.array, spacing=(2.0, 0.7, 0.9), origin=(-12.5, 30.0, 7.0), direction=direction)
    write_image(odd, tmp_path / "odd.nii.gz")
    predict(run, tmp_path / "odd.nii.gz", tmp_path / "odd_pred.nii.gz", tta=True)
    pred = read_image(tmp_path / "odd_pred.nii.gz")
    assert pred.shape == odd.shape
    assert pred.same_geometry(odd)


def test_2d_png_in_png_out(phantom2d_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(phantom2d_dataset, run)
    out = tmp_path / "pred"
    written = predict(run, phantom2d_dataset / "imagesTr" / "case_000_0000.png", out, tta=True)
    assert written[0].suffix == ".png"
    assert read_image(written[0]).shape == (64, 64)


def test_resume_continues_epochs(phantom3d_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(phantom3d_dataset, run)
    cfg = RunOptions(epochs=2, iterations_per_epoch=2, seed=0, device="cpu", resume=True)
    _train(phantom3d_dataset, run, config=cfg)
    rows = list(csv.DictReader((run / "fold_0" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]


def test_same_seed_same_losses(phantom3d_dataset: Path, tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        _train(phantom3d_dataset, tmp_path / name, config=RunOptions(epochs=1, iterations_per_epoch=3, seed=7, device="cpu"))
        losses.append(next(csv.DictReader((tmp_path / name / "fold_0" / "metrics.csv").open()))["train_loss"])
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_fold_ensemble_and_cli(phantom3d_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["-q", "train", str(phantom3d_dataset), "--fold", "0,1", "--out", str(run), "--epochs", "1",
                 "--iterations", "2", "--base-filters", "4"]) == 0
    predictor = Predictor.from_run(run, tta=False)
    assert len(predictor.models) == 2
    assert main(["-q", "predict", str(run), str(phantom3d_dataset / "imagesTr"), str(tmp_path / "p"), "--no-tta"]) == 0
    assert len(list((tmp_path / "p").glob("*.nii.gz"))) == 6


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and "Traceback" not in err[0]
    assert main(["predict", str(tmp_path), str(tmp_path), str(tmp_path / "o")]) == 2
    assert main(["train", str(tmp_path), "--time-budget", "soon"]) == 2


def _cropped_series(source: Path, out: Path, *, slices: slice, rows: slice, cols: slice) -> Path:
    """A real series cut to fewer slices and a smaller in-plane window, its geometry kept exact: each slice's
    ImagePositionPatient moves by the crop offset along the row and column directions."""
    import pydicom

    out.mkdir(parents=True)
    datasets = [pydicom.dcmread(f) for f in source.iterdir()]
    normal = np.cross(*np.asarray(datasets[0].ImageOrientationPatient, dtype=float).reshape(2, 3))
    datasets.sort(key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=float))))
    for ds in datasets[slices]:
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float) + iop[:3] * dx * cols.start + iop[3:] * dy * rows.start
        pixels = ds.pixel_array[rows, cols].copy()
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
        ds.save_as(out / f"{ds.SOPInstanceUID}.dcm")
    return out


def test_predict_dicom_series_writes_nifti_in_its_geometry(phantom3d_dataset: Path, tmp_path: Path, shared_data: Path) -> None:
    run = tmp_path / "run"
    _train(phantom3d_dataset, run)
    series = _cropped_series(shared_data / "tcia_pgbm005_mr_t1post_dicom" / "volume", tmp_path / "series",
                             slices=slice(8, 16), rows=slice(100, 164), cols=slice(90, 154))
    written = predict(run, series, tmp_path / "out", tta=False)
    assert len(written) == 1 and written[0].name.endswith(".nii.gz")
    src = read_image(series)
    pred = read_image(written[0])
    assert pred.shape == (8, 64, 64)
    assert pred.same_geometry(src)
    full = read_image(shared_data / "tcia_pgbm005_mr_t1post_dicom" / "volume")
    assert np.allclose(src.origin, full.origin + full.direction @ (np.asarray([8, 100, 90]) * np.asarray(full.spacing)), atol=1e-3)


def test_predict_never_writes_over_its_input_and_keeps_existing_outputs(phantom2d_dataset: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`predict RUN folder/scan.png folder` used to replace scan.png with its label map; an earlier prediction was
    replaced without a word."""
    run = tmp_path / "run"
    _train(phantom2d_dataset, run)
    image = sorted((phantom2d_dataset / "imagesTr").iterdir())[0]
    folder = tmp_path / "folder"
    folder.mkdir()
    scan = folder / image.name
    scan.write_bytes(image.read_bytes())
    before = scan.read_bytes()
    assert main(["-q", "predict", str(run), str(scan), str(folder), "--no-tta"]) == 2
    assert scan.read_bytes() == before
    assert main(["-q", "predict", str(run), str(scan), str(scan), "--no-tta", "--overwrite"]) == 2
    assert scan.read_bytes() == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("the input itself" in e for e in err)
    out = tmp_path / "out"
    assert main(["-q", "predict", str(run), str(scan), str(out), "--no-tta"]) == 0
    assert main(["-q", "predict", str(run), str(scan), str(out), "--no-tta"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["-q", "predict", str(run), str(scan), str(out), "--no-tta", "--overwrite"]) == 0
