"""``medsight predict --dicom-seg --rtstruct`` on real DICOM series, with a tiny model trained on phantoms.

The model is trained once for the module (one iteration: its predictions are arbitrary but not empty); the
DICOM objects must give back exactly what the NIfTI prediction holds: the SEG voxel for voxel, the RTSTRUCT
with Dice >= 0.99 per predicted structure (medsight's contours are exact: 1.0 is measured, see
medsight.io.rtstruct_write).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medsight.cli.app import main
from medsight.data.synthetic import write_phantom_dataset
from medsight.engine.config import RunOptions
from medsight.io import read_image
from medsight.io.dicom_seg import read_dicom_seg
from medsight.io.rtstruct import read_rtstruct, rtstruct_info
from medsight.tasks.segmentation.pipeline import train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of one fold, one iteration, 4 base filters, on 6 phantoms (labels structure_1, structure_2)."""
    root = tmp_path_factory.mktemp("tiny_run")
    dataset = write_phantom_dataset(root / "phantom3d", num_cases=6, shape=(24, 32, 28), seed=0)
    run = root / "run"
    train(dataset, run, folds=[0], config=RunOptions(epochs=1, iterations_per_epoch=1, seed=0, device="cpu"),
          base_filters=4)
    return run


def _cropped_series(source: Path, out: Path, *, rows: slice, cols: slice) -> Path:
    """A real uncompressed series cut to a smaller in-plane window, its geometry kept exact: each slice's
    ImagePositionPatient moves by the crop offset along the row and column directions."""
    out.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        ds = pydicom.dcmread(f)
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        shift = iop[:3] * dx * cols.start + iop[3:] * dy * rows.start
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float) + shift
        pixels = ds.pixel_array[rows, cols].copy()
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
        ds.save_as(out / f.name)
    return out


@pytest.mark.slow
def test_predict_writes_a_seg_for_a_dicom_series(tiny_run: Path, shared_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run
    slices = tmp_path / "slices"  # 4 of the 24 slices, cut to 64x64 pixels, keep the prediction short
    slices.mkdir()
    for name in ("000010.dcm", "000011.dcm", "000012.dcm", "000013.dcm"):
        shutil.copyfile(shared_data / "tcia_pgbm005_mr_t1post_dicom" / "volume" / name, slices / name)
    series = _cropped_series(slices, tmp_path / "volume", rows=slice(100, 164), cols=slice(90, 154))
    assert main(["-q", "predict", str(run), str(series), str(tmp_path / "pred"), "--no-tta",
                 "--dicom-seg"]) == 0
    seg_file = tmp_path / "pred" / "volume_seg.dcm"
    assert str(seg_file) in capsys.readouterr().out
    seg = hd.seg.segread(seg_file)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == read_image(series).source.series_uid
    nifti = read_image(tmp_path / "pred" / "volume.nii.gz")
    assert (read_dicom_seg(seg_file, series).array == nifti.array).all()
    # a non-DICOM input with --dicom-seg is a one-line error
    code = main(["predict", str(run), str(tmp_path / "pred" / "volume.nii.gz"), str(tmp_path / "p2.nii.gz"),
                 "--dicom-seg"])
    assert code == 2 and "DICOM series as input for --dicom-seg" in capsys.readouterr().err


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.mark.slow
def test_predict_writes_seg_and_rtstruct_for_a_ct_series(tiny_run: Path, shared_data: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """dcmqi's GE abdominal CT (3 slices, empty SpecificCharacterSet), cut to 64x64 pixels around the
    liver."""
    series = _cropped_series(shared_data / "dicom_interop" / "dcmqi" / "ct-3slice", tmp_path / "ct",
                             rows=slice(150, 214), cols=slice(60, 124))
    pred = tmp_path / "pred"
    assert main(["-q", "predict", str(tiny_run), str(series), str(pred), "--no-tta", "--dicom-seg",
                 "--rtstruct"]) == 0
    out = capsys.readouterr().out
    seg_file, rt_file = pred / "ct_seg.dcm", pred / "ct_rtstruct.dcm"
    assert str(seg_file) in out and str(rt_file) in out
    nifti = read_image(pred / "ct.nii.gz")
    assert (read_dicom_seg(seg_file, series).array == nifti.array).all()

    labels = json.loads((tiny_run / "plans.json").read_text())["labels"]
    structures = {name: int(value) for name, value in labels.items() if int(value) != 0}
    assert rtstruct_info(rt_file).roi_names == list(structures)  # every structure, found or not
    assert rtstruct_info(rt_file).referenced_series_uid == read_image(series).source.series_uid
    back, names = read_rtstruct(rt_file, series, roi_values=structures)
    assert back.same_geometry(nifti) and names == structures
    predicted = [name for name, value in structures.items() if (nifti.array == value).any()]
    assert predicted, "the tiny model predicted nothing: the RTSTRUCT check would be empty"
    for name in predicted:  # structures the model did not predict are ROIs without contours
        value = structures[name]
        assert _dice(back.array == value, nifti.array == value) >= 0.99, name

    # --rtstruct without a DICOM series input: one line, exit code 2
    code = main(["predict", str(tiny_run), str(pred / "ct.nii.gz"), str(tmp_path / "p2.nii.gz"),
                 "--rtstruct"])
    err = capsys.readouterr().err
    assert code == 2 and "DICOM series as input for --rtstruct" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "p2.nii.gz").exists()
