"""De-identification (PS3.15 Annex E, deny by default): planted PHI must not survive in any output byte or path.

Every place a review found PHI surviving (issue 20), and others, gets its own marker (``PHI<place><number>``, one word,
so that the identifier check of kept text cannot hide a failure of the deny rule by matching a shared word). The
markers are planted into the real MR series (a few slices) and into synthetic CT, US, SC and SR files; ``medsight
deid`` runs through the CLI; then every byte of every file under OUT, the quarantine folder and the audit CSV, and
every output path, is searched (case-insensitively) for every marker.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, generate_uid

from _factory import load_dicom_factory
from medsight.cli.app import main
from medsight.errors import MedsightError
from medsight.io import deid_folder, read_image
from medsight.io.deid import DeidKey, DeidOptions
from medsight.io.deid_folder import INCOMPLETE_MARKER, QUARANTINE_REPORT, deidentify_folder
from medsight.io.deid_profile import (
    Identifiers,
    basic_profile,
    burned_in_risk,
    identifying_tokens,
    is_clean_descriptor,
    keep_lists,
)

UNKNOWN_PUBLIC, UNKNOWN_NESTED = 0x00108888, 0x00209999  # even groups, in neither pydicom's dictionary nor the table
NAME = "PHIName7731"
PATIENT_ID = "PHIPatientID1001"
#: top-level attributes and their planted values (the value is the marker, or holds it).
TOP = {
    "PatientName": f"Doe^{NAME}", "PatientID": PATIENT_ID, "OtherPatientNames": "PHIOtherNames1002",
    "IssuerOfPatientID": "PHIIssuer1003", "PatientAddress": "PHIAddress1004", "PatientTelephoneNumbers": "PHIPhone1005",
    "InstitutionName": "PHIInstitution1006", "InstitutionAddress": "PHIInstAddress1007",
    "InstitutionalDepartmentName": "PHIDepartment1008", "ReferringPhysicianName": "PHIReferrer1009",
    "OperatorsName": "PHIOperator1010", "PerformingPhysicianName": "PHIPerformer1011", "AccessionNumber": "PHIAcc1012",
    "StudyID": "PHIStudyID1013", "StationName": "PHIStation1014", "DeviceSerialNumber": "PHISerial1015",
    "StudyDescription": "PHIStudyDesc 101600", "SeriesDescription": "Doe PHISeriesDesc1017",
    "ProtocolName": "PHIProtocol 101800", "ImageFilterDescription": "PHIImageFilterDesc 101900",
    "CommentsOnTheScheduledProcedureStep": "PHICommentsSPS1020", "ImageComments": "PHIImageComments1021",
    "PatientComments": "PHIPatientComments1022", "AdditionalPatientHistory": "PHIHistory1023",
    "AcquisitionComments": "PHIAcqComments1024", "EthnicGroup": "PHIEthnic1025", "TextValue": "PHITextValue7731",
    "SoftwareVersions": f"V1 {PATIENT_ID}", "BodyPartExamined": "PHIBodyPart1801",
    "PatientBirthDate": "19610423", "PatientBirthTime": "093117.123456", "DateOfGainCalibration": "19950312",
    "TimeOfGainCalibration": "141516.171819", "StudyUpdateDateTime": "20200227131415",
    "MultiFrameSourceSOPInstanceUID": "1.2.826.0.1.3680043.10.7731.1167",
    "RetrieveLocationUID": "1.2.826.0.1.3680043.10.7731.4011",
}
#: markers that an option keeps by design: (marker, option flags under which it stays).
KEPT_BY = {"PHIStation1014": "--keep-device-identity", "PHISerial1015": "--keep-device-identity",
           "PHIEthnic1025": "--keep-patient-characteristics", "141516.171819": "--shift-dates",
           "121314.151617": "--shift-dates"}
NESTED = {  # planted inside sequences (see _plant)
    "OtherPatientIDsSequence": ["PHIOtherPID1601", "PHIOtherIssuer1602"],
    "RequestAttributesSequence": ["PHIReqProcID1401", "PHISPSDesc1402", "PHIProtocolCode1403",
                                  "PHIUnknownNested9999", "PHINestedPrivate1102"],
    "kept sequences": ["PHIRefAcc1501", "PHISharedNested1502", "19880808", "PHIRefPrivate1503"],
    "ContentSequence": ["PHISRText1701", "PHISRPerson1702", "20190505050505", "19770707", "121314.151617",
                        "1.2.826.0.1.3680043.10.7731.1703", "20180404040404"],
    "other": ["PHIUnknownPublic8888", "PHIPrivate1101", "PHIPrivCreator1100", "PHIOverlay1201", "PHICurve1202",
              "PHIPreamble1301", "PHIAE1302"],
}
FOLDER, FILE = f"Doe_{NAME}_PHIFolder5521", "PHIFileName8812"


def _markers() -> set[str]:
    found = {NAME, PATIENT_ID, FOLDER, FILE}
    found |= {v for k, v in TOP.items() if k not in ("PatientName", "SeriesDescription", "SoftwareVersions")}
    found |= {v.split()[0] for v in TOP.values() if " " in v}  # the marker word of multi-word values
    return found | {m for ms in NESTED.values() for m in ms}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(value_type: str, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", value_type
    item.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _plant(ds: Dataset) -> Dataset:
    """Plant every marker of TOP and NESTED into ``ds`` (its own UIDs stay: originals must not survive either)."""
    for keyword, value in TOP.items():
        setattr(ds, keyword, value)
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID = NESTED["OtherPatientIDsSequence"] + ["TEXT"]
    ds.OtherPatientIDsSequence = Sequence([other])
    request = Dataset()  # two deep: RequestAttributesSequence > item > ScheduledProtocolCodeSequence > item
    request.RequestedProcedureID, request.ScheduledProcedureStepDescription = NESTED["RequestAttributesSequence"][:2]
    code = _code("P1", "99LOCAL", NESTED["RequestAttributesSequence"][2])
    code.add_new(UNKNOWN_NESTED, "LO", NESTED["RequestAttributesSequence"][3])
    code.add_new(0x00290010, "LO", "LOCAL CREATOR")
    code.add_new(0x00291010, "LO", NESTED["RequestAttributesSequence"][4])
    request.ScheduledProtocolCodeSequence = Sequence([code])
    ds.RequestAttributesSequence = Sequence([request])
    ref = Dataset()  # kept sequences must be cleaned by the same rules, one and two levels down
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ref.AccessionNumber = NESTED["kept sequences"][0]
    ref.add_new(0x00290010, "LO", "LOCAL CREATOR")
    ref.add_new(0x00291011, "LO", NESTED["kept sequences"][3])
    ds.SourceImageSequence = Sequence([ref])
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 1.0
    measures.ImageComments, measures.DateOfGainCalibration = NESTED["kept sequences"][1:3]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.AnatomicRegionSequence = Sequence([_code("T-A0100", "SRT", f"Brain of {NAME}")])
    sr = NESTED["ContentSequence"]  # three deep: container > container > items
    leaves = [_item("TEXT", TextValue=sr[0]), _item("PNAME", PersonName=sr[1]), _item("DATETIME", DateTime=sr[2]),
              _item("DATE", Date=sr[3]), _item("TIME", Time=sr[4]), _item("UIDREF", UID=sr[5]),
              _item("CODE", ConceptCodeSequence=Sequence([_code("C1", "99LOCAL", f"{NAME} code")])),
              _item("TEXT", TextValue="ok", ObservationDateTime=sr[6])]
    inner = _item("CONTAINER", ContinuityOfContent="SEPARATE", ContentSequence=Sequence(leaves))
    ds.ContentSequence = Sequence([_item("CONTAINER", ContinuityOfContent="SEPARATE",
                                         ContentSequence=Sequence([inner]))])
    ds.add_new(UNKNOWN_PUBLIC, "LO", "PHIUnknownPublic8888")
    ds.add_new(0x00090010, "LO", "PHIPrivCreator1100")
    ds.add_new(0x00091001, "LO", "PHIPrivate1101")
    ds.add_new(0x60004000, "LT", "PHIOverlay1201")
    ds.add_new(0x50003000, "OB", b"PHICurve1202")
    ds.preamble = b"PHIPreamble1301".ljust(128, b"\x00")
    ds.file_meta.SourceApplicationEntityTitle = "PHIAE1302"
    return ds


def _save_planted(src: Path, dst: Path) -> dict[str, str]:
    """Plant markers into the DICOM file ``src``, write it to ``dst``; returns its original UIDs."""
    ds = pydicom.dcmread(src)
    uids = {k: str(ds[k].value) for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID") if k in ds}
    if "FrameOfReferenceUID" in ds:
        uids["FrameOfReferenceUID"] = str(ds.FrameOfReferenceUID)
    dst.parent.mkdir(parents=True, exist_ok=True)
    _plant(ds).save_as(dst, enforce_file_format=True)
    return uids


@pytest.fixture
def synthetic(tmp_path: Path) -> dict[str, object]:
    """A planted CT series (3 slices), a CT with BurnedInAnnotation YES, a US and an SC without it, an SR."""
    factory = load_dicom_factory()
    raw = tmp_path / "raw"
    series = factory.write_series(raw / "ct", n_slices=3, modality="CT", slope=1.0, intercept=-1024.0)
    extra = factory.write_series(raw / "yes", n_slices=1, modality="CT", study_uid=series.study_uid).paths
    us = factory.write_xray(raw / "us.dcm", modality="US")[0]
    sc = factory.write_color(raw / "sc.dcm")[0]
    sr = factory.write_non_image(raw / "sr.dcm", series_uid=generate_uid(), study_uid=series.study_uid)
    root = tmp_path / "in" / FOLDER
    originals: dict[str, dict[str, str]] = {}
    for i, path in enumerate([*series.paths, *extra, us, sc, sr]):
        name = f"{FILE}_{i}.dcm"
        originals[name] = _save_planted(path, root / name)
    ds = pydicom.dcmread(root / f"{FILE}_3.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(root / f"{FILE}_3.dcm", enforce_file_format=True)
    for name in (f"{FILE}_0.dcm", f"{FILE}_1.dcm", f"{FILE}_2.dcm", f"{FILE}_6.dcm"):
        ds = pydicom.dcmread(root / name)
        ds.BurnedInAnnotation = "NO"
        ds.save_as(root / name, enforce_file_format=True)
    return {"root": tmp_path / "in", "originals": originals, "series": series}


def _surviving(markers: set[str], *places: Path) -> list[tuple[str, str]]:
    """``(marker, where)`` for every marker found in any byte or path under ``places`` (files or folders)."""
    hits = []
    for place in places:
        files = [place] if place.is_file() else sorted(p for p in place.rglob("*")) if place.exists() else []
        for f in files:
            where = str(f.relative_to(place.parent)).lower()
            data = f.read_bytes().lower() if f.is_file() else b""
            hits += [(m, str(f)) for m in markers if m.lower() in where or m.lower().encode() in data]
    return hits


def _one_error_line(err: str) -> str:
    """The one ``medsight: error:`` line of ``err`` (pydicom may warn there too about the planted values)."""
    lines = [line for line in err.splitlines() if line.startswith("medsight:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------- tables
def test_keep_lists_are_dicom_attributes_and_leave_listed_ones_to_the_table() -> None:
    lists = keep_lists()
    table = basic_profile()
    assert len(lists["base"]) > 200 and lists["replace"]
    assert not set(lists["base"]) & set(table)  # Table E.1-1 decides what it lists; options may override it
    assert all(not pydicom.tag.Tag(t).is_private for name in lists for t in lists[name])
    for name, expected in (("patient", "PatientAge"), ("device", "StationName"), ("descriptors", "SeriesDescription")):
        assert expected in {kw for kw, _ in lists[name].values()}
    for keyword in ("TextValue", "ImageFilterDescription", "CommentsOnTheScheduledProcedureStep",
                    "MultiFrameSourceSOPInstanceUID", "RetrieveLocationUID", "PatientBirthTime"):
        assert keyword not in {kw for kw, _ in lists["base"].values()}


def test_clean_descriptor_rule() -> None:
    ids = Identifiers(frozenset({"doe", "jonathan"}), frozenset({"mrn99812377"}))
    for kept in ("T1post", "FH-HEAD^Brain Protocols", "AX LUNG 1.25mm", "b1000 DWI", "MR RCBV SEQUENCE"):
        assert is_clean_descriptor(kept, ids), kept
    for removed in ("CT CHEST for Jonathan", "AX Doe lung", "CT 2021-03-15", "call +61-555-0199", "MRN99812377 x",
                    "see https://example.org", "a@b.org", "x" * 65, "study 20210315"):
        assert not is_clean_descriptor(removed, ids), removed


def test_burned_in_risk_rule() -> None:
    def ds(**values: str) -> Dataset:
        d = Dataset()
        for k, v in values.items():
            setattr(d, k, v)
        return d

    assert burned_in_risk(ds(Modality="CT", BurnedInAnnotation="YES")) == "BurnedInAnnotation = YES"
    for modality in ("US", "SC", "XC", "OT", "ES"):
        assert burned_in_risk(ds(Modality=modality)) == f"BurnedInAnnotation missing on modality {modality}"
    assert burned_in_risk(ds(Modality="MG", SOPClassUID="1.2.840.10008.5.1.4.1.1.7.2")) is not None
    assert burned_in_risk(ds(Modality="US", BurnedInAnnotation="NO")) is None  # the modality's word is trusted
    assert burned_in_risk(ds(Modality="MR")) is None
    assert burned_in_risk(ds(Modality="XC", SOPClassUID="1.2.840.10008.5.1.4.1.1.77.1.4")) is not None


# ------------------------------------------------------------------------------------------- planted PHI
@pytest.mark.parametrize("flags", [[], ["--shift-dates", "--clean-descriptors"],
                                   ["--shift-dates", "--clean-descriptors", "--keep-patient-characteristics",
                                    "--keep-device-identity"]], ids=["basic", "dates+descriptors", "all_options"])
def test_no_planted_phi_survives(synthetic: dict[str, object], tmp_path: Path, flags: list[str],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    root, originals = synthetic["root"], synthetic["originals"]
    assert isinstance(root, Path) and isinstance(originals, dict)
    before = _hashes(root)
    out, key = tmp_path / "out", tmp_path / "deid.key"
    assert main(["-q", "deid", str(root), str(out), "--key", str(key), *flags]) == 0
    stdout = capsys.readouterr().out
    assert "de-identified 4 file(s)" in stdout and "quarantined 3 file(s)" in stdout
    assert _hashes(root) == before  # the input is never modified
    kept = {m for m, flag in KEPT_BY.items() if flag in flags}
    secrets = (_markers() - kept) | {u for uids in originals.values() for u in uids.values()}
    places = (out, tmp_path / "out_quarantine", tmp_path / "out_deid_audit.csv")
    assert _surviving(secrets, *places) == []
    if kept:  # the options do keep what they promise (so the search above is not vacuous)
        assert {m for m, _ in _surviving(kept, out)} == kept
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert ds.preamble == b"\x00" * 128 and path.read_bytes()[:128] == b"\x00" * 128
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert not any(e.tag.is_private or e.tag.group >> 8 in (0x50, 0x60) for e in ds.iterall())
        leaf = ds.ContentSequence[0].ContentSequence[0].ContentSequence
        assert leaf[0].TextValue == "ANONYMIZED" and leaf[1].PersonName == "ANONYMOUS"
        assert leaf[5].UID.startswith("2.25.")


def test_real_mr_series_keeps_pixels_geometry_and_links(shared_data: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    series = shared_data / "tcia_pgbm005_mr_t1post_dicom" / "volume"
    root = tmp_path / "in" / FOLDER
    by_instance = sorted(series.iterdir(), key=lambda f: int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber))
    originals = [_save_planted(f, root / f"{FILE}_{i}.dcm") for i, f in enumerate(by_instance[:4])]
    identifying = {"PGBM-005", "2721434998651531"} | {u for o in originals for u in o.values()}
    out = tmp_path / "out"
    assert main(["-q", "deid", str(tmp_path / "in"), str(out), "--clean-descriptors"]) == 0
    capsys.readouterr()
    assert _surviving(_markers() | identifying, out, tmp_path / "out_deid_audit.csv") == []
    outputs = sorted(out.rglob("*.dcm"))
    assert len(outputs) == 4 and len({p.parent for p in outputs}) == 1
    new = [pydicom.dcmread(p) for p in outputs]
    assert len({d.SeriesInstanceUID for d in new}) == len({d.StudyInstanceUID for d in new}) == 1
    assert len({d.FrameOfReferenceUID for d in new}) == 1 and len({d.SOPInstanceUID for d in new}) == 4
    by_pixels = {pydicom.dcmread(p).PixelData: p for p in root.iterdir()}
    assert all(d.PixelData in by_pixels for d in new)  # pixel data byte for byte
    assert new[0].ContrastBolusAgent == "10cc Multihance" and new[0].Manufacturer == "SIEMENS"  # clean: kept
    before, after = read_image(root), read_image(outputs[0].parent)
    np.testing.assert_array_equal(before.array, after.array)
    np.testing.assert_allclose(after.spacing, before.spacing)
    np.testing.assert_allclose(after.origin, before.origin)
    np.testing.assert_allclose(after.direction, before.direction)


def test_pydicom_test_files_lose_their_identifying_values(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    values: set[str] = set()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "test-SR.dcm"):
        shutil.copyfile(str(get_testdata_file(name)), root / name)
        ds = pydicom.dcmread(root / name)
        ids = identifying_tokens(ds)
        values |= {w for w in ids.wholes if len(w) >= 6 and len(set(w)) > 2}  # not '000000000'
        values |= {str(ds[k].value) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if k in ds}
    result = deidentify_folder(root, tmp_path / "out", key=DeidKey("11" * 32))
    assert len(result.written) == 4 and not result.skipped
    for _, out in result.written:
        flat = "".join(ch for ch in out.read_bytes().decode("latin-1").lower() if ch.isalnum())
        assert [v for v in values if v.lower() in flat or v in out.read_bytes().decode("latin-1")] == []


# --------------------------------------------------------------------------------------------- UIDs, dates
def _linked(tmp_path: Path) -> Path:
    root = tmp_path / "linked"
    study, frame, s1, s2, a = generate_uid(), generate_uid(), generate_uid(), generate_uid(), generate_uid()
    for name, series, sop, ref in (("first", s1, a, None), ("second", s1, generate_uid(), None),
                                   ("third", s2, generate_uid(), a)):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, sop, "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.StudyDate, ds.ContentDate, ds.StudyTime = PATIENT_ID, "20210315", "20210316", "101500"
        ds.PatientBirthDate, ds.PatientBirthTime, ds.BurnedInAnnotation = "19610423", "093117", "NO"
        if ref:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = CTImageStorage, ref
            ds.ReferencedImageSequence = Sequence([item])
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        root.mkdir(parents=True, exist_ok=True)
        ds.save_as(root / f"{name}.dcm", enforce_file_format=True)
    return root


def test_uids_link_within_a_run_and_across_runs_with_one_key(tmp_path: Path) -> None:
    root, key = _linked(tmp_path), DeidKey("22" * 32)
    result = deidentify_folder(root, tmp_path / "out", key=key)
    out = {src.name: pydicom.dcmread(dst) for src, dst in result.written}
    a, b, c = out["first.dcm"], out["second.dcm"], out["third.dcm"]
    assert a.StudyInstanceUID == b.StudyInstanceUID == c.StudyInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID != c.SeriesInstanceUID
    assert a.FrameOfReferenceUID == c.FrameOfReferenceUID
    assert c.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID  # the reference still links
    assert a.PatientID == c.PatientID == key.pseudonym(PATIENT_ID)
    again = deidentify_folder(root, tmp_path / "out2", key=key)
    assert {d.relative_to(tmp_path / "out2") for _, d in again.written} == {
        d.relative_to(tmp_path / "out") for _, d in result.written}
    rows = list(csv.DictReader(result.audit_csv.open()))
    assert result.audit_csv.parent == tmp_path  # beside OUT_DIR, not inside it
    assert {r["action"] for r in rows} >= {"removed", "emptied", "replaced", "uid replaced", "added"}
    assert {r["input_sha256"] for r in rows} == {hashlib.sha256(p.read_bytes()).hexdigest()[:16]
                                                 for p in root.iterdir()}
    assert "first" not in result.audit_csv.read_text()  # inputs are named by content, not by path


def test_date_shift_moves_dates_keeps_times_and_never_keeps_birth(tmp_path: Path) -> None:
    key = DeidKey("33" * 32)
    result = deidentify_folder(_linked(tmp_path), tmp_path / "out", key=key, options=DeidOptions(shift_dates=True))
    a = pydicom.dcmread(next(d for s, d in result.written if s.name == "first.dcm"))
    days = key.date_shift_days(PATIENT_ID)
    assert -3650 <= days <= -365
    assert a.StudyDate == (dt.date(2021, 3, 15) + dt.timedelta(days=days)).strftime("%Y%m%d")
    assert (dt.datetime.strptime(a.ContentDate, "%Y%m%d") - dt.datetime.strptime(a.StudyDate, "%Y%m%d")).days == 1
    assert a.StudyTime == "101500"  # whole-day shift: times kept (only with this option)
    assert a.PatientBirthDate == "" and "PatientBirthTime" not in a  # the profile's Z and X, not shifted
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    assert [c.CodeValue for c in a.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    plain = deidentify_folder(_linked(tmp_path / "p"), tmp_path / "out_plain", key=key)
    b = pydicom.dcmread(plain.written[0][1])
    assert b.StudyTime == "" and b.StudyDate == "" and b.LongitudinalTemporalInformationModified == "REMOVED"


# ------------------------------------------------------------------------------------- burned-in quarantine
def test_burned_in_risk_is_quarantined_unless_accepted(synthetic: dict[str, object], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = synthetic["root"]
    assert isinstance(root, Path)
    out, quarantine = tmp_path / "out", tmp_path / "held"
    assert main(["-q", "deid", str(root), str(out), "--quarantine", str(quarantine)]) == 0
    stdout = capsys.readouterr().out
    assert f"quarantined 3 file(s) with a burned-in annotation risk into {quarantine}" in stdout
    held = sorted(quarantine.rglob("*.dcm"))
    assert len(held) == 3 and len(list(out.rglob("*.dcm"))) == 4
    assert {pydicom.dcmread(p).Modality for p in held} == {"CT", "US", "OT"}
    assert {pydicom.dcmread(p).SOPInstanceUID for p in held}.isdisjoint(
        pydicom.dcmread(p).SOPInstanceUID for p in out.rglob("*.dcm"))
    rows = list(csv.DictReader((quarantine / QUARANTINE_REPORT).open()))
    assert sorted(r["reason"] for r in rows) == ["BurnedInAnnotation = YES", "BurnedInAnnotation missing on modality OT",
                                                 "BurnedInAnnotation missing on modality US"]
    assert _surviving(_markers(), quarantine) == []  # headers de-identified there too
    accepted = tmp_path / "accepted"
    assert main(["-q", "deid", str(root), str(accepted), "--accept-burned-in"]) == 0
    err = capsys.readouterr().err
    assert "3 file(s) with a burned-in annotation risk written" in err
    assert len(list(accepted.rglob("*.dcm"))) == 7 and not (tmp_path / "accepted_quarantine").exists()


# ---------------------------------------------------------------------------------------------- locations
@pytest.mark.parametrize("case", ["out_in_in", "out_is_in", "out_holds_in", "audit_in_out", "audit_is_an_input",
                                  "key_in_out", "key_in_in", "quarantine_in_out"])
def test_outputs_apart_from_input_and_shared_output(synthetic: dict[str, object], tmp_path: Path, case: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = synthetic["root"]
    assert isinstance(root, Path)
    an_input = next(root.rglob("*.dcm"))
    out = {"out_in_in": root / "deid", "out_is_in": root, "out_holds_in": tmp_path}.get(case, tmp_path / "out")
    extra = {"audit_in_out": ["--audit", str(out / "audit.csv")], "audit_is_an_input": ["--audit", str(an_input)],
             "key_in_out": ["--key", str(out / "k.key")], "key_in_in": ["--key", str(root / "k.key")],
             "quarantine_in_out": ["--quarantine", str(out / "q")]}.get(case, [])
    before = _hashes(tmp_path)
    assert main(["-q", "deid", str(root), str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert _one_error_line(err).startswith("medsight: error: Expected ")
    assert _hashes(tmp_path) == before  # nothing written, nothing replaced


def test_shift_dates_needs_a_key_and_the_key_is_private(synthetic: dict[str, object], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = synthetic["root"]
    assert isinstance(root, Path)
    assert main(["-q", "deid", str(root), str(tmp_path / "o"), "--shift-dates"]) == 2
    assert "--key" in capsys.readouterr().err
    key = tmp_path / "study.key"
    assert main(["-q", "deid", str(root), str(tmp_path / "o"), "--key", str(key), "--shift-dates"]) == 0
    assert "new key written" in capsys.readouterr().out and key.stat().st_mode & 0o077 == 0
    assert DeidKey.load_or_create(key)[1] is False


# ------------------------------------------------------------------------------------- incomplete runs
def _disk_full(kind: str, target: Path) -> BaseException:
    """The error a full disk gives: plain, as pydicom's writer re-raises it (a new OSError without errno, with a
    traceback in its message), or as medsight's atomic write turns it into a MedsightError."""
    plain = OSError(errno.ENOSPC, "No space left on device", str(target))
    if kind == "plain":
        return plain
    wrapped = OSError(f"With tag (7FE0,0010) got exception: {plain}\nTraceback (most recent call last):\n  ...")
    wrapped.__cause__ = plain
    if kind == "pydicom":
        return wrapped
    error = MedsightError(f"Expected free disk space to write {target}, got 'no space left on device'; free space")
    error.__cause__ = plain
    return error


