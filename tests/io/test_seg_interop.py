"""DICOM-SEG with other tools, on the real third-party files of ../shared/data/dicom_interop (see its SOURCE.md).

Reading: every SEG that dcmqi (3D Slicer's converter) ships, in both SOP classes, is read onto its series' grid and
compared voxel for voxel with the NRRD label map dcmqi ships beside it. Writing: medsight's SEGs on the
TotalSegmentator CT (anonymised: empty SOP, study and series UIDs) and on dcmqi's GE CT (empty SpecificCharacterSet)
pass dciodvfy without errors and read back through dcmqi's ``segimage2itkimage``, highdicom and medsight to the same
voxels on the same grid. Tests that need dciodvfy (Debian ``dicom3tools``) or dcmqi (PyPI ``dcmqi``) skip without
them; CI installs both.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medsight.cli.app import main
from medsight.io import read_image
from medsight.io.dicom_seg import LABELMAP_SEG_SOP_CLASS_UID, read_dicom_seg, write_dicom_seg
from medsight.io.seg_write import place_on_grid

#: The classes of TotalSegmentator's "total" task present in example_seg_dicom.nii.gz (value -> name).
TOTALSEG_PRESENT = {
    1: "spleen", 5: "liver", 6: "stomach", 7: "pancreas", 8: "adrenal_gland_right", 20: "colon", 32: "vertebrae_T12",
    33: "vertebrae_T11", 52: "aorta", 63: "inferior_vena_cava", 64: "portal_vein_and_splenic_vein",
    69: "humerus_left", 70: "humerus_right", 79: "spinal_cord", 86: "autochthon_left", 87: "autochthon_right",
    97: "rib_left_6", 98: "rib_left_7", 99: "rib_left_8", 100: "rib_left_9", 101: "rib_left_10", 102: "rib_left_11",
    103: "rib_left_12", 109: "rib_right_6", 110: "rib_right_7", 111: "rib_right_8", 112: "rib_right_9",
    113: "rib_right_10", 114: "rib_right_11", 115: "rib_right_12", 117: "costal_cartilages",
}


@pytest.fixture(scope="module")
def dcmqi(shared_data: Path) -> Path:
    return shared_data / "dicom_interop" / "dcmqi"


@pytest.fixture(scope="module")
def totalseg(shared_data: Path) -> Path:
    return shared_data / "dicom_interop" / "totalsegmentator"


def _same(image, expected) -> None:  # type: ignore[no-untyped-def]
    assert image.same_geometry(expected)
    np.testing.assert_array_equal(image.array, expected.array)


# ------------------------------------------------------------------------------------------------ reading
@pytest.mark.parametrize(("seg", "series", "nrrd"), [
    ("liver.dcm", "ct-3slice", "liver_seg.nrrd"),
    ("sparse-labelmap-noppv.dcm", "24x38x3/image", "sparse_labelmap_noppv_seg.nrrd"),
    ("23x38x3/seg/label.seg", "23x38x3/image", "23x38x3/nrrd/label.nrrd"),
    ("23x38x3/seg/label.seg", "23x38x3/multiframe", "23x38x3/nrrd/label.nrrd"),  # another series, same frame
    ("24x38x3/seg/label.seg", "24x38x3/multiframe/mf.dcm", "24x38x3/nrrd/label.nrrd"),
    ("24x38x3/seg/label.seg", "24x38x3", "24x38x3/nrrd/label.nrrd"),  # the folder of both series: the referenced
])
def test_third_party_seg_equals_the_label_map_shipped_beside_it(dcmqi: Path, seg: str, series: str,
                                                                nrrd: str) -> None:
    labels = read_dicom_seg(dcmqi / seg, dcmqi / series)
    _same(labels, read_image(dcmqi / nrrd))


def test_sparse_labelmap_missing_frame_is_empty_not_padding(dcmqi: Path) -> None:
    """The Label Map SOP class with PixelPaddingValue 5: dcmqi's NRRD fills the omitted middle frame with the
    padding value 5 (no segment has it); medsight reads an omitted frame as empty. Only that frame differs."""
    labels = read_dicom_seg(dcmqi / "sparse-labelmap-ppv5.dcm", dcmqi / "24x38x3/image")
    assert labels.source.extra["sop_class"] == LABELMAP_SEG_SOP_CLASS_UID
    shipped = read_image(dcmqi / "sparse_labelmap_ppv5_seg.nrrd").array
    differ = labels.array != shipped
    assert int(differ.sum()) == 912 == differ[0, 1].size and differ[0, 1].all()
    assert set(np.unique(shipped[0, 1])) == {5} and not labels.array[0, 1].any()
    np.testing.assert_array_equal(labels.array[0, [0, 2]], shipped[0, [0, 2]])


def test_overlapping_segments_error_last_and_separate(dcmqi: Path) -> None:
    seg, series = dcmqi / "partial_overlaps.dcm", dcmqi / "ct-3slice"
    with pytest.raises(ValueError, match=r"overlapping segments 1 'GREEN' and 2 'ORANGE' \(\d+ voxels\)") as info:
        read_dicom_seg(seg, series)
    assert "\n" not in str(info.value) and "overlaps='last'" in str(info.value)
    layers = [read_image(dcmqi / f"partial_overlaps-{i}.nrrd").array[0] for i in (1, 2, 3)]  # dcmqi's layers
    separate = read_dicom_seg(seg, series, overlaps="separate")
    assert separate.array.shape == (5, 3, 512, 512) and separate.source.extra["channels"].startswith("0=GREEN")
    for number in range(1, 6):
        expected = sum((layer == number) for layer in layers) * number
        np.testing.assert_array_equal(separate.array[number - 1], expected)
    last = read_dicom_seg(seg, series, overlaps="last")
    np.testing.assert_array_equal(last.array[0], separate.array.max(axis=0))  # higher number wins = max here


def test_frames_placed_by_plane_position_when_highdicom_cannot_form_a_volume(dcmqi: Path, tmp_path: Path) -> None:
    """liver.dcm without its middle frame and without SpacingBetweenSlices: highdicom sees a 2-slice volume at 2 mm
    that does not fit the 1 mm series; medsight places each frame by its ImagePositionPatient."""
    ds = pydicom.dcmread(dcmqi / "liver.dcm")
    frame_bytes = ds.Rows * ds.Columns // 8
    ds.PixelData = ds.PixelData[:frame_bytes] + ds.PixelData[2 * frame_bytes:3 * frame_bytes]
    ds.PerFrameFunctionalGroupsSequence = [ds.PerFrameFunctionalGroupsSequence[i] for i in (0, 2)]
    ds.NumberOfFrames = 2
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices
    ds.save_as(tmp_path / "gap.dcm")
    assert hd.seg.segread(tmp_path / "gap.dcm").get_volume_geometry().spatial_shape[0] == 2
    expected = read_image(dcmqi / "liver_seg.nrrd").array.astype(np.uint8)
    expected[0, 1] = 0
    labels = read_dicom_seg(tmp_path / "gap.dcm", dcmqi / "ct-3slice")
    np.testing.assert_array_equal(labels.array, expected)


def test_without_the_series_the_seg_geometry_is_used_with_a_warning(dcmqi: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="medsight"):
        alone = read_dicom_seg(dcmqi / "liver.dcm")
    assert any("no referenced series given" in r.getMessage() for r in caplog.records)
    _same(alone, read_image(dcmqi / "liver_seg.nrrd"))  # slices ordered along the normal, as read_image does
    _same(read_dicom_seg(dcmqi / "sparse-labelmap-noppv.dcm"), read_image(dcmqi / "sparse_labelmap_noppv_seg.nrrd"))


def test_wrong_series_is_one_line(dcmqi: Path, totalseg: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="frame of reference"):
        read_dicom_seg(dcmqi / "liver.dcm", dcmqi / "24x38x3/image")
    code = main(["convert", str(dcmqi / "partial_overlaps.dcm"), str(tmp_path / "x.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2 and "overlapping segments" in err and "Traceback" not in err
    assert not (tmp_path / "x.nii.gz").exists()


# ------------------------------------------------------------------------------------------------ writing
def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian dicom3tools gives dciodvfy, PyPI dcmqi gives segimage2itkimage)")
    return path


@pytest.fixture(scope="module", params=["ct-3slice", "totalsegmentator"])
def written(request: pytest.FixtureRequest, dcmqi: Path, totalseg: Path,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, dict[str, int]]:
    """(SEG file, source series, its label map on the series grid, names) for both real series."""
    if request.param == "ct-3slice":
        series, label_file, names = dcmqi / "ct-3slice", dcmqi / "liver_seg.nrrd", {"liver": 1}
    else:  # TotalSegmentator's own label map of this series (NIfTI in another axis order), every class present
        series, label_file = totalseg / "example_ct_dicom", totalseg / "example_seg_dicom.nii.gz"
        names = {name: value for value, name in TOTALSEG_PRESENT.items()}
    labels = read_image(label_file)
    out = tmp_path_factory.mktemp("seg") / f"{request.param}_seg.dcm"
    write_dicom_seg(labels, series, out, label_names=names)
    return out, series, place_on_grid(labels, read_image(series), label_file), names


def test_written_seg_passes_dciodvfy(written: tuple[Path, Path, np.ndarray, dict[str, int]]) -> None:
    result = subprocess.run([_tool("dciodvfy"), str(written[0])], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, "\n".join(errors)


def test_dcmqi_converts_the_written_seg_to_the_same_voxels(written: tuple[Path, Path, np.ndarray, dict[str, int]],
                                                           tmp_path: Path) -> None:
    seg, series, grid, names = written
    result = subprocess.run([_tool("segimage2itkimage"), "--inputDICOM", str(seg), "--outputDirectory",
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    reference = read_image(series)
    segments = [item for group in json.loads((tmp_path / "meta.json").read_text())["segmentAttributes"]
                for item in group]
    assert sorted(s["SegmentLabel"] for s in segments) == sorted(names)
    for segment in segments:
        value = int(segment["TrackingIdentifier"].removeprefix("label "))
        mask = read_image(tmp_path / f"{segment['labelID']}.nrrd")
        assert mask.same_geometry(reference)
        np.testing.assert_array_equal(mask.array[0] > 0, grid == value)


def test_highdicom_and_medsight_read_the_written_seg_back(written: tuple[Path, Path, np.ndarray, dict[str, int]]
                                                          ) -> None:
    seg_file, series, grid, names = written
    reference = read_image(series)
    seg = hd.seg.segread(seg_file)
    target = hd.VolumeGeometry(affine=reference.affine, spatial_shape=reference.shape, coordinate_system="PATIENT")
    numbers = np.asarray(seg.get_volume(combine_segments=True).match_geometry(target).array)
    values = np.array([0, *sorted(names.values())])
    np.testing.assert_array_equal(values[numbers], grid)
    back = read_dicom_seg(seg_file, series)
    assert back.same_geometry(reference)
    np.testing.assert_array_equal(back.array[0], grid)
    assert {seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()} == set(names)


def test_written_segs_carry_anatomy_codes_and_repairs_are_one_line(dcmqi: Path, totalseg: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    labels = read_image(totalseg / "example_seg_dicom.nii.gz")
    names = {"liver": 5, "kidney_left": 3, "spinal_cord": 79, "rib_left_6": 97, "costal_cartilages": 117}
    kept = labels.with_array(np.where(np.isin(labels.array, list(names.values())), labels.array, 0))
    with caplog.at_level(logging.WARNING, logger="medsight"):
        write_dicom_seg(kept, totalseg / "example_ct_dicom", tmp_path / "ts.dcm", label_names=names)
    repairs = [r.getMessage() for r in caplog.records if "repaired" in r.getMessage()]
    assert len(repairs) == 1 and "SOPClassUID missing: taken from the file meta (20 of 20 files)" in repairs[0]
    assert "SeriesInstanceUID missing" in repairs[0]
    seg = pydicom.dcmread(tmp_path / "ts.dcm")
    coded = {str(s.SegmentLabel): (s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning,
                                   [m.CodeMeaning for m in s.SegmentedPropertyTypeCodeSequence[0].get(
                                       "SegmentedPropertyTypeModifierCodeSequence", [])])
             for s in seg.SegmentSequence}
    assert coded["liver"] == ("Liver", []) and coded["kidney_left"] == ("Kidney", ["Left"])
    assert coded["spinal_cord"] == ("Spinal cord", []) and coded["rib_left_6"] == ("Rib", ["Left"])
    assert coded["costal_cartilages"] == ("Tissue", [])
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID  # from file meta
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medsight"):
        write_dicom_seg(read_image(dcmqi / "liver_seg.nrrd"), dcmqi / "ct-3slice", tmp_path / "ct.dcm",
                        label_names={"liver": 1})
    repairs = [r.getMessage() for r in caplog.records]
    assert len(repairs) == 1 and "SpecificCharacterSet '' invalid: dropped (ASCII text)" in repairs[0]
    assert "SpecificCharacterSet" not in pydicom.dcmread(tmp_path / "ct.dcm", stop_before_pixels=True)
