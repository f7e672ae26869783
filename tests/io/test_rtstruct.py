"""RTSTRUCT read and write: rt-utils' real files, pydicom's test file, and round trips on real CT series.

Reading is checked against rt-utils (its own RTSTRUCT and series) and plastimatch; what medsight writes on
TotalSegmentator's CT, dcmqi's GE CT and rt-utils' oblique CT is checked with dciodvfy (no errors), rt-utils,
dicompyler-core and plastimatch as readers, and medsight's own reader (Dice 1.0: no voxel differs). Tools that
are not installed (Debian ``dicom3tools``, ``plastimatch``) skip their checks; so do rt-utils and
dicompyler-core, the test dependencies, saying so. Rules of rasterisation (nearest slice, XOR holes, overlaps)
are checked on small synthetic series.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_multiframe, write_series
from pydicom.data import get_testdata_file

from medsight.core.image import Image
from medsight.errors import MedsightError
from medsight.io import read_image, write_image
from medsight.io.rtstruct import is_rtstruct, read_rtstruct, rtstruct_info, write_rtstruct
from medsight.io.rtstruct_write import slice_contours

#: Organs of TotalSegmentator's label map of its example CT (name: value), from 1 327 to 366 708 voxels; the
#: liver
#: (17) and the vertebra (5) have holes in some slices, the gallbladder lies on 4 of the 20 slices.
ORGANS = {"spleen": 1, "liver": 5, "stomach": 6, "gallbladder": 7, "vertebrae_L1": 32, "aorta": 52}


@pytest.fixture(scope="module")
def interop(shared_data: Path) -> Path:
    return shared_data / "dicom_interop"


@pytest.fixture(scope="module")
def mock(interop: Path) -> Path:
    """rt-utils' two CT slices with rt.dcm and its two broken RTSTRUCTs (all in one folder)."""
    return interop / "rt_utils" / "mock_data"


def pydicom_rtstruct() -> Path:
    """pydicom's own test RTSTRUCT (shipped with pydicom; medsight once refused it as "non-image")."""
    return Path(str(get_testdata_file("rtstruct.dcm")))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian packages dicom3tools and plastimatch)")
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def on_grid(labels: Image, reference: Image) -> np.ndarray:
    """``labels`` resampled (nearest voxel) onto ``reference``'s grid; for label maps of the same voxels
    stored in another axis order or direction (TotalSegmentator's NIfTI is flipped along y)."""
    index = np.linalg.inv(labels.affine) @ reference.affine
    grid = np.indices(reference.shape).reshape(3, -1)
    source = np.rint(index[:3, :3] @ grid + index[:3, 3:]).astype(int)
    assert all((0 <= source[i]).all() and (source[i] < labels.shape[i]).all() for i in range(3))
    return labels.array[0][tuple(source)].reshape(reference.shape)


def rt_utils_masks(series: Path, rtstruct: Path, reference: Image) -> dict[str, np.ndarray]:
    """rt-utils' masks per ROI, put on medsight's slice order through each slice's position."""
    rt_utils = pytest.importorskip("rt_utils", reason="rt-utils is a test dependency (PyPI rt-utils)")
    rt = rt_utils.RTStructBuilder.create_from(str(series), str(rtstruct))
    inverse = np.linalg.inv(reference.affine)
    order = [int(round((inverse @ [*map(float, ds.ImagePositionPatient), 1.0])[0])) for ds in rt.series_data]
    out = {}
    for name in rt.get_roi_names():
        mask = rt.get_roi_mask_by_name(name)  # (rows, columns, slices in rt-utils' order)
        grid = np.zeros(reference.shape, bool)
        for i, k in enumerate(order):
            grid[k] = mask[:, :, i]
        out[name] = grid
    return out