@pytest.mark.parametrize("kind", ["plain", "pydicom", "atomic"])
def test_disk_full_midway_leaves_a_marker_and_one_line(synthetic: dict[str, object], tmp_path: Path, kind: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A real full disk cannot be made in a test: the writer is patched to raise ENOSPC after two files, in the
    three shapes the error reaches deid in (checked by hand on a 1 MB tmpfs with the real MR series: 6 of 24 files,
    then the same one-line error)."""
    root = synthetic["root"]
    assert isinstance(root, Path)
    out, real_write, calls = tmp_path / "out", deid_folder.write_output, []

    def fill_up(data: bytes, target: Path) -> None:
        calls.append(target)
        if len(calls) > 2:
            raise _disk_full(kind, target)
        real_write(data, target)

    monkeypatch.setattr(deid_folder, "write_output", fill_up)
    assert main(["-q", "deid", str(root), str(out)]) == 2
    err = capsys.readouterr().err
    line = _one_error_line(err)
    assert "no space left on device" in line and "after 2 of 7 file(s)" in line
    assert INCOMPLETE_MARKER in err and "INCOMPLETE" in (out / INCOMPLETE_MARKER).read_text()
    assert len([p for p in out.rglob("*.dcm")]) + len(list((tmp_path / "out_quarantine").rglob("*.dcm"))) == 2
    monkeypatch.setattr(deid_folder, "write_output", real_write)
    assert main(["-q", "deid", str(root), str(out)]) == 0  # the rerun completes and removes the marker
    assert not (out / INCOMPLETE_MARKER).exists()


def test_unreadable_input_is_listed_and_marked(synthetic: dict[str, object], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = synthetic["root"]
    assert isinstance(root, Path)
    (root / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"\x01" * 9)
    out = tmp_path / "out"
    assert main(["-q", "deid", str(root), str(out)]) == 1
    assert "1 unreadable DICOM file(s) not written" in capsys.readouterr().err
    assert "could not read 1 of 8" in (out / INCOMPLETE_MARKER).read_text()
    rows = list(csv.DictReader((tmp_path / "out_deid_audit.csv").open()))
    assert [r["action"] for r in rows].count("skipped") == 1


def test_malformed_values_are_removed_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A US value of 3 bytes (top level and inside a kept sequence): pydicom cannot convert it; it is removed."""
    root = _linked(tmp_path)
    path = root / "first.dcm"
    ds = pydicom.dcmread(path)
    ds.Rows = 8
    shared = Dataset()
    shared.Columns = 6  # not where Columns belongs: it only has to be a US inside a kept sequence
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    for tag in (b"\x28\x00\x10\x00", b"\x28\x00\x11\x00"):  # (0028,0010), (0028,0011): US, length 2 -> 3
        at = data.index(tag + b"US\x02\x00")
        data = data[:at + 6] + b"\x03\x00\x01" + data[at + 8:]
        if tag.endswith(b"\x11\x00"):  # nested: the item length (just before) and the sequence length grow too
            for length_at in (at - 4, at - 12):
                n = int.from_bytes(data[length_at:length_at + 4], "little") + 1
                data = data[:length_at] + n.to_bytes(4, "little") + data[length_at + 4:]
    path.write_bytes(data)
    with pytest.raises(Exception, match="length 3"):
        _ = pydicom.dcmread(path).SharedFunctionalGroupsSequence[0].Columns
    with pytest.raises(Exception, match="length 3"):
        _ = pydicom.dcmread(path).Rows
    assert main(["-q", "deid", str(root), str(tmp_path / "out")]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader((tmp_path / "out_deid_audit.csv").open()))
    removed = {r["element"] for r in rows if r["rule"] == "unreadable value"}
    assert removed == {"(0028,0010)", "SharedFunctionalGroupsSequence[0].(0028,0011)"}
