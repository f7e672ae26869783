"""De-identification (PS3.15 Annex E Basic Profile): planted PHI must not survive anywhere in the output."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medsight.cli.app import main
from medsight.io.deid import DeidKey, basic_profile, deidentify_folder

#: every planted identifying value; none may appear in any output byte or element value.
PHI = {
    "name": "Doe^Jonathan^Q", "id": "MRN-99812377", "birth": "19610423", "address": "42 Wallaby Way Sydney",
    "phone": "+61-555-0199", "other_name": "Smith^Jonathan", "institution": "St Elsewhere Hospital",
    "inst_address": "1 Hospital Road Springfield", "referrer": "House^Gregory", "operator": "Quinn^Harleen",
    "accession": "ACC20210077", "study_desc": "CT CHEST for Jonathan", "series_desc": "AX Jonathan lung",
    "study_id": "STUDY8841", "station": "CTSCANNER-ROOM7", "study_date": "20210315", "content_date": "20210316",
    "private": "PRIVATE-Jonathan-RECORD", "nested_private": "NESTED-PRIVATE-Jonathan", "proc_id": "PROC-55811",
    "text_value": "Patient Jonathan Doe reports pain", "person_in_sr": "Watson^John", "overlay": "OVERLAY-Jonathan",
    "curve": "CURVE-Jonathan-DATA", "comments": "Jonathan allergic to iodine", "serial": "SN-778899",
    "issuer": "ElsewhereRegistry", "requesting": "Cuddy^Lisa",
}


def _phi_dataset(study: str, series: str, sop: str, frame_of_ref: str, *, z: float,
                 referenced_sop: str | None = None, burned_in: bool = False) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "ELSEWHERE_PACS"
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_ref
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, 1
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PHI["name"], PHI["id"], PHI["birth"]
    ds.PatientAddress, ds.PatientTelephoneNumbers = PHI["address"], PHI["phone"]
    ds.OtherPatientNames, ds.IssuerOfPatientID = PHI["other_name"], PHI["issuer"]
    ds.InstitutionName, ds.InstitutionAddress = PHI["institution"], PHI["inst_address"]
    ds.ReferringPhysicianName, ds.OperatorsName = PHI["referrer"], PHI["operator"]
    ds.AccessionNumber, ds.StudyID, ds.StationName = PHI["accession"], PHI["study_id"], PHI["station"]
    ds.StudyDescription, ds.SeriesDescription = PHI["study_desc"], PHI["series_desc"]
    ds.StudyDate, ds.SeriesDate, ds.ContentDate = PHI["study_date"], PHI["study_date"], PHI["content_date"]
    ds.StudyTime, ds.PatientComments, ds.DeviceSerialNumber = "101500", PHI["comments"], PHI["serial"]
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    # nested: request attributes, a reference to another instance, SR-like content with a name and free text
    req = Dataset()
    req.RequestedProcedureID, req.RequestingPhysician = PHI["proc_id"], PHI["requesting"]
    req.add_new(0x00291010, "LO", PHI["nested_private"])  # private tag inside a sequence item
    ds.RequestAttributesSequence = Sequence([req])
    if referenced_sop:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, referenced_sop
        ds.ReferencedImageSequence = Sequence([ref])
    text, person = Dataset(), Dataset()
    text.ValueType, text.TextValue = "TEXT", PHI["text_value"]
    text.add_new(0x00291010, "LO", PHI["nested_private"])  # private tag inside a kept sequence item
    person.ValueType, person.PersonName = "PNAME", PHI["person_in_sr"]
    ds.ContentSequence = Sequence([text, person])
    ds.add_new(0x00091001, "LO", PHI["private"])
    ds.add_new(0x60004000, "LT", PHI["overlay"])  # Overlay Comments
    ds.add_new(0x60003000, "OW", np.arange(64, dtype=np.uint16).tobytes())  # Overlay Data
    ds.add_new(0x50003000, "OB", PHI["curve"].encode() + b"\x00")  # Curve Data
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 16, 16, 15
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, z], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.PixelData = (np.arange(64, dtype=np.int16) * 7 + int(z)).tobytes()
    return ds


@pytest.fixture
def phi_folder(tmp_path: Path) -> dict[str, object]:
    """Two series of one study (the second references the first) plus pydicom's own PHI-carrying test files."""
    root = tmp_path / "in" / "Doe_Jonathan"  # the folder name itself is identifying
    root.mkdir(parents=True)
    study, for_uid = generate_uid(), generate_uid()
    s1, s2 = generate_uid(), generate_uid()
    uids = {"study": study, "for": for_uid, "s1": s1, "s2": s2, "a": generate_uid(), "b": generate_uid(),
            "c": generate_uid()}
    _phi_dataset(study, s1, uids["a"], for_uid, z=0.0).save_as(root / "a.dcm", enforce_file_format=True)
    _phi_dataset(study, s1, uids["b"], for_uid, z=1.0).save_as(root / "b.dcm", enforce_file_format=True)
    _phi_dataset(study, s2, uids["c"], for_uid, z=0.0, referenced_sop=uids["a"], burned_in=True).save_as(
        root / "c.dcm", enforce_file_format=True)
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "test-SR.dcm"):
        shutil.copyfile(str(get_testdata_file(name)), root / name)
    (root / "notes.txt").write_text("not DICOM")
    return {"root": tmp_path / "in", "uids": uids}


