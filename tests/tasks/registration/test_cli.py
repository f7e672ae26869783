"""``medsight register`` and ``medsight warp``: outputs, label warping, the warp round trip and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medsight.cli.app import main
from medsight.core.image import Image
from medsight.io import read_image, write_image

from .phantoms import euler, moved, smooth_phantom

SIZE = 28


@pytest.fixture
def pair(tmp_path: Path) -> dict[str, Path]:
    fixed, fixed_lab = smooth_phantom(SIZE)
    true = euler((0.0, 3.0, 5.0), (1.5, -1.0, 2.0), (SIZE - 1) / 2)
    paths = {"fixed": tmp_path / "fixed.nii.gz", "moving": tmp_path / "moving.nii.gz",
             "fixed_labels": tmp_path / "fixed_labels.nii.gz", "moving_labels": tmp_path / "moving_labels.nii.gz"}
    write_image(fixed, paths["fixed"])
    write_image(moved(fixed, true), paths["moving"])
    write_image(fixed_lab, paths["fixed_labels"])
    write_image(moved(fixed_lab, true, labels=True), paths["moving_labels"])
    return paths


def _arr(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_register_writes_transform_image_labels_and_report(pair: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["register", str(pair["fixed"]), str(pair["moving"]), str(out), "--stages", "rigid",
                 "--moving-labels", str(pair["moving_labels"]), "--fixed-labels", str(pair["fixed_labels"])]) == 0
    assert "Dice per label" in capsys.readouterr().out
    report = json.loads((out / "registration.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["rigid"] and report["transform"] == "transform.tfm"
    assert all(np.isfinite(s["metric_value"]) and s["seconds"] >= 0 for s in report["stages"])
    from medsight.tasks.registration.evaluate import label_dice

    before = np.mean(list(label_dice(_arr(pair["moving_labels"]), _arr(pair["fixed_labels"]), [3, 7]).values()))
    assert report["folding_fraction"] == 0.0 and report["mean_dice"] > before + 0.2, (before, report["dice"])
    registered = read_image(out / "registered.nii.gz")
    assert registered.same_geometry(read_image(pair["fixed"]))
    labels = read_image(out / "registered_labels.nii.gz")
    assert labels.array.dtype == np.uint8 and set(np.unique(labels.array)) <= {0, 3, 7}
    # medsight warp with the saved transform reproduces the labels register wrote
    assert main(["warp", str(out / "transform.tfm"), str(pair["moving_labels"]), str(tmp_path / "w.nii.gz"),
                 "--reference", str(pair["fixed"]), "--labels"]) == 0
    assert np.array_equal(_arr(tmp_path / "w.nii.gz"), _arr(out / "registered_labels.nii.gz"))


def test_bspline_transform_round_trips_through_h5(pair: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["-q", "register", str(pair["fixed"]), str(pair["moving"]), str(out), "--stages", "rigid,bspline",
                 "--metric", "meansquares", "--iterations", "5", "--grid-spacing", "14"]) == 0
    assert (out / "transform.h5").is_file() and not (out / "transform.tfm").exists()
    assert main(["warp", str(out / "transform.h5"), str(pair["moving"]), str(tmp_path / "w.nii.gz"),
                 "--reference", str(pair["fixed"])]) == 0
    assert np.allclose(_arr(tmp_path / "w.nii.gz"), _arr(out / "registered.nii.gz"), atol=1e-3)


def test_warp_keeps_label_values_and_dtype(tmp_path: Path) -> None:
    lab = np.zeros((1, 20, 20, 20), np.int16)
    lab[0, 5:12, 6:14, 4:15] = 300
    lab[0, 12:16, 6:10, 8:12] = 12
    write_image(Image(lab), tmp_path / "lab.nii.gz")
    tfm = euler((7.0, 0.0, -4.0), (0.7, 0.3, -0.4), 9.5)
    sitk.WriteTransform(tfm, str(tmp_path / "t.tfm"))
    assert main(["warp", str(tmp_path / "t.tfm"), str(tmp_path / "lab.nii.gz"), str(tmp_path / "w.nii.gz"), "--labels"]) == 0
    out = read_image(tmp_path / "w.nii.gz")
    assert out.array.dtype == np.int16 and set(np.unique(out.array)) == {0, 12, 300}


def test_missing_file_is_a_one_line_error(pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register", str(pair["fixed"]), str(tmp_path / "nope.nii.gz"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medsight: error: Expected an existing") and "nope.nii.gz" in err and "\n" not in err
    assert main(["warp", str(tmp_path / "missing.tfm"), str(pair["moving"]), str(tmp_path / "w.nii.gz")]) == 2
    assert "missing.tfm" in capsys.readouterr().err


def test_2d_against_3d_is_a_one_line_error(pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(Image(np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)), tmp_path / "flat.nii.gz")
    assert main(["register", str(pair["fixed"]), str(tmp_path / "flat.nii.gz"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "same number of dimensions" in err and "3D and 2D" in err and "\n" not in err
    sitk.WriteTransform(euler((0, 0, 0), (1, 0, 0)), str(tmp_path / "t.tfm"))
    assert main(["warp", str(tmp_path / "t.tfm"), str(tmp_path / "flat.nii.gz"), str(tmp_path / "w.nii.gz")]) == 2
    assert "3D transform" in capsys.readouterr().err


def test_bad_stage_name_suggests_the_right_one(pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register", str(pair["fixed"]), str(pair["moving"]), str(tmp_path / "o"), "--stages", "rigid,bsplin"]) == 2
    assert "did you mean 'bspline'" in capsys.readouterr().err
