"""Tests for ``medsight info`` and ``medsight convert`` on the real DICOM series, NIfTI, NPZ and synthetic DICOM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.cli.app import main
from medsight.core.image import Image
from medsight.io import read_image, write_image
from medsight.io.dicom import read_dicom

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DICOM_SERIES = SHARED / "tcia_pgbm005_mr_t1post_dicom" / "volume"
BREASTMNIST = SHARED / "breastmnist" / "BreastMNIST.npz"
HIPPOCAMPUS = SHARED / "msd_task04_hippocampus_cropped" / "images" / "hippocampus_001.nii.gz"


from _factory import load_dicom_factory  # noqa: E402

dicom_factory = load_dicom_factory()


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsight: error: Expected "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# ---------------------------------------------------------------------------------------------------- info
def test_info_dicom_series_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", str(needs(DICOM_SERIES)))
    assert code == 0
    assert "24 x 320 x 260" in out
    assert "6.5 x 0.6875 x 0.6875" in out
    assert "slices           24" in out  # aligned columns
    assert "MR" in out and "T1post" in out and "uint16" in out and "0 .. 2461" in out


def test_info_dicom_series_json_in_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "medsight", "info", str(needs(DICOM_SERIES)), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["image"]["shape"] == [24, 320, 260]
    assert facts["image"]["spacing_mm"] == pytest.approx([6.5, 0.6875, 0.6875])
    assert facts["image"]["extra"]["num_slices"] == "24"
    assert len(facts["series"]) == 1 and facts["series"][0]["num_files"] == 24


def test_info_nifti(capsys: pytest.CaptureFixture[str]) -> None:
    path = needs(HIPPOCAMPUS)
    code, out, _ = run(capsys, "info", str(path))
    expected = read_image(path)
    assert code == 0
    assert "nifti" in out and " x ".join(str(s) for s in expected.shape) in out
    assert f"orientation   {expected.orientation}" in out


def test_info_npz_lists_arrays_and_label_counts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", str(needs(BREASTMNIST)))
    assert code == 0
    assert "train_images" in out and "(546, 28, 28)" in out and "uint8" in out
    assert "labels 0: 147, 1: 399" in out
    assert "test_labels" in out and "val_images" in out
    code, out, _ = run(capsys, "info", str(BREASTMNIST), "--json")
    arrays = {a["name"]: a for a in json.loads(out)["arrays"]}
    assert arrays["val_labels"]["label_counts"] == {"0": 21, "1": 57}


def test_info_lists_several_series_and_describes_the_chosen_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = dicom_factory.write_series(tmp_path / "study", prefix="a", description="t1", n_slices=3)
    b = dicom_factory.write_series(
        tmp_path / "study",
        prefix="b",
        description="ct",
        n_slices=4,
        modality="CT",
        slope=1.0,
        intercept=-1024.0,
        dtype=np.int16,
    )
    code, out, _ = run(capsys, "info", str(tmp_path / "study"))
    assert code == 0 and "2 series" in out and a.series_uid in out and b.series_uid in out
    assert "pass --series UID" in out and "shape" not in out
    code, out, _ = run(capsys, "info", str(tmp_path / "study"), "--series", b.series_uid)
    assert code == 0 and "4 x 8 x 6" in out and "float32" in out and "HU" in out


# ------------------------------------------------------------------------------------------------- convert
def test_convert_dicom_to_nifti_and_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "t1post.nii.gz"
    code, out, _ = run(capsys, "convert", str(needs(DICOM_SERIES)), str(out_path))
    assert code == 0 and "wrote" in out
    back = read_image(out_path)
    original = read_dicom(DICOM_SERIES)
    np.testing.assert_array_equal(back.array, original.array)
    assert back.same_geometry(original, atol=1e-4)


def test_convert_nifti_volume_to_png_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(1, 4, 5, 6) - 20.0
    src = write_image(Image(volume, spacing=(2.0, 1.0, 1.0)), tmp_path / "vol.nii.gz")
    code, out, _ = run(capsys, "convert", str(src), str(tmp_path / "png"), "--slices")
    assert code == 0 and "wrote 4 slices" in out and "mapped values -20..99 to 0..255" in out
    files = sorted((tmp_path / "png").glob("*.png"))
    assert [f.name for f in files] == [f"vol_{i:03d}.png" for i in range(4)]
    first = np.asarray(PILImage.open(files[0]))
    last = np.asarray(PILImage.open(files[-1]))
    assert first.dtype == np.uint8 and first.shape == (5, 6)
    assert first[0, 0] == 0 and last[-1, -1] == 255  # one range for the whole volume
    # a raster OUT with a 3D input is a slice pattern; the window maps level -/+ width/2
    code, out, _ = run(capsys, "convert", str(src), str(tmp_path / "win" / "ax.png"), "--window", "10,20")
    assert code == 0
    win = np.asarray(PILImage.open(tmp_path / "win" / "ax_001.png"))  # values 10..39
    assert win[0, 0] == 128 and win[-1, -1] == 255


def test_convert_2d_float_to_png_rescales_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_image(
        Image(np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 3, 4)), tmp_path / "map.nii.gz"
    )
    code, out, _ = run(capsys, "convert", str(src), str(tmp_path / "map.png"))
    assert code == 0 and "note: float32 values -1..1 mapped to 0..255" in out
    png = np.asarray(PILImage.open(tmp_path / "map.png"))
    assert png.dtype == np.uint8 and png.min() == 0 and png.max() == 255


def test_convert_dicom_folder_with_series_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dicom_factory.write_series(tmp_path / "study", prefix="a", n_slices=3)
    b = dicom_factory.write_series(
        tmp_path / "study",
        prefix="b",
        n_slices=4,
        modality="CT",
        slope=1.0,
        intercept=-1024.0,
        dtype=np.int16,
    )
    code, _, _ = run(
        capsys, "convert", str(tmp_path / "study"), str(tmp_path / "ct.nrrd"), "--series", b.series_uid
    )
    assert code == 0
    np.testing.assert_array_equal(read_image(tmp_path / "ct.nrrd").array[0], b.values)


# -------------------------------------------------------------------------------------------------- errors
def test_missing_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "info", str(tmp_path / "missing.nii.gz"))
    assert_one_line_error(code, err, "does not exist")


def test_zero_byte_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.dcm").write_bytes(b"")
    code, _, err = run(capsys, "info", str(tmp_path / "empty.dcm"))
    assert_one_line_error(code, err, "zero-byte", "empty.dcm")


def test_text_file_named_png_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "scan.png").write_text("this is not an image\n")
    code, _, err = run(capsys, "convert", str(tmp_path / "scan.png"), str(tmp_path / "out.nii.gz"))
    assert_one_line_error(code, err, "scan.png")


def test_two_series_without_choice_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = dicom_factory.write_series(tmp_path / "study", prefix="a", n_slices=2)
    b = dicom_factory.write_series(tmp_path / "study", prefix="b", n_slices=2)
    code, _, err = run(capsys, "convert", str(tmp_path / "study"), str(tmp_path / "out.nii.gz"))
    assert_one_line_error(code, err, "2 series", a.series_uid, b.series_uid, "--series UID")
    assert not (tmp_path / "out.nii.gz").exists()


def test_window_needs_a_raster_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_image(Image(np.zeros((1, 2, 3, 4), dtype=np.int16)), tmp_path / "v.nii.gz")
    code, _, err = run(capsys, "convert", str(src), str(tmp_path / "o.nii.gz"), "--window", "40,400")
    assert_one_line_error(code, err, "--window")
    code, _, err = run(capsys, "convert", str(src), str(tmp_path / "o.png"), "--window", "40,-1")
    assert_one_line_error(code, err, "positive width")


def test_series_option_needs_dicom_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_image(Image(np.zeros((1, 2, 3, 4), dtype=np.int16)), tmp_path / "v.nii.gz")
    code, _, err = run(capsys, "info", str(src), "--series", "1.2.3")
    assert_one_line_error(code, err, "--series only with DICOM input")


def test_info_describes_an_rtstruct_instead_of_refusing_it(capsys: pytest.CaptureFixture[str]) -> None:
    """pydicom's own RTSTRUCT was refused as a non-image; info now names its ROIs and what it references."""
    from pydicom.data import get_testdata_file

    assert main(["info", get_testdata_file("rtstruct.dcm")]) == 0
    out = capsys.readouterr().out
    assert "dicom-rtstruct" in out and "patient, Isocenter 1, Isocenter 2" in out
    assert "1.2.826.0.1.3680043.8.498.2010020400001.2.1.1" in out


