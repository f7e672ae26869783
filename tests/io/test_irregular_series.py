"""Irregular DICOM series (gantry tilt, uneven spacing, missing slices) reconstructed onto a regular grid, label maps
moved between the grid and the recorded slices, and the comparison with dcm2niix on edited real slices."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_factory import copy_series, write_series

from medsight.core.image import Image
from medsight.errors import MedsightError
from medsight.io import read_image
from medsight.io.dicom import read_dicom, series_grid, to_original_slices, to_regular_grid

CT = Path("dicom_interop/totalsegmentator/example_ct_dicom")  # 20 slices, 2 mm apart, 512^2, 0.977 mm, JPEG 2000
MR = Path("tcia_pgbm005_mr_t1post_dicom/volume")  # 24 oblique slices, 6.5 mm apart, 320 x 260, 0.6875 mm


def world(image: Image, index: np.ndarray) -> np.ndarray:
    """LPS mm of array indices ``(..., 3)``."""
    a = image.affine
    return index @ a[:3, :3].T + a[:3, 3]


def continuous_index(image: Image, points: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(image.affine)
    return points @ inv[:3, :3].T + inv[:3, 3]


# ------------------------------------------------------------------------------------------------ synthetic series
def test_tilt_places_every_recorded_voxel_at_its_position(tmp_path: Path) -> None:
    # A tilt of atan(0.8 / 2.5): each slice drifts exactly one row (0.8 mm) per 2.5 mm step, so no in-plane
    # interpolation is needed and every recorded value must sit, unchanged, at its recorded position.
    tilt = math.degrees(math.atan(0.8 / 2.5))
    written = write_series(tmp_path / "tilt", n_slices=5, tilt_deg=tilt, modality="CT", slope=1.0, intercept=-1024.0)
    img = read_dicom(tmp_path / "tilt")
    assert img.shape == (5, 8 + 4, 6) and img.array.dtype == np.float32
    np.testing.assert_allclose(img.direction.T @ img.direction, np.eye(3), atol=1e-9)
    row, col = np.asarray(written.orientation[:3]), np.asarray(written.orientation[3:])
    for k in range(5):
        r, c = np.meshgrid(np.arange(8), np.arange(6), indexing="ij")
        points = written.positions[k] + r[..., None] * 0.8 * col + c[..., None] * 0.7 * row
        idx = continuous_index(img, points.reshape(-1, 3))
        np.testing.assert_allclose(idx, np.rint(idx), atol=1e-4)  # on the grid's lattice
        i = np.rint(idx).astype(int)
        np.testing.assert_array_equal(img.array[0, i[:, 0], i[:, 1], i[:, 2]], written.values[k].ravel())
    assert img.array[0, 0, 8:].max() == written.values.min()  # rows no slice covers: the series' minimum


def test_fractional_tilt_is_bilinear_in_plane(tmp_path: Path) -> None:
    # Stored values are linear in the row index, so bilinear sampling reproduces them exactly inside each slice.
    written = write_series(tmp_path / "tilt", n_slices=6, tilt_deg=12.0, rows=10, columns=4)
    img = read_dicom(tmp_path / "tilt")
    grid = series_grid(tmp_path / "tilt")
    for k in range(6):
        shift = grid.shifts[k]
        rows = np.arange(int(np.ceil(shift[0])), int(np.floor(shift[0])) + 10)  # grid rows inside slice k
        expected = written.values[k, 0, 0] + (rows - shift[0]) * 4
        np.testing.assert_allclose(img.array[0, k, rows, 0], expected, rtol=1e-6, atol=1e-3)


def test_uneven_spacing_interpolates_linearly_along_the_normal(tmp_path: Path) -> None:
    offsets = [0.0, 2.0, 4.0, 6.0, 9.0, 12.0, 15.0]  # a 2 mm slab then a 3 mm slab
    written = write_series(tmp_path / "slabs", offsets=offsets, modality="CT", slope=1.0, intercept=0.0)
    img = read_dicom(tmp_path / "slabs")
    assert img.spacing[0] == pytest.approx(2.0) and img.shape[0] == 9  # the finest common step, 0..16 mm
    v = written.values
    np.testing.assert_array_equal(img.array[0, [0, 1, 2, 3, 6]], v[[0, 1, 2, 3, 5]])  # 0, 2, 4, 6, 12 mm
    np.testing.assert_allclose(img.array[0, 4], v[3] + (v[4] - v[3]) * 2 / 3, rtol=1e-6)  # 8 mm: 6 -> 9
    np.testing.assert_allclose(img.array[0, 5], v[4] + (v[5] - v[4]) * 1 / 3, rtol=1e-6)  # 10 mm: 9 -> 12
    np.testing.assert_array_equal(img.array[0, 8], v[6])  # 16 mm: beyond 15 by less than h/2: the last slice
    np.testing.assert_allclose(img.origin, written.positions[0], atol=1e-6)


def test_one_missing_slice_is_bridged_wider_gaps_are_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_series(tmp_path / "gap", offsets=[0.0, 2.0, 4.0, 10.0, 12.0, 14.0])  # 6 mm = 3 x the median step
    with pytest.raises(MedsightError) as err:
        read_image(tmp_path / "gap", strict=True)
    message = str(err.value)
    assert "\n" not in message and "6 mm between 4.00 and 10.00" in message and "--allow-irregular" in message
    with caplog.at_level(logging.WARNING, logger="medsight"):
        img = read_image(tmp_path / "gap", strict=False)
    assert img.shape[0] == 8 and "bridged by interpolation (widest 6 mm)" in caplog.text
    assert len(caplog.records) == 1


def test_mixed_orientations_are_refused_in_one_line(tmp_path: Path) -> None:
    a = write_series(tmp_path / "mixed", n_slices=3, prefix="a")
    write_series(tmp_path / "mixed", n_slices=2, prefix="b", series_uid=a.series_uid, study_uid=a.study_uid,
                 orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    with pytest.raises(MedsightError, match=r"one slice orientation per series, got 2") as err:
        read_image(tmp_path / "mixed")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kw",
    [
        {"tilt_deg": math.degrees(math.atan(0.8 / 2.5))},
        {"tilt_deg": -math.degrees(math.atan(0.8 / 2.5)), "offsets": [0.0, 2.5, 5.0, 10.0, 12.5]},
        {"offsets": [0.0, 2.5, 5.0, 10.0, 12.5]},
        {"offsets": [0.0, 2.0, 4.0, 6.5, 9.0, 11.5]},
    ],
    ids=["tilt", "negative-tilt-and-gap", "missing", "uneven"],
)
def test_labels_on_original_slices_round_trip(tmp_path: Path, kw: dict) -> None:
    write_series(tmp_path / "s", **kw)
    grid = series_grid(tmp_path / "s")
    n, h, w = grid.recorded.shape
    labels = np.random.default_rng(0).integers(0, 4, size=(1, n, h, w)).astype(np.uint8)
    on_grid = to_regular_grid(Image(labels), grid)
    image = read_dicom(tmp_path / "s")
    assert on_grid.same_geometry(image) and on_grid.array.dtype == np.uint8
    back = to_original_slices(on_grid, tmp_path / "s")
    np.testing.assert_array_equal(back.array, labels)
    assert back.shape == (n, h, w)


def test_prediction_goes_back_to_the_recorded_slices_by_position(tmp_path: Path) -> None:
    written = write_series(tmp_path / "s", offsets=[0.0, 2.0, 4.0, 7.0, 10.0, 12.0, 14.0])
    image = read_dicom(tmp_path / "s")
    # a "prediction": label 1 where the voxel lies more than 8.5 mm above the first slice
    z = world(image, np.stack(np.meshgrid(*[np.arange(s) for s in image.shape], indexing="ij"), -1))[..., 2]
    prediction = image.with_array((z > written.positions[0, 2] + 8.5).astype(np.uint8)[None])
    back = to_original_slices(prediction, series_grid(tmp_path / "s"))
    recorded_z = written.positions[:, 2] - written.positions[0, 2]
    np.testing.assert_array_equal(back.array[0].max(axis=(1, 2)), (recorded_z > 8.5).astype(np.uint8))


def test_series_grid_names_the_recorded_slices(tmp_path: Path) -> None:
    written = write_series(tmp_path / "s", offsets=[0.0, 2.0, 4.0, 7.0], shuffle=True)
    grid = series_grid(tmp_path / "s")
    assert grid.reconstructed and len(grid.sop_instances) == 4
    assert [Path(f).name for f in grid.files] == [p.name for p in written.paths]
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in written.paths]
    assert list(grid.sop_instances) == uids
    np.testing.assert_allclose(grid.positions, written.positions, atol=1e-5)


def test_regular_series_is_not_resampled(tmp_path: Path) -> None:
    written = write_series(tmp_path / "s", n_slices=4, dtype=np.int16)
    img = read_dicom(tmp_path / "s")
    assert img.array.dtype == np.int16 and "reconstruction" not in img.source.extra
    np.testing.assert_array_equal(img.array[0], written.stored)
    labels = Image(np.ones((1, 4, 8, 6), np.uint8))
    assert to_regular_grid(labels, tmp_path / "s").same_geometry(img)


def test_wrong_label_shape_is_one_line(tmp_path: Path) -> None:
    write_series(tmp_path / "s", offsets=[0.0, 2.0, 5.0])
    with pytest.raises(MedsightError, match=r"label map on the recorded slices \(3 x 8 x 6\), got shape 2 x 8 x 6"):
        to_regular_grid(Image(np.zeros((1, 2, 8, 6), np.uint8)), tmp_path / "s")


# --------------------------------------------------------------------------------------- real slices vs dcm2niix
def _dcm2niix(folder: Path, out: Path, suffix: str) -> nib.Nifti1Image:
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix not installed (Debian package dcm2niix)")
    out.mkdir()
    subprocess.run([exe, "-o", str(out), "-f", "v", "-z", "n", "-b", "n", str(folder)], check=True,
                   capture_output=True, timeout=120)
    return nib.load(str(out / f"v{suffix}.nii"))


def _against(ours: Image, theirs: nib.Nifti1Image, step: int = 3) -> tuple[float, float, float, bool]:
    """Our reconstruction against a dcm2niix NIfTI.

    Returns:
        (the largest distance in mm between a dcm2niix voxel centre and our nearest voxel centre, at the corners of
        dcm2niix's grid -- the mapping is affine, so a lattice that drifts from ours shows there; the correlation of the intensities at dcm2niix's
        voxels, every ``step``-th row and column; their largest absolute difference; whether every dcm2niix voxel
        lies inside our grid).
    """
    data = np.asarray(theirs.dataobj, dtype=np.float64)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ theirs.affine  # nibabel: RAS
    to_ours = np.linalg.inv(ours.affine) @ lps
    corners = np.stack(np.meshgrid(*[[0, s - 1] for s in data.shape], indexing="ij"), -1).reshape(-1, 3)
    idx = corners @ to_ours[:3, :3].T + to_ours[:3, 3]
    offset = np.linalg.norm((idx - np.rint(idx)) @ (ours.direction * np.asarray(ours.spacing)).T, axis=1).max()
    inside = bool(np.all((np.rint(idx) >= 0) & (np.rint(idx) < np.asarray(ours.shape))))
    sub = data[::step, ::step, :]
    ijk = np.stack(np.meshgrid(*[np.arange(0, s, d) for s, d in zip(data.shape, (step, step, 1))], indexing="ij"), -1)
    n = np.rint(ijk.reshape(-1, 3) @ to_ours[:3, :3].T + to_ours[:3, 3]).astype(int)
    keep = np.all((n >= 0) & (n < np.asarray(ours.shape)), axis=1)
    mine = ours.array[0][n[keep, 0], n[keep, 1], n[keep, 2]].astype(np.float64)
    their = sub.reshape(-1)[keep]
    return float(offset), float(np.corrcoef(mine, their)[0, 1]), float(np.abs(mine - their).max()), inside


@pytest.mark.slow
def test_missing_ct_slices_match_dcm2niix(shared_data: Path, tmp_path: Path) -> None:
    # drop slices 5 and 6: a 6 mm gap (3 x the 2 mm step), so only lenient reading bridges it
    copy_series(shared_data / CT, tmp_path / "gap", keep=[k for k in range(20) if k not in (5, 6)],
                ascending_instances=True)
    ours = read_image(tmp_path / "gap", strict=False)
    theirs = _dcm2niix(tmp_path / "gap", tmp_path / "out", "_Eq_1")
    offset, corr, diff, inside = _against(ours, theirs)
    assert ours.shape == (20, 512, 512) and theirs.shape[2] == 19  # dcm2niix drops the last slice
    assert offset < 1e-3 and inside  # every dcm2niix voxel centre is one of ours
    assert corr > 0.99999 and diff <= 0.5  # dcm2niix rounds to int16


@pytest.mark.slow
def test_uneven_ct_spacing_matches_dcm2niix(shared_data: Path, tmp_path: Path) -> None:
    offsets = [2.0 * k for k in range(10)] + [18.0 + 3.0 * k for k in range(1, 11)]  # 2 mm then 3 mm steps
    copy_series(shared_data / CT, tmp_path / "uneven", offsets=offsets, ascending_instances=True)
    ours = read_image(tmp_path / "uneven")
    theirs = _dcm2niix(tmp_path / "uneven", tmp_path / "out", "_Eq_1")
    offset, corr, diff, inside = _against(ours, theirs)
    assert ours.shape == (25, 512, 512) and ours.spacing[0] == pytest.approx(2.0)
    assert offset < 1e-3 and inside and corr > 0.99999 and diff <= 0.5


@pytest.mark.slow
def test_tilted_ct_matches_dcm2niix_grid(shared_data: Path, tmp_path: Path) -> None:
    copy_series(shared_data / CT, tmp_path / "tilt", tilt_deg=20.0, ascending_instances=True)
    ours = read_image(tmp_path / "tilt")
    corrected = _dcm2niix(tmp_path / "tilt", tmp_path / "out", "_Tilt_1")
    offset, corr, _, inside = _against(ours, corrected)
    assert ours.shape == (20, 527, 512) and corrected.shape == (512, 527, 20)  # the same widened grid
    assert offset < 1e-3 and inside
    assert corr > 0.98  # measured 0.991: dcm2niix's corrected data sits ~0.85 rows from its own header
    # dcm2niix's uncorrected output keeps the recorded slices with a sheared affine: the ground truth positions
    sheared = nib.load(str(tmp_path / "out" / "v.nii"))
    offset0, corr0, diff0, _ = _against(ours, nib.Nifti1Image(np.asarray(sheared.dataobj)[:, :, :1], sheared.affine))
    assert offset0 < 1e-3 and diff0 == 0.0  # the first slice: no shift, identical voxels at identical positions
    offset_all, corr_all, _, _ = _against(ours, sheared)
    assert offset_all <= 0.5 * 0.9765625 + 1e-3 and corr_all > 0.99  # nearest voxel within half a pixel


def test_command_line_refuses_a_wide_gap_and_allow_irregular_bridges_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medsight.cli.app import main
    from medsight.io import set_strict_reading

    write_series(tmp_path / "gap", offsets=[0.0, 2.0, 4.0, 10.0, 12.0, 14.0])
    try:
        assert main(["convert", str(tmp_path / "gap"), str(tmp_path / "x.nii.gz")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pass --allow-irregular" in err[0] and not (tmp_path / "x.nii.gz").exists()
        assert main(["--allow-irregular", "convert", str(tmp_path / "gap"), str(tmp_path / "x.nii.gz")]) == 0
        assert "8 x 8 x 6" in capsys.readouterr().out
    finally:
        set_strict_reading(True)
    back = read_image(tmp_path / "x.nii.gz")
    np.testing.assert_allclose(back.affine, read_image(tmp_path / "gap", strict=False).affine, atol=1e-5)
