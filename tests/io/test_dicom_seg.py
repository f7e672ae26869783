"""DICOM-SEG round trip on the real TCIA MR series (highdicom reads what medsight writes, UIDs reference the series),
and on synthetic series: the SEG types of other writers (fractional, label map SOP class, overlapping segments),
label maps in another axis order, a series in another frame of reference, segment codes from label names.
The real third-party files are in test_seg_interop.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_factory import write_series
from pydicom.sr.codedict import codes

from medsight.cli.app import main
from medsight.io import read_image
from medsight.io.dicom_seg import dataset_colours, read_dicom_seg, write_dicom_seg
from medsight.io.seg_codes import segment_coding

SERIES = "tcia_pgbm005_mr_t1post_dicom"


@pytest.fixture(scope="module")
def series(shared_data: Path) -> Path:
    return shared_data / SERIES / "volume"


@pytest.fixture(scope="module")
def written(series: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    image = read_image(series)
    lab = np.zeros(image.array.shape, dtype=np.uint8)
    lab[0, 5:9, 100:140, 80:120] = 1
    lab[0, 10:12, 200:220, 50:60] = 4  # a gap in the values: read back as 4 through the Tracking ID
    out = tmp_path_factory.mktemp("seg") / "pred_seg.dcm"
    write_dicom_seg(image.with_array(lab), series, out, label_names={"tumour": 1, "oedema": 4},
                    colours={1: (255, 0, 0)})
    return out, lab


def test_seg_passes_highdicom_and_references_the_series(series: Path, written: tuple[Path, np.ndarray]) -> None:
    out, _ = written
    seg = hd.seg.segread(out)
    source = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.glob("*.dcm"))]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    assert seg.StudyInstanceUID == source[0].StudyInstanceUID
    referenced = {sop for _, _, sop in seg.get_source_image_uids()}
    assert referenced == {str(d.SOPInstanceUID) for d in source}
    labels = [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()]
    assert labels == ["tumour", "oedema"]
    red = seg.get_segment_description(1).RecommendedDisplayCIELabValue
    assert hd.color.CIELabColor.from_dicom_value(tuple(red)).to_rgb() == (255, 0, 0)


def test_round_trip_on_the_series_grid(series: Path, written: tuple[Path, np.ndarray]) -> None:
    out, lab = written
    back = read_dicom_seg(out, series)
    assert back.same_geometry(read_image(series))
    np.testing.assert_array_equal(back.array, lab)
    alone = read_dicom_seg(out)  # the SEG's own frame grid: only the slices holding segments
    assert alone.array.max() == 4 and int((alone.array == 1).sum()) == int((lab == 1).sum())


def test_info_and_convert_read_a_seg(written: tuple[Path, np.ndarray], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, lab = written
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dicom-seg" in text and "tumour=1, oedema=4" in text
    assert main(["convert", str(out), str(tmp_path / "seg.nii.gz")]) == 0
    assert int((read_image(tmp_path / "seg.nii.gz").array == 4).sum()) == int((lab == 4).sum())


def test_wrong_grid_and_colours_from_dataset_json(series: Path, tmp_path: Path) -> None:
    image = read_image(series)
    small = image.with_array(np.zeros((1, 4, 8, 8), np.uint8), origin=(), direction=np.zeros((0, 0)))
    with pytest.raises(ValueError, match="series grid"):
        write_dicom_seg(small, series, tmp_path / "x.dcm", label_names={"a": 1})
    spec = tmp_path / "dataset.json"
    spec.write_text(json.dumps({"labels": {"background": 0, "liver": 1}, "colors": {"liver": [1, 2, 3]}}))
    assert dataset_colours(spec, {"background": 0, "liver": 1}) == {1: (1, 2, 3)}


# ------------------------------------------------------------------ other writers' SEG types (synthetic series)
def _source(folder: Path) -> list[pydicom.Dataset]:
    """A synthetic CT series (6 slices of 8x6) with the attributes a SEG source needs; returns its headers."""
    written = write_series(folder, n_slices=6, modality="CT", shuffle=True)
    frame = pydicom.uid.generate_uid()
    out: list[pydicom.Dataset] = []
    for path in written.paths:
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = frame
        for keyword in ("PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
                        "ReferringPhysicianName"):
            setattr(ds, keyword, "")
        ds.save_as(path)
        out.append(pydicom.dcmread(path, stop_before_pixels=True))
    return out


def _description(number: int, label: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)


def _other_writer_seg(datasets: list[pydicom.Dataset], pixels: np.ndarray, kind: str, labels: list[str],
                      out: Path, **kwargs: Any) -> Path:
    """A SEG written by highdicom directly (not by medsight): frames in the source files' order."""
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=kind,
        segment_descriptions=[_description(i, name) for i, name in enumerate(labels, start=1)],
        series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="other", manufacturer_model_name="other", software_versions="1", device_serial_number="1",
        **kwargs)
    seg.save_as(out)
    return out


def _order(series: Path, datasets: list[pydicom.Dataset]) -> list[int]:
    """Slice index of each dataset on read_image(series)'s grid."""
    z = read_image(series).origin[2]
    return [int(round((float(ds.ImagePositionPatient[2]) - z) / 2.5)) for ds in datasets]