def test_convert_places_seg_and_rtstruct_on_the_reference_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """convert SEG|RTSTRUCT OUT --reference SERIES: the label map on the series grid; overlaps and a missing series
    are one line each."""
    d = SHARED / "dicom_interop"
    if not d.is_dir():
        pytest.skip("../shared/data/dicom_interop is absent")
    series = d / "rt_utils" / "mock_data"
    assert main(["convert", str(series / "rt.dcm"), str(tmp_path / "rt.nii.gz"), "--reference", str(series)]) == 0
    labels, image = read_image(tmp_path / "rt.nii.gz"), read_image(series)
    assert labels.same_geometry(image) and int((labels.array > 0).sum()) == 1443
    capsys.readouterr()  # the first command's warning (rt.dcm's random frame of reference)
    assert main(["convert", str(series / "rt.dcm"), str(tmp_path / "x.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass the series folder" in err[0]
    seg, ct = d / "dcmqi" / "partial_overlaps.dcm", d / "dcmqi" / "ct-3slice"
    assert main(["convert", str(seg), str(tmp_path / "po.nii.gz"), "--reference", str(ct)]) == 2
    assert "--overlaps last" in capsys.readouterr().err
    assert main(["convert", str(seg), str(tmp_path / "po.nii.gz"), "--reference", str(ct), "--overlaps", "last"]) == 0
    assert read_image(tmp_path / "po.nii.gz").same_geometry(read_image(ct))


def test_convert_never_writes_over_its_input_and_keeps_an_existing_output(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.nii.gz"
    write_image(Image(np.arange(24, dtype=np.int16).reshape(1, 2, 3, 4)), src)
    before = src.read_bytes()
    assert main(["convert", str(src), str(src), "--overwrite"]) == 2
    assert src.read_bytes() == before and "the input itself" in capsys.readouterr().err
    out = tmp_path / "b.nii.gz"
    assert main(["convert", str(src), str(out)]) == 0
    assert main(["convert", str(src), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(src), str(out), "--overwrite"]) == 0


def test_info_counts_nan_voxels_the_reader_turned_into_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SimpleITK reads NaN/Inf as 0: info reports the count the file holds (issue 20: it said 0 beside the warning)."""
    import nibabel as nib

    data = np.ones((8, 8, 8), dtype=np.float32)
    data[:4] = np.nan  # 256 NaN
    data[4:, :4] = np.inf  # 128 Inf
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    code, out, err = run(capsys, "info", str(path))
    assert code == 0
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("non-finite")] == ["384"]
    code, out, _ = run(capsys, "info", str(path), "--json")
    assert code == 0 and json.loads(out)["image"]["non_finite_voxels"] == 384