def plastimatch_masks(rtstruct: Path, reference: Image, work: Path) -> dict[str, np.ndarray]:
    """plastimatch's rasterisation (``--xor-contours``: holes as planning systems mean them) on
    ``reference``."""
    exe = _tool("plastimatch")
    work.mkdir(parents=True, exist_ok=True)
    write_image(reference.with_array(reference.array[:1].astype(np.int16)), work / "fixed.nrrd")
    command = [exe, "convert", "--input", str(rtstruct), "--fixed", str(work / "fixed.nrrd"),
               "--output-prefix", str(work / "masks"), "--prefix-format", "nrrd", "--xor-contours"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = {}
    for f in sorted((work / "masks").glob("*.nrrd")):
        mask = read_image(f)
        assert mask.same_geometry(reference)
        out[f.stem] = mask.array[0] > 0
    return out


def dicompyler_masks(rtstruct: Path, reference: Image) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """dicompyler-core's structures and contours, filled as its DVH code does (matplotlib paths, XOR per
    plane)."""
    import pydicom.dicomio

    if not hasattr(pydicom.dicomio, "read_file"):  # dicompyler-core 0.5.6 (last release) predates pydicom 3
        pydicom.dicomio.read_file = pydicom.dcmread  # type: ignore[attr-defined]
    with warnings.catch_warnings():  # it imports pydicom's deprecated pixel_data_handlers
        warnings.simplefilter("ignore", DeprecationWarning)
        dicomparser = pytest.importorskip("dicompylercore.dicomparser",
                                          reason="dicompyler-core (PyPI) is a test dependency")
    from matplotlib.path import Path as PolygonPath

    parser = dicomparser.DicomParser(str(rtstruct))
    inverse = np.linalg.inv(reference.affine)
    _, rows, cols = reference.shape
    centres = np.column_stack([g.ravel() for g in np.mgrid[0:rows, 0:cols]])
    masks, colours = {}, {}
    for number, structure in parser.GetStructures().items():
        grid = np.zeros(reference.shape, bool)
        for plane in parser.GetStructureCoordinates(number).values():
            for contour in plane:
                points = np.asarray(contour["data"], dtype=float)
                index = points @ inverse[:3, :3].T + inverse[:3, 3]
                k = int(round(float(index[:, 0].mean())))
                grid[k] ^= PolygonPath(index[:, 1:]).contains_points(centres).reshape(rows, cols)
        masks[structure["name"]] = grid
        colours[structure["name"]] = [int(c) for c in structure["color"]]
    return masks, colours


def dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    result = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


# ------------------------------------------------------------------------------------------------ reading
def test_info_and_detection(mock: Path, tmp_path: Path) -> None:
    info = rtstruct_info(mock / "rt.dcm")
    ct = pydicom.dcmread(mock / "ct_1.dcm", stop_before_pixels=True)
    assert info.roi_names == ["ROI-1"]
    assert info.referenced_series_uid == ct.SeriesInstanceUID
    second = pydicom.dcmread(mock / "ct_2.dcm", stop_before_pixels=True)
    assert set(info.referenced_sop_uids) == {ct.SOPInstanceUID, second.SOPInstanceUID}
    assert is_rtstruct(mock / "rt.dcm") and not is_rtstruct(mock / "ct_1.dcm")
    (tmp_path / "x.nii.gz").write_bytes(b"not dicom")
    assert not is_rtstruct(tmp_path / "x.nii.gz") and not is_rtstruct(tmp_path / "absent.dcm")
    with pytest.raises(MedsightError, match="RT Structure Set"):
        rtstruct_info(mock / "ct_1.dcm")


def test_pydicom_rtstruct_info_and_no_series() -> None:
    """pydicom's test RTSTRUCT (no preamble, no image series): its ROIs are listed; rasterising needs the
    series."""
    path = pydicom_rtstruct()
    assert is_rtstruct(path)
    info = rtstruct_info(path)
    assert info.roi_names == ["patient", "Isocenter 1", "Isocenter 2"]
    assert info.referenced_series_uid == "1.2.826.0.1.3680043.8.498.2010020400001.2.1.1"
    assert info.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.2010020400001.2"
    assert info.referenced_sop_uids == []
    with pytest.raises(MedsightError, match="no series") as err:
        read_rtstruct(path, None)
    assert "\n" not in str(err.value) and "1.2.826.0.1.3680043.8.498.2010020400001.2.1.1" in str(err.value)


def test_rt_utils_file_against_rt_utils_and_plastimatch(mock: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """rt.dcm: one ROI of two contours on the first slice, the second a hole in the first (rt-utils wrote it
    with a random FrameOfReferenceUID; its contours name the series' images, so it is read with a warning)."""
    series = tmp_path / "ct"  # the image slices alone: rt-utils reads every file of the folder as a slice
    series.mkdir()
    for name in ("ct_1.dcm", "ct_2.dcm"):
        shutil.copyfile(mock / name, series / name)
    with caplog.at_level(logging.WARNING, logger="medsight"):
        labels, names = read_rtstruct(mock / "rt.dcm", mock)  # the folder also holds the RTSTRUCTs
    assert "frame of reference" in caplog.text
    reference = read_image(series)
    assert names == {"ROI-1": 1} and labels.same_geometry(reference) and labels.array.dtype == np.uint8
    mask = labels.array[0] == 1
    assert int(mask.sum()) == 1443 and int(mask[1].sum()) == 0  # 49x49 square minus a 31x31 chamfered hole
    assert not mask[0, 175, 175] and mask[0, 155, 155]
    theirs = rt_utils_masks(series, mock / "rt.dcm", reference)["ROI-1"]
    assert int(theirs.sum()) == 1660  # rt-utils fills with OpenCV, edges included: the hole loses its rim
    assert (mask & ~theirs).sum() == 0 and dice(mask, theirs) == pytest.approx(0.930, abs=0.001)
    plastimatch = plastimatch_masks(mock / "rt.dcm", reference, tmp_path / "plastimatch")["ROI-1"]
    np.testing.assert_array_equal(plastimatch, mask)


@pytest.mark.parametrize(("name", "message"), [
    ("invalid_reference_rt.dcm", "the RTSTRUCT names series"),
    ("non_existent_reference_rt.dcm", "the RTSTRUCT names no referenced series"),
])
def test_broken_references_are_refused_in_one_line(mock: Path, name: str, message: str) -> None:
    with pytest.raises(MedsightError, match="contour image reference") as err:
        read_rtstruct(mock / name, mock)
    assert message in str(err.value) and "\n" not in str(err.value) and name in str(err.value)


def test_series_absent_or_another_series(mock: Path, interop: Path, tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match="does not exist"):
        read_rtstruct(mock / "rt.dcm", tmp_path / "absent")
    with pytest.raises(MedsightError, match="that rt.dcm references") as err:
        read_rtstruct(mock / "rt.dcm", interop / "dcmqi" / "ct-3slice")
    assert "\n" not in str(err.value)
    with pytest.raises(MedsightError, match="that rtstruct.dcm references"):
        read_rtstruct(pydicom_rtstruct(), mock)
    with pytest.raises(MedsightError, match="choose one of: ROI-1"):
        read_rtstruct(mock / "rt.dcm", mock, roi_values={"ROI-2": 1})


# ------------------------------------------------------------------------------------- reading: the rules
@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Image, Path]:
    """A 6-slice 40x40 CT series, and an RTSTRUCT medsight wrote on it: 'a' (value 1) a square with a square
    hole holding an island on slice 1, two squares on slice 2, nothing on the other slices; 'b' (value 2) on
    slice 4."""
    written = write_series(tmp_path / "series", n_slices=6, rows=40, columns=40, slice_step=3.0,
                           pixel_spacing=(0.9, 0.8), modality="CT")
    frame = pydicom.uid.generate_uid()
    for path in written.paths:
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = frame
        ds.save_as(path)
    image = read_image(written.folder)
    lab = np.zeros(image.array.shape, np.uint8)
    lab[0, 1, 5:35, 5:35] = 1
    lab[0, 1, 10:30, 10:30] = 0
    lab[0, 1, 15:25, 15:25] = 1
    lab[0, 2, 2:8, 2:8] = 1
    lab[0, 2, 20:38, 25:39] = 1
    lab[0, 4, 0:12, 28:40] = 2  # touches the image edge
    out = tmp_path / "rt.dcm"
    write_rtstruct(image.with_array(lab), written.folder, out, label_names={"a": 1, "b": 2})
    return written.folder, image.with_array(lab), out


def _edit(path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    ds = pydicom.dcmread(path)
    edit(ds)
    out = path.with_name(f"edited_{path.name}")
    ds.save_as(out)
    return out


def _shift(contour: pydicom.Dataset, offset: np.ndarray) -> None:
    points = np.asarray(contour.ContourData, float).reshape(-1, 3) + offset
    contour.ContourData = [f"{v:.4f}" for v in points.ravel()]


def test_holes_islands_several_contours_and_empty_slices(synthetic: tuple[Path, Image, Path]) -> None:
    series, labels, rt = synthetic
    ds = pydicom.dcmread(rt)
    per_slice: dict[float, int] = {}
    for contour in ds.ROIContourSequence[0].ContourSequence:
        z = round(float(contour.ContourData[2]), 3)
        per_slice[z] = per_slice.get(z, 0) + 1
    assert sorted(per_slice.values()) == [2, 3]  # slice 1: outer, hole, island; slice 2: two squares
    back, names = read_rtstruct(rt, series)
    assert names == {"a": 1, "b": 2}
    np.testing.assert_array_equal(back.array, labels.array)
    only_b, names = read_rtstruct(rt, series, roi_values={"b": 300})
    assert names == {"b": 300} and only_b.array.dtype == np.uint16
    np.testing.assert_array_equal(only_b.array == 300, labels.array == 2)


def test_contours_off_the_slice_grid(synthetic: tuple[Path, Image, Path],
                                     caplog: pytest.LogCaptureFixture) -> None:
    series, labels, rt = synthetic
    normal = labels.direction[:, 0]  # slice axis, 3 mm per step

    def nudge(ds: pydicom.Dataset) -> None:  # 'a' drawn 1.2 mm (0.4 slice) off its planes
        for contour in ds.ROIContourSequence[0].ContourSequence:
            _shift(contour, 1.2 * normal)

    with caplog.at_level(logging.WARNING, logger="medsight"):
        back, _ = read_rtstruct(_edit(rt, nudge), series)
    assert "5 contour(s) lie off the slice planes (up to 1.20 mm)" in caplog.text
    np.testing.assert_array_equal(back.array, labels.array)

    def beyond(ds: pydicom.Dataset) -> None:  # 'b' (slice 4 of 0..5) moved 6 mm past the last slice
        _shift(ds.ROIContourSequence[1].ContourSequence[0], 9.0 * normal)

    with pytest.raises(MedsightError, match="contours inside the image") as err:
        read_rtstruct(_edit(rt, beyond), series)
    assert "'b'" in str(err.value) and "\n" not in str(err.value)

    def aside(ds: pydicom.Dataset) -> None:  # 'a' 20 mm beyond the columns' end
        _shift(ds.ROIContourSequence[0].ContourSequence[0], 20.0 * labels.direction[:, 2])

    with pytest.raises(MedsightError, match="contours inside the image"):
        read_rtstruct(_edit(rt, aside), series)


def test_points_overlaps_and_frame_of_reference(synthetic: tuple[Path, Image, Path],
                                               caplog: pytest.LogCaptureFixture) -> None:
    series, labels, rt = synthetic

    def overlap_and_point(ds: pydicom.Dataset) -> None:  # 'b' also gets a copy of 'a's contours, and a POINT
        ds.ROIContourSequence[1].ContourSequence.extend(ds.ROIContourSequence[0].ContourSequence)
        point = pydicom.Dataset()
        point.ContourGeometricType = "POINT"
        point.NumberOfContourPoints = 1
        point.ContourData = list(ds.ROIContourSequence[0].ContourSequence[0].ContourData[:3])
        ds.ROIContourSequence[0].ContourSequence.append(point)

    edited = _edit(rt, overlap_and_point)
    with caplog.at_level(logging.INFO, logger="medsight"):
        back, names = read_rtstruct(edited, series)
    a = labels.array[0] == 1
    assert "1 POINT" in caplog.text and f"'b' over 'a' ({int(a.sum())} voxels)" in caplog.text
    assert (back.array[0][a] == 2).all()  # the higher value wins
    swapped, _ = read_rtstruct(edited, series, roi_values={"a": 2, "b": 1})
    assert (swapped.array[0][a] == 2).all() and (swapped.array[0] == 1).sum() == (labels.array == 2).sum()

    def other_frame(ds: pydicom.Dataset) -> None:  # another frame of reference and no image references
        ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.4"
        for roi in ds.StructureSetROISequence:
            roi.ReferencedFrameOfReferenceUID = "1.2.3.4"
        for roi in ds.ROIContourSequence:
            for contour in roi.ContourSequence:
                del contour.ContourImageSequence

    with pytest.raises(MedsightError, match="frame of reference 1.2.3.4") as err:
        read_rtstruct(_edit(rt, other_frame), series)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ writing
def test_slice_contours_are_exact_for_hard_masks() -> None:
    """Checkerboards, single pixels, diagonal chains, holes with islands, the image edge: XOR of the contours'
    interiors (pixel centres) gives the mask back."""
    from skimage.draw import polygon

    rng = np.random.default_rng(0)
    masks = [np.indices((12, 12)).sum(0) % 2 == 0, np.eye(9, dtype=bool), rng.random((30, 30)) > 0.5]
    ring = np.zeros((20, 20), bool)
    ring[2:18, 2:18], ring[5:15, 5:15], ring[8:12, 8:12] = True, False, True
    masks.append(ring)
    for mask in masks:
        back = np.zeros(mask.shape, bool)
        for contour in slice_contours(mask):
            rr, cc = polygon(contour[:, 0], contour[:, 1], shape=mask.shape)
            filled = np.zeros(mask.shape, bool)
            filled[rr, cc] = True
            back ^= filled
        np.testing.assert_array_equal(back, mask)


@pytest.fixture(scope="module")
def totalseg(interop: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Image, Path]:
    """medsight's RTSTRUCT of six organs of TotalSegmentator's label map on its example CT (20 slices, JPEG
    2000, anonymised with empty SOP, study and series UIDs: repaired in memory with one warning)."""
    series = interop / "totalsegmentator" / "example_ct_dicom"
    reference = read_image(series)
    grid = on_grid(read_image(interop / "totalsegmentator" / "example_seg_dicom.nii.gz"), reference)
    lab = np.where(np.isin(grid, list(ORGANS.values())), grid, 0).astype(np.uint8)
    out = tmp_path_factory.mktemp("rtstruct") / "totalseg_rtstruct.dcm"
    write_rtstruct(reference.with_array(lab[None]), series, out, label_names=ORGANS,
                   colours={5: (200, 100, 50)})
    return series, reference.with_array(lab[None]), out


@pytest.mark.slow
def test_totalsegmentator_round_trip(totalseg: tuple[Path, Image, Path], tmp_path: Path) -> None:
    series, labels, rt = totalseg
    errors, warnings = dciodvfy_errors(rt)
    assert not errors, "\n".join(errors)
    assert all("Patient ID" in w or "Study ID" in w for w in warnings)  # the anonymised source has them empty
    ds = pydicom.dcmread(rt)
    assert [r.ROIName for r in ds.StructureSetROISequence] == list(ORGANS)
    assert ds.FrameOfReferenceUID == pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)\
        .FrameOfReferenceUID
    info = rtstruct_info(rt)
    assert len(info.referenced_sop_uids) == 20 and info.referenced_series_uid  # repaired (derived) series UID
    back, names = read_rtstruct(rt, series, roi_values=ORGANS)
    np.testing.assert_array_equal(back.array, labels.array)  # Dice 1.0 for each organ
    theirs, colours = dicompyler_masks(rt, labels)
    assert colours["liver"] == [200, 100, 50]
    plastimatch = plastimatch_masks(rt, labels, tmp_path)
    for name, value in ORGANS.items():
        mask = labels.array[0] == value
        assert mask.sum() > 1000
        np.testing.assert_array_equal(theirs[name], mask)
        np.testing.assert_array_equal(plastimatch[name], mask)


def test_dcmqi_ct_round_trip_and_rt_utils(interop: Path, tmp_path: Path) -> None:
    """dcmqi's GE CT (3 slices, empty SpecificCharacterSet) with dcmqi's liver label map; rt-utils reads it
    back."""
    series = interop / "dcmqi" / "ct-3slice"
    reference = read_image(series)
    liver = read_image(interop / "dcmqi" / "liver_seg.nrrd")
    assert liver.same_geometry(reference)
    lab = reference.with_array(liver.array.astype(np.uint8))
    out = write_rtstruct(lab, series, tmp_path / "liver_rtstruct.dcm", label_names={"liver": 1})
    assert not dciodvfy_errors(out)[0]
    back, names = read_rtstruct(out, series)
    assert names == {"liver": 1}
    np.testing.assert_array_equal(back.array, lab.array)
    theirs = rt_utils_masks(series, out, reference)
    np.testing.assert_array_equal(theirs["liver"], lab.array[0] == 1)
    masks, _ = dicompyler_masks(out, reference)
    np.testing.assert_array_equal(masks["liver"], lab.array[0] == 1)


def test_oblique_series_round_trip(interop: Path, tmp_path: Path) -> None:
    """rt-utils' 3 oblique CT slices (ImageOrientationPatient far from axial, 50x100 pixels). Each slice names
    its own
    StudyInstanceUID: writing refuses that in one line (which study would the RTSTRUCT belong to?), so the
    round trip runs on a copy with one study; reading needs no study and reads the RTSTRUCT on the original
    slices too."""
    original = interop / "rt_utils" / "oriented_data"
    series = tmp_path / "oriented"
    series.mkdir()
    study = pydicom.dcmread(original / "0.dcm", stop_before_pixels=True).StudyInstanceUID
    for f in sorted(original.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID = study
        ds.save_as(series / f.name)
    reference = read_image(series)
    assert np.abs(reference.direction).max() < 0.96  # no axis within 16 degrees of a patient axis
    lab = np.zeros(reference.array.shape, np.uint8)
    lab[0, 1, 10:40, 20:80] = 1
    lab[0, 1, 20:30, 40:60] = 0
    lab[0, 0:3, 5:15, 5:15] = 2
    names = {"ring": 1, "box": 2}
    with pytest.raises(MedsightError, match="one StudyInstanceUID") as err:
        write_rtstruct(reference.with_array(lab), original, tmp_path / "refused.dcm", label_names=names)
    assert "\n" not in str(err.value) and not (tmp_path / "refused.dcm").exists()
    out = write_rtstruct(reference.with_array(lab), series, tmp_path / "oblique.dcm", label_names=names)
    assert not dciodvfy_errors(out)[0]
    for folder in (series, original):
        back, _ = read_rtstruct(out, folder)
        np.testing.assert_array_equal(back.array, lab)
    # rt-utils 1.2.7 misplaces masks on non-square slices and with unequal row/column spacing (its issues #88
    # and
    # #92; this series has both: 50x100 pixels of 3.5x2.5 mm), so plastimatch is the outside reader here
    masks = plastimatch_masks(out, reference, tmp_path / "plastimatch")
    for name, value in names.items():
        np.testing.assert_array_equal(masks[name], lab[0] == value)


def test_write_refusals_and_empty_named_rois(synthetic: tuple[Path, Image, Path], tmp_path: Path) -> None:
    series, labels, _ = synthetic
    small = Image(np.zeros((1, 2, 8, 8), np.uint8))
    with pytest.raises(MedsightError, match="series grid"):
        write_rtstruct(small, series, tmp_path / "x.dcm")
    with pytest.raises(MedsightError, match="integer label map"):
        write_rtstruct(labels.with_array(labels.array * 0.5), series, tmp_path / "x.dcm")
    with pytest.raises(MedsightError, match="at least one foreground label"):
        write_rtstruct(labels.with_array(np.zeros_like(labels.array)), series, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()
    out = write_rtstruct(labels, series, tmp_path / "y.dcm",
                         label_names={"background": 0, "a": 1, "b": 2, "c": 3})
    ds = pydicom.dcmread(out)
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["a", "b", "c"]
    assert "ContourSequence" not in ds.ROIContourSequence[2]  # named, looked for, not found
    assert rtstruct_info(out).roi_names == ["a", "b", "c"]
    _, names = read_rtstruct(out, series)
    assert names == {"a": 1, "b": 2}  # the default reads ROIs with contours


def test_write_multiframe_series_is_refused(tmp_path: Path) -> None:
    written = write_multiframe(tmp_path / "mf" / "enhanced.dcm")
    image = read_image(written.paths[0])
    lab = np.zeros(image.array.shape[1:], np.uint8)[None]
    lab[0, 0, 1:3, 1:3] = 1
    with pytest.raises(MedsightError, match="single-frame"):
        write_rtstruct(image.with_array(lab), written.paths[0], tmp_path / "x.dcm")


@pytest.mark.slow
def test_a_contour_too_long_for_explicit_vr_is_written_in_implicit_vr(tmp_path: Path) -> None:
    """A ContourData over 64 KiB of text cannot carry its DS type under Explicit VR (16-bit lengths): the file is
    written in Implicit VR Little Endian, and reads back exactly; a file with short contours stays Explicit VR."""
    written = write_series(tmp_path / "series", n_slices=2, rows=1000, columns=1000, slice_step=3.0,
                           pixel_spacing=(0.5, 0.5), modality="CT")
    image = read_image(written.folder)
    lab = np.zeros(image.array.shape, np.uint8)
    lab[0, 0, 50:950, 50:950] = 1
    for edge in (lab[0, 0, 49, 50:950:2], lab[0, 0, 950, 50:950:2], lab[0, 0, 50:950:2, 49], lab[0, 0, 50:950:2, 950]):
        edge[:] = 1  # saw-tooth edges: one contour of about 3 600 vertices, 90 kB of text
    out = write_rtstruct(image.with_array(lab), written.folder, tmp_path / "rt.dcm", label_names={"a": 1})
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    assert contour["ContourData"].VR == "DS" and len(contour.ContourData) > 9000
    np.testing.assert_array_equal(on_grid(read_rtstruct(out, written.folder)[0], image), lab[0, :, :, :])
    square = np.zeros_like(lab)
    square[0, 1, 100:200, 100:200] = 1
    small = write_rtstruct(image.with_array(square), written.folder, tmp_path / "rt_small.dcm")
    assert pydicom.dcmread(small).file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