def _identifying_values(path: Path) -> set[str]:
    """Values of a pydicom test file that the profile must not let through (names, IDs, dates, instance UIDs,
    private text), at least 6 characters long so that chance matches are impossible, and not also part of a value
    the profile keeps (CT_small's InstitutionName 'TOSHIBA' is in its Manufacturer 'TOSHIBA_MEC')."""
    ds = pydicom.dcmread(path)
    table = basic_profile()
    found: set[str] = set()
    kept: list[str] = []

    def visit(d: Dataset, elem: pydicom.DataElement) -> None:
        if elem.VR == "SQ" or elem.tag == 0x7FE00010:
            return
        code = table.get(int(elem.tag), ("",))[0]
        values = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
        if elem.tag.is_private or code in ("X", "Z", "D", "U", "U*") or elem.VR == "PN":
            for v in values:
                if isinstance(v, (str, pydicom.valuerep.PersonName)) and len(str(v).strip(" ^")) >= 6:
                    found.add(str(v).strip())
        else:
            kept.extend(str(v) for v in values)
    ds.walk(visit)
    return {v for v in found if not any(v in k for k in kept)}


def _output_text(path: Path) -> tuple[bytes, str]:
    """The file's bytes without pixel data, and every element value as text (recursively)."""
    ds = pydicom.dcmread(path)
    raw = path.read_bytes()
    if "PixelData" in ds:
        raw = raw.replace(ds.PixelData, b"")
    values: list[str] = []
    ds.walk(lambda _d, e: values.append(str(e.value)) if e.VR != "SQ" and e.tag != 0x7FE00010 else None)
    values += [str(e.value) for e in ds.file_meta]
    return raw, "\n".join(values)


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_no_planted_phi_survives(phi_folder: dict[str, object], tmp_path: Path) -> None:
    root = phi_folder["root"]
    assert isinstance(root, Path)
    before = _hashes(root)
    originals = {p.name: _identifying_values(p) for p in root.rglob("*.dcm") if p.name not in "abc.dcm"}
    result = deidentify_folder(root, tmp_path / "out", key=DeidKey("11" * 32))
    assert _hashes(root) == before  # the input is never modified
    assert len(result.written) == 7 and not result.skipped and result.ignored == 1
    uids = phi_folder["uids"]
    assert isinstance(uids, dict)
    for src, out in result.written:
        raw, text = _output_text(out)
        assert "Jonathan" not in str(out.relative_to(tmp_path / "out"))  # nor in the output path
        secrets = list(PHI.values()) + list(uids.values()) + sorted(originals.get(src.name, set()))
        for value in secrets:
            assert value.encode() not in raw, f"{value!r} survived in {src.name}"
            assert value not in text, f"{value!r} survived in {src.name}"
        ds = pydicom.dcmread(out)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert not any(e.tag.is_private for e in ds.iterall())
        assert not any(0x5000 <= e.tag.group <= 0x60FF for e in ds.iterall())
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert pydicom.dcmread(src).PixelData == ds.PixelData if "PixelData" in ds else True


