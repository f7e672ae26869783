"""DICOM-SEG and RTSTRUCT on series that reading reconstructs (uneven spacing, gantry tilt): written on the
recorded slices, each frame/contour referencing its own instance at its recorded position, and read back onto
the regular grid of ``read_image(series)``.

Tolerance of the round trip (regular grid -> recorded slices -> regular grid, nearest neighbour both ways):

* grid slices that coincide with a recorded slice come back exactly;
* a grid slice between recorded slices takes the labels of the nearest recorded slice, which were sampled from
  the grid slice nearest to it: so it equals the original labels of grid slice ``i - 1``, ``i`` or ``i + 1``
  (recorded steps here are at most 1.5 grid steps);
* a tilted series with equal steps (every grid slice on a recorded plane; the in-plane shift rounded to the
  nearest pixel both ways) comes back exactly for labels inside every recorded slice's footprint.

Measured (Dice against the label map drawn on the regular grid): uneven series, box 0.904 (of its six grid
slices the one at 14 mm, nearest to the recorded slice at 15 mm that samples the grid at 15 mm = outside the box,
comes back empty), ellipsoid 0.960; tilted series 1.0 for both. SEG and RTSTRUCT read back to the same voxels.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_factory import write_series

from medsight.core.image import Image
from medsight.io import read_image
from medsight.io.dicom import series_grid
from medsight.io.dicom_regrid import SeriesGrid
from medsight.io.dicom_seg import read_dicom_seg, write_dicom_seg
from medsight.io.rtstruct import read_rtstruct, write_rtstruct

#: Steps 2, 2, 2, 3, 3, 3 mm: the regular grid has a 2 mm step and 9 slices (0 to 16 mm); those at 8, 10, 14 and
#: 16 mm lie off the recorded slices.
UNEVEN = (0.0, 2.0, 4.0, 6.0, 9.0, 12.0, 15.0)


@pytest.fixture(scope="module", params=["uneven", "tilt"])
def series(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp(request.param)
    kwargs = {"offsets": UNEVEN} if request.param == "uneven" else {"n_slices": 8, "slice_step": 2.0, "tilt_deg": 15.0}
    write_series(folder, rows=32, columns=32, modality="CT", slope=1.0, intercept=-1024.0, **kwargs)
    return request.param, folder


def _box(image: Image) -> np.ndarray:
    lab = np.zeros(image.array.shape, dtype=np.uint8)
    lab[0, 2:8, 8:20, 10:22] = 1  # from 4 to 14 mm: faces between recorded slices of the uneven series
    lab[0, 3:5, 22:26, 4:8] = 2
    return lab


def _ellipsoid(image: Image) -> np.ndarray:
    zz, yy, xx = np.indices(image.shape)
    c = np.array(image.shape) / 2
    inside = ((zz - c[0]) / 3) ** 2 + ((yy - c[1]) / 9) ** 2 + ((xx - c[2]) / 8) ** 2 <= 1
    return inside.astype(np.uint8)[None]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _snapped(grid: SeriesGrid) -> list[int]:
    """Grid slices that lie on a recorded slice."""
    h = grid.regular.spacing[0]
    return [i for i in range(grid.regular.shape[0]) if np.min(np.abs(grid.offsets - i * h)) < 1e-3]


def _check_round_trip(kind: str, lab: np.ndarray, back: Image, image: Image, grid: SeriesGrid) -> None:
    assert back.same_geometry(image) and back.shape == image.shape
    got = back.array[0]
    if kind == "tilt":
        np.testing.assert_array_equal(got, lab[0])
        return
    snapped = _snapped(grid)
    assert snapped == [0, 1, 2, 3, 6]
    np.testing.assert_array_equal(got[snapped], lab[0][snapped])
    for i in range(image.shape[0]):
        assert any(np.array_equal(got[i], lab[0][j]) for j in (i - 1, i, i + 1) if 0 <= j < image.shape[0]), i


def _sources(folder: Path) -> dict[str, np.ndarray]:
    """SOPInstanceUID -> recorded ImagePositionPatient of the series' files."""
    out = {}
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = np.array([float(v) for v in ds.ImagePositionPatient])
    return out