def test_fractional_seg_is_thresholded_at_half_the_maximum(tmp_path: Path) -> None:
    datasets = _source(tmp_path / "ct")
    order = _order(tmp_path / "ct", datasets)
    fractions = np.zeros((6, 8, 6), np.float32)
    fractions[2, 1:4, 1:4] = 0.3  # below half: outside
    fractions[3, 2:6, 2:5] = 0.5  # exactly half: inside
    fractions[4, 0:2, 0:2] = 0.9
    seg = _other_writer_seg(datasets, fractions[order], "FRACTIONAL", ["lesion"], tmp_path / "frac.dcm",
                            max_fractional_value=200)
    labels = read_dicom_seg(seg, tmp_path / "ct")
    assert labels.source.extra["segmentation_type"] == "FRACTIONAL"
    np.testing.assert_array_equal(labels.array[0], (fractions >= 0.5).astype(np.uint8))


def test_labelmap_sop_class_and_overlap_rules(tmp_path: Path) -> None:
    datasets = _source(tmp_path / "ct")
    order = _order(tmp_path / "ct", datasets)
    lab = np.zeros((6, 8, 6), np.uint8)
    lab[1:3, 2:5, 1:4], lab[4, 0:3, 0:3] = 2, 1
    seg = _other_writer_seg(datasets, lab[order], "LABELMAP", ["a", "b"], tmp_path / "lm.dcm")
    assert str(pydicom.dcmread(seg, stop_before_pixels=True).SOPClassUID) == "1.2.840.10008.5.1.4.1.1.66.7"
    np.testing.assert_array_equal(read_dicom_seg(seg, tmp_path / "ct").array[0], lab)
    both = np.zeros((6, 8, 6, 2), np.uint8)  # BINARY with segments 1 and 2 overlapping on 1 voxel
    both[2, 0:2, 0:3, 0] = 1
    both[2, 1, 2:5, 1] = 1
    seg = _other_writer_seg(datasets, both[order], "BINARY", ["a", "b"], tmp_path / "bin.dcm")
    with pytest.raises(ValueError, match=r"overlapping segments 1 'a' and 2 'b' \(1 voxel\)"):
        read_dicom_seg(seg, tmp_path / "ct")
    last = read_dicom_seg(seg, tmp_path / "ct", overlaps="last").array[0]
    assert last[2, 1, 2] == 2 and last[2, 0, 2] == 1 and int((last > 0).sum()) == 6 + 3 - 1
    separate = read_dicom_seg(seg, tmp_path / "ct", overlaps="separate").array
    np.testing.assert_array_equal(separate, np.moveaxis(both, -1, 0) * np.array([1, 2])[:, None, None, None])
    with pytest.raises(ValueError, match="overlaps one of error, last, separate"):
        read_dicom_seg(seg, tmp_path / "ct", overlaps="first")


def test_label_map_in_another_axis_order_is_placed_and_off_grid_refused(tmp_path: Path) -> None:
    _source(tmp_path / "ct")
    image = read_image(tmp_path / "ct")
    lab = np.zeros(image.array.shape, np.uint8)
    lab[0, 1:4, 2:6, 1:3] = 3
    flipped = image.affine @ np.diag([1.0, -1.0, 1.0, 1.0])  # rows stored bottom-up, as a NIfTI in RAS would
    flipped[:3, 3] = image.affine[:3, :3] @ np.array([0, image.shape[1] - 1, 0]) + image.affine[:3, 3]
    spacing = np.linalg.norm(flipped[:3, :3], axis=0)
    other = image.with_array(lab[:, :, ::-1].copy(), origin=tuple(flipped[:3, 3]),
                             direction=flipped[:3, :3] / spacing[None])
    write_dicom_seg(other, tmp_path / "ct", tmp_path / "seg.dcm", label_names={"kidney_right": 3})
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "seg.dcm", tmp_path / "ct").array, lab)
    half = image.with_array(lab, origin=tuple(np.array(image.origin) + [0.35, 0, 0]))  # half a column off
    with pytest.raises(ValueError, match="series grid"):
        write_dicom_seg(half, tmp_path / "ct", tmp_path / "bad.dcm")
    assert not (tmp_path / "bad.dcm").exists()


def test_a_series_in_another_frame_of_reference_is_refused(tmp_path: Path, written: tuple[Path, np.ndarray]) -> None:
    _source(tmp_path / "ct")
    with pytest.raises(ValueError, match="frame of reference") as info:
        read_dicom_seg(written[0], tmp_path / "ct")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "meaning", "category", "side"), [
    ("LeftParotid", "Parotid gland", "Anatomical Structure", "Left"),
    ("Parotid_R", "Parotid gland", "Anatomical Structure", "Right"),
    ("SpinalCord", "Spinal cord", "Anatomical Structure", None),
    ("Brainstem", "Brain Stem", "Anatomical Structure", None),
    ("esophagus", "Esophagus", "Anatomical Structure", None),
    ("Larynx", "Larynx", "Anatomical Structure", None),
    ("Mandible", "Mandible", "Anatomical Structure", None),
    ("hippocampus", "Hippocampus", "Anatomical Structure", None),
    ("vertebrae_L5", "Vertebra", "Anatomical Structure", None),
    ("urinary_bladder", "Bladder", "Anatomical Structure", None),
    ("kidneys", "Kidney", "Anatomical Structure", None),
    ("tumour", "Neoplasm", "Morphologically Abnormal Structure", None),
    ("PTV56", "Tissue", "Tissue", None),
    ("Anterior", "Tissue", "Tissue", None),
])
def test_label_names_get_snomed_codes(name: str, meaning: str, category: str, side: str | None) -> None:
    coding = segment_coding(name)
    assert (coding.type.meaning, coding.category.meaning) == (meaning, category)
    assert (coding.laterality.meaning if coding.laterality else None) == side
