"""Tests for medsight.io.dicom: the real TCIA series, checked against SimpleITK and nibabel, and synthetic series."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import (
    PATIENT_ID,
    PATIENT_NAME,
    strip_pixel_data,
    truncate,
    write_color,
    write_multiframe,
    write_non_image,
    write_series,
    write_xray,
)
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from medsight.errors import MedsightError
from medsight.io import read_image, write_image
from medsight.io.dicom import find_dicom_files, is_dicom_file, list_series, read_dicom
from medsight.io.dicom_header import read_dataset, read_header
from medsight.io.dicom_pixels import read_native
from medsight.io.itk import from_sitk

SERIES_UID = "1.3.6.1.4.1.14519.5.2.1.4429.7055.276770677201759689184680286476"


@pytest.fixture(scope="module")
def real_series() -> Path:
    folder = (
        Path(__file__).resolve().parents[2].parent
        / "shared"
        / "data"
        / "tcia_pgbm005_mr_t1post_dicom"
        / "volume"
    )
    if not folder.is_dir():
        pytest.skip(f"real DICOM series not found at {folder}")
    return folder


def sitk_series(folder: Path, series_uid: str | None = None):
    """The independent second reader: SimpleITK's ImageSeriesReader, then from_sitk."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder), series_uid or "")
    reader.SetFileNames(files)
    return from_sitk(reader.Execute())


def assert_same_geometry(a, b, atol: float = 1e-4) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing, b.spacing, atol=atol)
    np.testing.assert_allclose(a.origin, b.origin, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)


# ------------------------------------------------------------------------------------------- the real series
def test_real_series_shape_spacing_and_source(real_series: Path) -> None:
    img = read_dicom(real_series)
    assert img.array.shape == (1, 24, 320, 260)
    assert img.array.dtype == np.uint16
    np.testing.assert_allclose(img.spacing, (6.5, 0.6875, 0.6875), atol=1e-5)
    assert img.source.format == "dicom" and img.source.modality == "MR"
    assert img.source.series_uid == SERIES_UID and img.source.description == "T1post"
    assert img.source.extra["num_slices"] == "24"
    assert img.source.extra["transfer_syntax"] == "Explicit VR Little Endian"
    assert "warnings" not in img.source.extra
    assert "PGBM" not in repr(img.source)  # the patient name/ID are never copied
    assert 0 <= img.array.min() and img.array.max() == 2461


def test_real_series_matches_simpleitk(real_series: Path) -> None:
    ours = read_dicom(real_series)
    ref = sitk_series(real_series)
    assert ref.array.dtype == ours.array.dtype
    np.testing.assert_array_equal(ours.array, ref.array)
    assert_same_geometry(ours, ref)


def test_real_series_nifti_roundtrip_and_nibabel_affine(real_series: Path, tmp_path: Path) -> None:
    img = read_dicom(real_series)
    out = write_image(img, tmp_path / "t1post.nii.gz")
    back = read_image(out)
    np.testing.assert_array_equal(back.array, img.array)
    assert_same_geometry(back, img)
    nii = nib.load(str(out))
    # nibabel: RAS, voxel axes (x, y, z) = our array axes reversed (col, row, slice).
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ nii.affine
    ours = img.affine
    np.testing.assert_allclose(lps[:3, [2, 1, 0]], ours[:3, :3], atol=1e-4)
    np.testing.assert_allclose(lps[:3, 3], ours[:3, 3], atol=1e-3)
    np.testing.assert_array_equal(np.asarray(nii.dataobj).transpose(2, 1, 0), img.array[0])


def test_real_series_listing_and_discovery(real_series: Path) -> None:
    series = list_series(real_series)
    assert len(series) == 1
    info = series[0]
    assert (info.series_uid, info.num_files, info.num_frames, info.rows, info.columns) == (
        SERIES_UID,
        24,
        24,
        320,
        260,
    )
    assert "T1post" in info.summary() and "24 files" in info.summary()
    assert len(find_dicom_files(real_series)) == 24
    assert len(find_dicom_files(real_series, limit=1)) == 1
    assert is_dicom_file(real_series / "000000.dcm")


