"""Source-series header repairs before a DICOM-SEG is derived (medsight.io.dicom_repair), on synthetic series damaged
the way anonymisers and old scanners damage real ones (the real cases are in test_seg_interop.py)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_factory import write_series

from medsight.io import read_image
from medsight.io.dicom_repair import load_source_series
from medsight.io.dicom_seg import read_dicom_seg, require_series_input, write_dicom_seg


def _damage(folder: Path, n: int = 3, *, charset: bytes | None = None, name: str = "Doe^John",
            written_as: str = "ISO_IR 100", **values: object) -> list[Path]:
    """A synthetic CT series whose files then get ``values`` (keyword -> value; ``None`` deletes) and, when given,
    the raw SpecificCharacterSet bytes ``charset`` (10 bytes) in place of ``written_as``, the set the text was
    encoded with."""
    paths = write_series(folder, n_slices=n, rows=6, columns=5, modality="CT").paths
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = written_as
        ds.PatientName = name
        with warnings.catch_warnings():  # pydicom warns about the invalid values planted here
            warnings.simplefilter("ignore", UserWarning)
            for keyword, value in values.items():
                if value is None:
                    delattr(ds, keyword)
                else:
                    setattr(ds, keyword, value)
        ds.save_as(path)
        if charset is not None:
            path.write_bytes(path.read_bytes().replace(written_as.encode(), charset))
    return paths


def _repairs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "repaired the headers" in r.getMessage()]


def test_anonymised_series_is_repaired_in_one_line_and_the_seg_references_real_instances(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = _damage(tmp_path / "ct", SOPClassUID="", SOPInstanceUID="", StudyInstanceUID="", SeriesInstanceUID="",
                    PatientID=None, SeriesNumber=None, charset=b"          ")
    image = read_image(tmp_path / "ct")
    lab = np.zeros(image.array.shape, np.uint8)
    lab[0, 1, 2:4, 1:3] = 1
    with caplog.at_level(logging.WARNING, logger="medsight"):
        write_dicom_seg(image.with_array(lab), tmp_path / "ct", tmp_path / "seg.dcm", label_names={"liver": 1})
    (line,) = _repairs(caplog)
    for repaired in ("SOPClassUID missing: taken from the file meta (3 of 3 files)", "SOPInstanceUID missing",
                     "StudyInstanceUID missing: derived", "SeriesInstanceUID missing: derived",
                     "PatientID absent: added empty", "SeriesNumber missing: set to 1",
                     "SpecificCharacterSet '' invalid: dropped (ASCII text)"):
        assert repaired in line
    assert str(tmp_path / "ct") in line and "\n" not in line
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    metas = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID) for p in paths}
    assert {u for _, _, u in seg.get_source_image_uids()} == metas
    again = load_source_series(tmp_path / "ct", "", level=logging.DEBUG)  # derived UIDs are the same each time
    assert seg.StudyInstanceUID == again[0].StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == again[0].SeriesInstanceUID
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "seg.dcm", tmp_path / "ct").array, lab)


@pytest.mark.parametrize(("written_as", "charset", "name", "expected"), [
    ("ISO_IR 100", b"ISO-8859-1", "M\u00fcller^J\u00f6rg", "ISO_IR 100"),  # Latin-1 text, a term DICOM lacks
    ("ISO_IR 192", b"UTF8      ", "M\u00fcller^J\u00f6rg", "ISO_IR 192"),  # UTF-8 text
    ("ISO_IR 100", b"ISO_IR 6  ", "Doe^John", None),  # ASCII: the default repertoire, dropped
])
def test_invalid_character_set_is_chosen_from_the_text(tmp_path: Path, written_as: str, charset: bytes, name: str,
                                                       expected: str | None) -> None:
    _damage(tmp_path / "ct", n=1, name=name, charset=charset, written_as=written_as)
    (ds,) = load_source_series(tmp_path / "ct")
    assert ds.get("SpecificCharacterSet") == expected
    assert str(ds.PatientName) == name


def test_defects_that_cannot_be_repaired_name_the_file_and_tag(tmp_path: Path) -> None:
    paths = _damage(tmp_path / "a", n=2, SOPInstanceUID="")
    ds = pydicom.dcmread(paths[1])
    ds.file_meta.MediaStorageSOPInstanceUID = ""
    ds.save_as(paths[1])
    with pytest.raises(ValueError, match=r"SOPInstanceUID \(0008,0018\).*slice_001\.dcm") as info:
        load_source_series(tmp_path / "a")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"SOPInstanceUID \(0008,0018\)"):  # predict --dicom-seg checks first
        require_series_input(read_image(tmp_path / "a"), tmp_path / "a")
    paths = _damage(tmp_path / "b", n=2)
    ds = pydicom.dcmread(paths[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.dcmread(paths[1]).SOPInstanceUID
    ds.save_as(paths[0])
    with pytest.raises(ValueError, match=r"one file per SOPInstanceUID"):
        load_source_series(tmp_path / "b")


def test_values_highdicom_refuses_are_emptied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _damage(tmp_path / "ct", n=2, PatientSex="Male", StudyDate="2003-04-17", PatientBirthDate="unknown")
    with caplog.at_level(logging.WARNING, logger="medsight"):
        datasets = load_source_series(tmp_path / "ct")
    assert {str(ds.PatientSex) for ds in datasets} == {""} and {str(ds.StudyDate) for ds in datasets} == {""}
    (line,) = _repairs(caplog)
    assert "PatientSex 'Male' not M/F/O: emptied (2 of 2 files)" in line and "StudyDate '2003-04-17'" in line