def test_uids_link_and_audit_has_no_values(phi_folder: dict[str, object], tmp_path: Path) -> None:
    root = phi_folder["root"]
    assert isinstance(root, Path)
    key = DeidKey("22" * 32)
    result = deidentify_folder(root, tmp_path / "out", key=key)
    out = {src.name: pydicom.dcmread(dst) for src, dst in result.written}
    a, b, c = out["a.dcm"], out["b.dcm"], out["c.dcm"]
    assert a.StudyInstanceUID == b.StudyInstanceUID == c.StudyInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID != c.SeriesInstanceUID
    assert a.FrameOfReferenceUID == c.FrameOfReferenceUID
    assert c.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID  # the reference still links
    assert a.PatientID == c.PatientID == key.pseudonym(PHI["id"]) and a.PatientName == ""
    assert a.ContentSequence[0].TextValue == "ANONYMIZED" and a.ContentSequence[1].PersonName == "ANONYMOUS"
    # same key, second run: the same new UIDs (follow-up exports link to the first)
    again = deidentify_folder(root, tmp_path / "out2", key=key)
    assert {d.name for _, d in again.written} == {d.name for _, d in result.written}
    assert [str(p) for p in result.burned_in] == [str(root / "Doe_Jonathan" / "c.dcm")]
    with result.audit_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert result.audit_csv.parent == tmp_path  # beside OUT_DIR, not inside it
    assert {r["action"] for r in rows} >= {"removed", "emptied", "replaced", "uid replaced", "added", "warning"}
    assert any(r["element"] == "ContentSequence[0].(0029,1010)" and r["rule"] == "private attribute" for r in rows)
    assert any(r["element"] == "RequestAttributesSequence" and r["action"] == "removed" for r in rows)
    audit = result.audit_csv.read_text()
    for value in PHI.values():
        assert value not in audit


def test_date_shift_is_per_patient_and_keeps_intervals(phi_folder: dict[str, object], tmp_path: Path) -> None:
    root = phi_folder["root"]
    assert isinstance(root, Path)
    key = DeidKey("33" * 32)
    result = deidentify_folder(root, tmp_path / "out", key=key, shift_dates=True)
    a = pydicom.dcmread(next(d for s, d in result.written if s.name == "a.dcm"))
    import datetime as dt

    days = key.date_shift_days(PHI["id"])
    assert -3650 <= days <= -365
    study = dt.datetime.strptime(PHI["study_date"], "%Y%m%d") + dt.timedelta(days=days)
    assert a.StudyDate == study.strftime("%Y%m%d")
    assert (dt.datetime.strptime(a.ContentDate, "%Y%m%d") - dt.datetime.strptime(a.StudyDate, "%Y%m%d")).days == 1
    assert a.StudyTime == "101500"  # whole-day shift: times kept
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    assert [c.CodeValue for c in a.DeidentificationMethodCodeSequence] == ["113100", "113107"]


def test_cli_deid(phi_folder: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = phi_folder["root"]
    assert isinstance(root, Path)
    key = tmp_path / "study.key"
    code = main(["deid", str(root), str(tmp_path / "out"), "--key", str(key), "--shift-dates"])
    out, err = capsys.readouterr()
    assert code == 0 and "de-identified 7 file(s)" in out and "new key written" in out
    assert "BurnedInAnnotation = YES" in err and key.stat().st_mode & 0o077 == 0
    assert DeidKey.load_or_create(key)[1] is False
    code = main(["deid", str(root), str(root / "inside")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "outside the input folder" in err
    code = main(["deid", str(root), str(tmp_path / "o3"), "--shift-dates"])
    _, err = capsys.readouterr()
    assert code == 2 and "--key" in err
