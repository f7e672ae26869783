"""The input sanity check: modality, spacing and intensity against the training fingerprint; warning or refusal."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.core.image import Image, SourceInfo
from medsight.data.sanity import check_input, intensity_range
from medsight.errors import MedsightError
from medsight.io import read_image, write_image
from medsight.tasks.segmentation.plan import Plan
from medsight.transforms.config import Normalization


@pytest.fixture
def plan(seg3d_run: Path) -> Plan:
    return Plan.load(seg3d_run / "plans.json")


@pytest.fixture
def training_image(phantom3d: Path) -> Image:
    return read_image(phantom3d / "imagesTr" / "case_003_0000.nii.gz")


def test_a_training_like_case_passes(plan: Plan, training_image: Image, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="medsight"):
        assert check_input(training_image, plan, where="case_003", strict=True) == []
    assert not caplog.records


def test_each_finding(plan: Plan, training_image: Image) -> None:
    ct = dataclasses.replace(training_image, source=SourceInfo(format="dicom", modality="CT"))
    assert check_input(ct, plan, where="x") == ["modality CT, the model was trained on MR"]
    coarse = dataclasses.replace(training_image, spacing=(5.0, 1.0, 1.0))
    (finding,) = check_input(coarse, plan, where="x")
    assert finding.startswith("spacing 5 x 1 x 1 mm outside 0.5-2 x")
    (finding,) = check_input(training_image.with_array(np.zeros_like(training_image.array)), plan, where="x")
    assert finding == "MR is blank (constant intensity 0)"
    rescaled = training_image.with_array(training_image.array * 50.0)  # another bit depth or a missing rescale slope
    assert check_input(rescaled, plan, where="x") == []  # per-image z-score: the network never sees the scale
    ch = plan.fingerprint["full"]["channels"][0]
    ct_plan = plan.with_changes(normalization=[Normalization("ct", clip_low=ch["p00_5"], clip_high=ch["p99_5"], mean=ch["mean"],
                                                             std=ch["std"])])
    assert check_input(training_image, ct_plan, where="x") == []
    (finding,) = check_input(rescaled, ct_plan, where="x")
    assert finding.startswith("MR intensities [") and "vs training" in finding
    assert check_input(training_image.with_array(training_image.array + 2000.0), ct_plan, where="x")  # shifted


def test_strict_refuses_with_one_line(plan: Plan, training_image: Image) -> None:
    ct = dataclasses.replace(training_image, spacing=(9.0, 9.0, 9.0), source=SourceInfo(format="dicom", modality="CT"))
    with pytest.raises(MedsightError) as info:
        check_input(ct, plan, where="scan.dcm", strict=True)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("Expected an input like the training data, got modality CT")
    assert "spacing 9 x 9 x 9" in msg and "in scan.dcm" in msg and "--strict" in msg


def test_intensity_range_of_large_and_empty_arrays() -> None:
    big = np.arange(1_000_000, dtype=np.float32)
    lo, hi = intensity_range(big)
    assert abs(lo - 5_000) < 2_000 and abs(hi - 995_000) < 2_000
    assert all(np.isnan(v) for v in intensity_range(np.full(10, np.nan)))


def test_predict_warns_or_refuses(seg3d_run: Path, training_image: Image, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "odd.nii.gz"
    write_image(dataclasses.replace(training_image, spacing=(0.2, 0.2, 0.2)), odd)  # tiny voxels: a quick prediction
    assert main(["predict", str(seg3d_run), str(odd), str(tmp_path / "a"), "--no-tta", "--strict"]) == 2
    assert not (tmp_path / "a" / "odd.nii.gz").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsight: error: Expected an input like the training data, got spacing 0.2 x 0.2 x 0.2")
    assert main(["predict", str(seg3d_run), str(odd), str(tmp_path / "b"), "--no-tta"]) == 0
    assert (tmp_path / "b" / "odd.nii.gz").is_file()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "out of distribution" in line]
    assert len(warnings) == 1 and str(odd) in warnings[0] and "spacing 0.2 x 0.2 x 0.2" in warnings[0]
