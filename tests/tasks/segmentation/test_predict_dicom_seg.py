"""``medsight predict --dicom-seg`` on the real DICOM series, with a tiny model trained on phantoms."""

from __future__ import annotations

import shutil
from pathlib import Path

import highdicom as hd
import pytest

from medsight.cli.app import main
from medsight.engine.config import RunOptions
from medsight.io import read_image
from medsight.io.dicom_seg import read_dicom_seg
from medsight.tasks.segmentation.pipeline import train


@pytest.mark.slow
def test_predict_writes_a_seg_for_a_dicom_series(phantom3d_dataset: Path, shared_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(phantom3d_dataset, run, folds=[0], config=RunOptions(epochs=1, iterations_per_epoch=1, seed=0,
                                                                 device="cpu"), base_filters=4)
    series = tmp_path / "volume"  # 4 of the 24 slices keep the prediction short
    series.mkdir()
    for name in ("000010.dcm", "000011.dcm", "000012.dcm", "000013.dcm"):
        shutil.copyfile(shared_data / "tcia_pgbm005_mr_t1post_dicom" / "volume" / name, series / name)
    assert main(["-q", "predict", str(run), str(series), str(tmp_path / "pred"), "--no-tta", "--dicom-seg"]) == 0
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