@pytest.mark.parametrize("shape", ["box", "ellipsoid"])
def test_seg_on_recorded_slices_round_trip(series: tuple[str, Path], shape: str, tmp_path: Path) -> None:
    kind, folder = series
    image = read_image(folder)
    grid = series_grid(folder)
    assert grid.reconstructed and image.shape == grid.regular.shape != grid.recorded.shape
    lab = _box(image) if shape == "box" else _ellipsoid(image)
    out = write_dicom_seg(image.with_array(lab), folder, tmp_path / "seg.dcm")

    seg = hd.seg.segread(out)  # highdicom reads it; every frame references an instance at its own position
    sources = _sources(folder)
    frames = seg.PerFrameFunctionalGroupsSequence
    assert int(seg.NumberOfFrames) == len(frames) > 0
    for frame in frames:
        uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        assert uid in sources
        position = np.array([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient])
        np.testing.assert_allclose(position, sources[uid], atol=1e-4)
    assert {str(u) for _, _, u in seg.get_source_image_uids()} == set(sources)

    back = read_dicom_seg(out, folder)
    _check_round_trip(kind, lab, back, image, grid)
    dice = _dice(lab, back.array)
    expected = {("uneven", "box"): 0.90, ("uneven", "ellipsoid"): 0.95}.get((kind, shape), 1.0)
    assert dice >= expected, dice


def test_rtstruct_on_recorded_slices_round_trip(series: tuple[str, Path], tmp_path: Path) -> None:
    kind, folder = series
    image = read_image(folder)
    grid = series_grid(folder)
    lab = _box(image)
    out = write_rtstruct(image.with_array(lab), folder, tmp_path / "rt.dcm", label_names={"a": 1, "b": 2})

    ds = pydicom.dcmread(out)
    sources = _sources(folder)
    normal = np.asarray(grid.recorded.direction)[:, 0]
    listed = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert {str(i.ReferencedSOPInstanceUID) for i in listed.ContourImageSequence} == set(sources)
    count = 0
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            uid = str(contour.ContourImageSequence[0].ReferencedSOPInstanceUID)
            assert uid in sources
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            np.testing.assert_allclose((points - sources[uid]) @ normal, 0.0, atol=1e-3)  # in its recorded plane
            count += 1
    assert count > 0

    back, mapping = read_rtstruct(out, folder)
    assert mapping == {"a": 1, "b": 2}
    _check_round_trip(kind, lab, back, image, grid)
    seg = read_dicom_seg(write_dicom_seg(image.with_array(lab), folder, tmp_path / "seg.dcm"), folder)
    np.testing.assert_array_equal(back.array, seg.array)  # both objects read back to the same voxels


def test_label_map_on_recorded_slices_is_written_as_is(series: tuple[str, Path], tmp_path: Path) -> None:
    """A label map on the recorded slices (``read_dicom(grid="recorded")``) needs no resampling."""
    from medsight.io.dicom import read_dicom, to_regular_grid

    _, folder = series
    recorded = read_dicom(folder, grid="recorded")
    lab = np.zeros(recorded.array.shape, dtype=np.uint8)
    lab[0, 1:5, 6:18, 9:20] = 3
    on_recorded = recorded.with_array(lab)
    expected = to_regular_grid(on_recorded, folder).array
    seg = read_dicom_seg(write_dicom_seg(on_recorded, folder, tmp_path / "seg.dcm"), folder)
    np.testing.assert_array_equal(seg.array, expected)
    back, _ = read_rtstruct(write_rtstruct(on_recorded, folder, tmp_path / "rt.dcm"), folder)
    np.testing.assert_array_equal(back.array > 0, expected > 0)