def test_header_scan_matches_pydicom_conversion(real_series: Path) -> None:
    path = real_series / "000005.dcm"
    header = read_header(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert (
        header.series_uid == ds.SeriesInstanceUID
        and header.modality == "MR"
        and header.description == "T1post"
    )
    assert (header.rows, header.columns, header.bits_allocated, header.bits_stored) == (320, 260, 16, 12)
    assert header.instance == ds.InstanceNumber and header.series_number == 12
    np.testing.assert_allclose(header.position, [float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_allclose(header.orientation, [float(v) for v in ds.ImageOrientationPatient])
    assert header.pixel_spacing == (0.6875, 0.6875) and header.thickness == 6.5  # SpacingBetweenSlices first
    assert header.pixel_offset == path.stat().st_size - 320 * 260 * 2 - 12


# ------------------------------------------------------------------------------------------ synthetic series
def test_shuffled_ct_rescaled_to_hu_matches_simpleitk(tmp_path: Path) -> None:
    written = write_series(
        tmp_path / "ct",
        n_slices=6,
        modality="CT",
        slope=1.0,
        intercept=-1024.0,
        dtype=np.int16,
        shuffle=True,
        seed=3,
    )
    img = read_dicom(tmp_path / "ct")
    assert img.array.dtype == np.float32
    np.testing.assert_array_equal(img.array[0], written.values)  # HU, in position order
    assert img.array.min() == -1024.0
    assert "slope 1, intercept -1024 applied (float32, HU)" in img.source.extra["rescale"]
    ref = sitk_series(tmp_path / "ct")
    np.testing.assert_allclose(img.array, ref.array)
    assert_same_geometry(img, ref)
    np.testing.assert_allclose(img.spacing, (2.5, 0.8, 0.7))
    np.testing.assert_allclose(img.origin, (-20.0, -30.0, 10.0))


def test_fractional_slope_and_oblique_orientation_match_simpleitk(tmp_path: Path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    orientation = (c, s, 0.0, 0.0, c * 0 + np.cos(0.2), np.sin(0.2))
    row = np.array(orientation[:3])
    col = np.array(orientation[3:])
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    orientation = (*row, *col)
    written = write_series(
        tmp_path / "mr",
        n_slices=5,
        slope=0.5,
        intercept=3.0,
        orientation=orientation,
        slice_step=1.7,
        shuffle=True,
    )
    img = read_dicom(tmp_path / "mr")
    np.testing.assert_allclose(img.array[0], written.values, rtol=1e-6)
    ref = sitk_series(tmp_path / "mr")
    np.testing.assert_allclose(img.array, ref.array, rtol=1e-6)
    assert_same_geometry(img, ref)
    np.testing.assert_allclose(img.direction[:, 0], np.cross(row, col), atol=1e-5)


def test_identity_rescale_keeps_integer_dtype(tmp_path: Path) -> None:
    written = write_series(tmp_path / "s", dtype=np.int16, value_offset=-100, slope=1.0, intercept=0.0)
    img = read_dicom(tmp_path / "s")
    assert img.array.dtype == np.int16
    np.testing.assert_array_equal(img.array[0], written.stored)
    assert img.source.extra["rescale"] == "none (identity)"


def test_missing_slice_is_reconstructed_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Before issue 19 the stack was read with the median step (6 slices, those after the gap 2 mm off); now the
    # missing slice is interpolated so every slice sits at its recorded position (tests/io/test_irregular_series.py).
    written = write_series(tmp_path / "gap", offsets=[0.0, 2.0, 4.0, 8.0, 10.0, 12.0])
    with caplog.at_level(logging.WARNING, logger="medsight"):
        img = read_dicom(tmp_path / "gap")
    assert img.shape[0] == 7 and img.spacing[0] == pytest.approx(2.0)
    assert len(caplog.records) == 1 and "missing slices" in caplog.text and str(tmp_path / "gap") in caplog.text
    assert "between 14.00 and 18.00" in caplog.text and "reconstructed onto a regular grid" in caplog.text
    assert "missing slices" in img.source.extra["warnings"] and img.source.extra["recorded_slices"] == "6"
    np.testing.assert_array_equal(img.array[0, [0, 1, 2, 4, 5, 6]], written.values)
    np.testing.assert_allclose(img.array[0, 3], (written.values[2] + written.values[3]) / 2)


def test_recorded_grid_keeps_the_median_step_stack(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    written = write_series(tmp_path / "gap", offsets=[0.0, 2.0, 4.0, 8.0, 10.0, 12.0])
    with caplog.at_level(logging.WARNING, logger="medsight"):
        img = read_dicom(tmp_path / "gap", grid="recorded")
    assert img.shape[0] == 6 and img.spacing[0] == pytest.approx(2.0) and img.array.dtype == np.uint16
    np.testing.assert_array_equal(img.array[0], written.stored)
    assert "stacked as they are with the median step" in caplog.text and "up to 2 mm" in caplog.text


def test_uneven_spacing_is_reconstructed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_series(tmp_path / "uneven", offsets=[0.0, 2.0, 4.0, 6.3, 8.3, 10.3])
    with caplog.at_level(logging.WARNING, logger="medsight"):
        img = read_dicom(tmp_path / "uneven")
    assert "uneven slice spacing" in caplog.text and "between 14.00 and 16.30" in caplog.text
    assert "missing" not in caplog.text
    assert img.spacing[0] == pytest.approx(2.0) and img.shape[0] == 6
    assert "uneven" in img.source.extra["warnings"]


def test_rounding_jitter_below_tolerance_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_series(tmp_path / "jitter", offsets=[0.0, 2.004, 3.998, 6.003, 8.0])
    with caplog.at_level(logging.WARNING, logger="medsight"):
        img = read_dicom(tmp_path / "jitter")
    assert caplog.text == "" and "warnings" not in img.source.extra


def test_duplicate_positions_are_an_error(tmp_path: Path) -> None:
    write_series(tmp_path / "dup", offsets=[0.0, 2.0, 2.0, 4.0])
    with pytest.raises(
        MedsightError, match=r"one slice per position.*4 frames at 3 distinct positions.*4D series"
    ):
        read_dicom(tmp_path / "dup")


def test_gantry_tilt_warns_and_keeps_orthonormal_direction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_series(tmp_path / "tilt", n_slices=6, tilt_deg=15.0, modality="CT", slope=1.0, intercept=-1024.0)
    with caplog.at_level(logging.WARNING, logger="medsight"):
        img = read_dicom(tmp_path / "tilt")
    assert "gantry tilt of 15.00 degrees" in caplog.text and "tilt corrected" in caplog.text
    assert img.shape == (6, 8 + 5, 6)  # 5 steps of 2.5 mm * tan 15 deg = 3.35 mm = 4.19 rows of 0.8 mm: 5 more rows
    assert float(img.source.extra["gantry_tilt_deg"]) == pytest.approx(15.0, abs=0.01)
    np.testing.assert_allclose(img.direction.T @ img.direction, np.eye(3), atol=1e-6)
    assert img.spacing[0] == pytest.approx(2.5)


def test_missing_positions_fall_back_to_instance_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = write_series(tmp_path / "nopos", with_positions=False, shuffle=True, seed=5)
    with caplog.at_level(logging.WARNING, logger="medsight"):
        img = read_dicom(tmp_path / "nopos")
    np.testing.assert_array_equal(img.array[0], written.stored)
    assert "sorted by InstanceNumber" in caplog.text
    assert img.source.extra["sorted_by"] == "InstanceNumber"
    assert img.spacing[0] == pytest.approx(2.5)  # from SliceThickness


def test_two_series_need_a_choice(tmp_path: Path) -> None:
    a = write_series(tmp_path / "mixed", prefix="a", description="first", n_slices=3)
    b = write_series(tmp_path / "mixed", prefix="b", description="second", n_slices=4, modality="CT")
    with pytest.raises(MedsightError) as err:
        read_dicom(tmp_path / "mixed")
    message = str(err.value)
    assert "got 2 series" in message and a.series_uid in message and b.series_uid in message
    assert "'second'" in message and "4 files" in message and "--series UID" in message
    assert "\n" not in message
    img = read_dicom(tmp_path / "mixed", series_uid=b.series_uid)
    assert img.shape[0] == 4 and img.source.modality == "CT"
    with pytest.raises(MedsightError, match=rf"did you mean '{re.escape(b.series_uid)}'"):
        read_dicom(tmp_path / "mixed", series_uid=b.series_uid + "7")
    assert [s.num_files for s in list_series(tmp_path / "mixed")] in ([3, 4], [4, 3])


def test_non_dicom_hidden_and_dicomdir_files_are_skipped(tmp_path: Path) -> None:
    written = write_series(tmp_path / "s" / "sub", n_slices=3)
    (tmp_path / "s" / "README.txt").write_text("exported from PACS\n")
    (tmp_path / "s" / ".DS_Store").write_bytes(b"\0" * 300)
    (tmp_path / "s" / "DICOMDIR").write_bytes(written.paths[0].read_bytes())
    (tmp_path / "s" / "notes.dcm.json").write_text("{}")
    assert len(find_dicom_files(tmp_path / "s")) == 3
    img = read_dicom(tmp_path / "s")
    np.testing.assert_array_equal(img.array[0], written.stored)


def test_file_without_preamble_is_found(tmp_path: Path) -> None:
    written = write_series(tmp_path / "raw", n_slices=2)
    ds = pydicom.dcmread(written.paths[0])
    raw = tmp_path / "raw" / "no_preamble"
    ds.preamble = None
    del ds.file_meta
    ds.save_as(raw, enforce_file_format=False, implicit_vr=True, little_endian=True)
    written.paths[0].unlink()
    assert is_dicom_file(raw) and not is_dicom_file(tmp_path / "raw")
    img = read_dicom(tmp_path / "raw")
    np.testing.assert_array_equal(img.array[0], written.stored)


def test_truncated_file_is_named(tmp_path: Path) -> None:
    written = write_series(tmp_path / "t", n_slices=3)
    truncate(written.paths[1], drop_bytes=20)
    with pytest.raises(MedsightError, match=rf"{re.escape(written.paths[1].name)}.*re-copy or re-export"):
        read_dicom(tmp_path / "t")


def test_header_truncated_file_is_named(tmp_path: Path) -> None:
    written = write_series(tmp_path / "t", n_slices=3)
    data = written.paths[2].read_bytes()
    written.paths[2].write_bytes(data[:300])
    with pytest.raises(MedsightError, match=rf"in {re.escape(str(written.paths[2]))}"):
        read_dicom(tmp_path / "t")


def test_file_without_pixel_data_is_named(tmp_path: Path) -> None:
    written = write_series(tmp_path / "np", n_slices=3)
    strip_pixel_data(written.paths[0])
    with pytest.raises(MedsightError, match=rf"without PixelData.*{re.escape(written.paths[0].name)}"):
        read_dicom(tmp_path / "np")


def test_non_image_objects_in_the_series_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = write_series(tmp_path / "s", n_slices=3)
    write_non_image(tmp_path / "s" / "report.dcm", series_uid=written.series_uid, study_uid=written.study_uid)
    with caplog.at_level(logging.WARNING, logger="medsight"):
        img = read_dicom(tmp_path / "s")
    np.testing.assert_array_equal(img.array[0], written.stored)
    assert "skipped 1 non-image object" in caplog.text and "report.dcm" in img.source.extra["warnings"]
    only_report = tmp_path / "sr"
    only_report.mkdir()
    write_non_image(only_report / "report.dcm", series_uid="1.2.3.4", study_uid="1.2.3")
    with pytest.raises(MedsightError, match="only non-image objects"):
        read_dicom(only_report)


def test_mixed_image_sizes_are_an_error(tmp_path: Path) -> None:
    a = write_series(tmp_path / "m", n_slices=3, prefix="a")
    write_series(
        tmp_path / "m",
        n_slices=1,
        rows=4,
        columns=4,
        series_uid=a.series_uid,
        prefix="b",
        study_uid=a.study_uid,
        origin=(-20.0, -30.0, 40.0),
    )
    with pytest.raises(MedsightError, match=r"one image size per series, got 8x6 \(3 files.*4x4 \(1 files"):
        read_dicom(tmp_path / "m")


def test_enhanced_multiframe_sorts_frames_and_rescales(tmp_path: Path) -> None:
    written = write_multiframe(tmp_path / "enh.dcm", n_frames=4, frame_order=[2, 0, 3, 1])
    img = read_dicom(tmp_path / "enh.dcm")
    assert img.array.shape == (1, 4, 8, 6) and img.array.dtype == np.float32
    np.testing.assert_array_equal(img.array[0], written.values)
    np.testing.assert_allclose(img.spacing, (3.0, 0.9, 0.8))
    np.testing.assert_allclose(img.origin, written.positions[0])
    assert img.orientation == "PIL"  # coronal: slices go posterior, rows go inferior, columns go left
    # the folder reader gives the same volume
    np.testing.assert_array_equal(read_dicom(tmp_path).array, img.array)


def test_multiframe_without_per_frame_geometry_is_stacked(tmp_path: Path) -> None:
    written = write_multiframe(tmp_path / "cine.dcm", n_frames=3, per_frame_geometry=False)
    img = read_dicom(tmp_path / "cine.dcm")
    assert img.array.shape == (1, 3, 8, 6) and img.array.dtype == np.uint16
    np.testing.assert_array_equal(img.array[0], written.stored)
    np.testing.assert_allclose(img.spacing, (3.0, 0.9, 0.8))
    assert img.source.extra["sorted_by"] == "frame order" and "warnings" not in img.source.extra


def test_xray_is_2d_with_imager_pixel_spacing(tmp_path: Path) -> None:
    path, stored = write_xray(tmp_path / "cxr.dcm")
    img = read_dicom(path)
    assert img.array.shape == (1, 10, 12) and img.array.dtype == np.uint16
    np.testing.assert_array_equal(img.array[0], stored)
    assert img.spacing == (0.15, 0.14)
    np.testing.assert_array_equal(img.direction, np.eye(2)[:, ::-1])
    assert img.source.extra["pixel_spacing_source"] == "ImagerPixelSpacing"
    assert img.source.modality == "DX"


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    path, stored = write_xray(tmp_path / "cr.dcm", photometric="MONOCHROME1", bits_stored=12, modality="CR")
    img = read_dicom(path)
    np.testing.assert_array_equal(img.array[0], 4095 - stored.astype(np.int64))
    assert img.array.dtype == np.uint16
    assert "inverted" in img.source.extra["monochrome1"]


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_color_images_have_three_rgb_channels(tmp_path: Path, photometric: str) -> None:
    path, rgb = write_color(tmp_path / "sc.dcm", photometric=photometric)
    img = read_dicom(path)
    assert img.array.shape == (3, 6, 5) and img.array.dtype == np.uint8
    tol = 0 if photometric == "RGB" else 3  # YBR_FULL round trip is rounded
    np.testing.assert_allclose(img.array.astype(int), np.moveaxis(rgb, -1, 0).astype(int), atol=tol)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda u: u.name)
def test_compressed_series_decode_like_uncompressed(tmp_path: Path, syntax) -> None:
    from pydicom.pixels import get_encoder

    if not get_encoder(syntax).is_available:
        pytest.skip(f"no encoder for {syntax.name}")
    written = write_series(
        tmp_path / "c",
        n_slices=3,
        rows=32,
        columns=40,
        modality="CT",
        dtype=np.int16,
        value_offset=-50,
        slope=1.0,
        intercept=-1024.0,
        transfer_syntax=syntax,
    )
    img = read_dicom(tmp_path / "c")
    np.testing.assert_array_equal(img.array[0], written.values)
    assert img.source.extra["transfer_syntax"] == syntax.name


def test_missing_codec_names_transfer_syntax_and_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.pixels.decoders.base import Decoder

    if not __import__("pydicom.pixels").pixels.get_encoder(JPEGLSLossless).is_available:
        pytest.skip("no JPEG-LS encoder")
    write_series(tmp_path / "c", n_slices=2, transfer_syntax=JPEGLSLossless)
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(MedsightError, match=r"JPEG-LS Lossless.*pip install \"medsight\[codecs\]\""):
        read_dicom(tmp_path / "c")


def test_native_reader_matches_pydicom(tmp_path: Path, real_series: Path) -> None:
    files = [real_series / "000000.dcm"]
    files += write_series(tmp_path / "u16", n_slices=1).paths
    files += write_series(tmp_path / "i16", n_slices=1, dtype=np.int16, value_offset=-30).paths
    files += write_series(tmp_path / "u8", n_slices=1, dtype=np.uint8).paths
    files += write_multiframe(tmp_path / "mf.dcm").paths
    rgb_path, rgb = write_color(tmp_path / "rgb.dcm")
    files.append(rgb_path)
    ds = pydicom.dcmread(rgb_path)
    ds.PlanarConfiguration = 1
    ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    ds.save_as(tmp_path / "planar.dcm", enforce_file_format=True)
    files.append(tmp_path / "planar.dcm")
    ds = pydicom.dcmread(files[1])
    ds.preamble = None
    del ds.file_meta
    ds.save_as(tmp_path / "implicit_raw", enforce_file_format=False, implicit_vr=True, little_endian=True)
    files.append(tmp_path / "implicit_raw")
    for path in files:
        header = read_header(path)
        fast = read_native(header)
        assert fast is not None, path
        reference = read_dataset(path, stop_before_pixels=False).pixel_array
        np.testing.assert_array_equal(fast.reshape(reference.shape), reference)
    np.testing.assert_array_equal(read_native(read_header(tmp_path / "planar.dcm"))[0], rgb)
    compressed = write_series(tmp_path / "rle", n_slices=1, transfer_syntax=RLELossless)
    assert read_native(read_header(compressed.paths[0])) is None


def test_single_slice_with_position_stays_3d(tmp_path: Path) -> None:
    written = write_series(tmp_path / "one", n_slices=1, modality="CT", slope=1.0, intercept=-1024.0)
    img = read_dicom(written.paths[0])
    assert img.array.shape == (1, 1, 8, 6)
    np.testing.assert_allclose(img.origin, written.positions[0])
    ref = from_sitk(sitk.ReadImage(str(written.paths[0])))
    np.testing.assert_allclose(img.array, ref.array)
    np.testing.assert_allclose(img.origin, ref.origin, atol=1e-5)


def test_read_image_dispatches_folders_and_files(tmp_path: Path) -> None:
    written = write_series(tmp_path / "s", n_slices=3)
    np.testing.assert_array_equal(read_image(tmp_path / "s").array[0], written.stored)
    assert read_image(written.paths[0]).shape == (1, 8, 6)


def test_no_patient_identifiers_in_source(tmp_path: Path) -> None:
    write_series(tmp_path / "s", n_slices=2)
    text = repr(read_dicom(tmp_path / "s").source) + repr(list_series(tmp_path / "s"))
    assert PATIENT_NAME not in text and PATIENT_ID not in text and "19000101" not in text


def test_memory_guard_runs_before_stacking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(tmp_path / "s", n_slices=3)
    monkeypatch.setattr("medsight.core.guard.available_memory_bytes", lambda: 100)
    with pytest.raises(MedsightError, match="fits in memory"):
        read_dicom(tmp_path / "s")


def test_user_errors_for_paths(tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match="does not exist"):
        read_dicom(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsightError, match="no DICOM files"):
        read_dicom(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MedsightError, match="Expected a DICOM file"):
        read_dicom(tmp_path / "notes.txt")
