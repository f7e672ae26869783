"""``medsight dataset import``: a hospital-like DICOM export built from the real third-party files of
``../shared/data/dicom_interop`` becomes an nnU-Net v2 dataset that ``dataset check`` accepts and ``train`` trains on.

The export (:func:`build_export`) holds three studies:

* ``cd1/``: a DICOMDIR file-set (pydicom.fileset, PT*/ST*/SE*/IM* names) of dcmqi's 3-slice GE CT with dcmqi's
  ``liver.dcm`` SEG (the 3D Slicer writer), and a copy of that SEG whose referenced series is not in the export
  (the broken reference);
* ``phantom/``: rt-utils' 2-slice CT with its RTSTRUCT ``rt.dcm`` whose ROI ``ROI-1`` is renamed ``L Parotid`` (a
  synonym of ``Parotid_L``), rt-utils' two broken RTSTRUCTs (contours naming absent images; no series reference at
  all), a second CT series (a copy with new UIDs, same frame of reference, no labels) that makes the FoR fallback
  for the reference-less RTSTRUCT ambiguous, and a text file;
* ``totalseg/``: TotalSegmentator's 20-slice Siemens CT (JPEG 2000; its empty Study/Series/SOP UIDs filled in, as
  a SEG must reference them) with a SEG written here by medsight from TotalSegmentator's own label map (spleen,
  liver, stomach: stomach is in no built-in table), a secondary capture and an SR document.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from _factory import load_dicom_factory
from medsight.cli.app import main
from medsight.data.dicom_import import import_dicom_dataset
from medsight.data.dicom_scan import pair_objects, scan_export
from medsight.data.structure_names import builtin_mapping, load_mapping, structure_key
from medsight.errors import MedsightError
from medsight.io import read_image
from medsight.io.dicom_seg import write_dicom_seg
from medsight.io.rtstruct import read_rtstruct

INTEROP = "dicom_interop"
TOTALSEG_LABELS = {"spleen": 1, "Liver": 5, "stomach": 6}  # TotalSegmentator v2 class ids in example_seg_dicom


def _new_uids(src: Path, dst: Path, *, series_uid: str, study_uid: str | None = None) -> pydicom.Dataset:
    ds = pydicom.dcmread(src)
    ds.SeriesInstanceUID = series_uid
    if study_uid:
        ds.StudyInstanceUID = study_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)
    return ds


def _dicomdir_study(interop: Path, dest: Path, work: Path) -> None:
    """dcmqi's CT + liver SEG + a SEG referencing an absent series, as a DICOMDIR file-set in ``dest``."""
    broken = work / "broken_seg.dcm"
    ds = pydicom.dcmread(interop / "dcmqi" / "liver.dcm")
    ds.ReferencedSeriesSequence[0].SeriesInstanceUID = generate_uid()  # a series the export does not hold
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(broken)
    fileset = FileSet()
    for f in [*sorted((interop / "dcmqi" / "ct-3slice").glob("*.dcm")), interop / "dcmqi" / "liver.dcm", broken]:
        fileset.add(f)
    fileset.write(dest)


def _phantom_study(interop: Path, dest: Path) -> None:
    mock = interop / "rt_utils" / "mock_data"
    dest.mkdir(parents=True)
    for name in ("ct_1.dcm", "ct_2.dcm", "non_existent_reference_rt.dcm"):
        shutil.copyfile(mock / name, dest / name)
    rt = pydicom.dcmread(mock / "rt.dcm")
    rt.StructureSetROISequence[0].ROIName = "L Parotid"  # the synonym
    rt.save_as(dest / "rt.dcm")
    # its contours name 5 images of the series, which holds 2: paired by series UID, then unreadable
    invalid = pydicom.dcmread(mock / "invalid_reference_rt.dcm")
    invalid.StructureSetROISequence[0].ROIName = "Brainstem"
    invalid.save_as(dest / "invalid_reference_rt.dcm")
    # no series or instance reference, only the frame of reference, which two series of the study share
    ambiguous = pydicom.dcmread(dest / "rt.dcm")
    frame = str(pydicom.dcmread(mock / "ct_1.dcm", stop_before_pixels=True).FrameOfReferenceUID)
    del ambiguous.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence
    ambiguous.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = frame
    for roi in ambiguous.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = frame
    for roi in ambiguous.ROIContourSequence:
        for contour in roi.ContourSequence:
            del contour.ContourImageSequence
    ambiguous.SeriesInstanceUID, ambiguous.SOPInstanceUID = generate_uid(), generate_uid()
    ambiguous.file_meta.MediaStorageSOPInstanceUID = ambiguous.SOPInstanceUID
    ambiguous.save_as(dest / "ambiguous_rt.dcm")
    second = generate_uid()
    for name in ("ct_1.dcm", "ct_2.dcm"):
        _new_uids(mock / name, dest / "second" / name, series_uid=second)
    (dest / "README.txt").write_text("exported by the planning system\n", encoding="utf-8")
    (dest / "DIRFILE").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)  # a vendor index beside the images
    (dest / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 60)


def _totalseg_study(interop: Path, dest: Path) -> None:
    src = interop / "totalsegmentator"
    study, series = generate_uid(), generate_uid()
    for f in sorted((src / "example_ct_dicom").iterdir()):
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = study, series, 3
        ds.PatientID, ds.StudyID = "TS-EXAMPLE", "1"
        (dest / "CT").mkdir(parents=True, exist_ok=True)
        ds.save_as(dest / "CT" / f.name)
    image = read_image(dest / "CT")
    seg = read_image(src / "example_seg_dicom.nii.gz")
    # the NIfTI runs anterior -> posterior where the DICOM rows run posterior -> anterior: flip its rows
    arr = np.ascontiguousarray(seg.array[:, :, ::-1, :])
    labels = np.where(np.isin(arr, list(TOTALSEG_LABELS.values())), arr, 0).astype(np.uint8)
    write_dicom_seg(image.with_array(labels), dest / "CT", dest / "SEG" / "seg.dcm", label_names=TOTALSEG_LABELS)
    factory = load_dicom_factory()
    factory.write_color(dest / "SC" / "screenshot.dcm")
    factory.write_non_image(dest / "SR" / "report.dcm", series_uid=generate_uid(), study_uid=study)


def build_export(interop: Path, root: Path, work: Path) -> Path:
    """The export of the module docstring under ``root``."""
    _dicomdir_study(interop, root / "cd1", work)
    _phantom_study(interop, root / "phantom")
    _totalseg_study(interop, root / "totalseg")
    return root


@pytest.fixture(scope="module")
def export(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_export(shared_data / INTEROP, tmp_path_factory.mktemp("export"), tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def imported(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "Dataset001_Export"
    assert main(["-q", "dataset", "import", str(export), str(out)]) == 0
    return out


def _rows(out: Path, name: str) -> list[dict[str, str]]:
    with (out / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", ["Parotid_L", "LeftParotid", "L Parotid", "Parotid Left", "parotid-lt", "Lt_Parotid",
                                  "PAROTID_L", "Parotid (L)", "Glnd_Parotid_L"])
def test_left_parotid_synonyms(name: str) -> None:
    assert builtin_mapping().match(name) == "Parotid_L"


def test_names_that_must_not_match() -> None:
    mapping = builtin_mapping()
    assert mapping.match("Parotid_L_PRV") is None  # a planning risk volume is not the organ
    assert mapping.match("RightParotid") == "Parotid_R" and mapping.match("Spinal Cord") == "SpinalCord"
    assert mapping.match("Cleft") is None and mapping.match("Rectum") == "Rectum"
    assert structure_key("Spinal_Cord") == structure_key("SpinalCord") == "spinalcord"


def test_builtin_table_holds_the_openkbp_organs_in_openkbp_order(shared_data: Path) -> None:
    kbp = shared_data / "openkbp_hn_ct"
    labels = json.loads((kbp / "dataset.json").read_text())["labels"]
    mapping = builtin_mapping()
    ours = {name: mapping.match(name) for name in labels if name != "background"}
    assert None not in ours.values()
    contoured = json.loads((kbp / "contoured_structures.json").read_text())["cases"]
    assert {mapping.match(n) for names in contoured.values() for n in names} == set(ours.values())
    # the first seven built-in values are OpenKBP's: an import of a full export numbers them the same
    assert {ours[n]: mapping.labels[ours[n]] for n in ours} == {ours[n]: v for n, v in labels.items() if n in ours}


def test_mapping_file_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "map.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(MedsightError, match="valid JSON"):
        load_mapping(bad)
    bad.write_text(json.dumps({"labels": {"A": {"value": 1, "synonyms": ["X"]}, "B": {"value": 2, "synonyms": ["x"]}}}))
    with pytest.raises(MedsightError, match="'x' matching both 'A' and 'B'"):
        load_mapping(bad)
    bad.write_text(json.dumps({"labels": {"A": 1, "B": 1}}))
    with pytest.raises(MedsightError, match="one label per value"):
        load_mapping(bad)
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"labels": {"Liver": ["Hepar"], "Tumour": ["GTV", "GTVp"]}}))
    assert load_mapping(short).labels == {"Liver": 1, "Tumour": 2} and load_mapping(short).match("gtv_p") == "Tumour"


# ---------------------------------------------------------------------------------------------- scan + pairing
def test_scan_classifies_and_pairs_every_object(export: Path) -> None:
    scan = scan_export(export)
    assert [d.relative_to(export).as_posix() for d in scan.dicomdirs] == ["cd1/DICOMDIR"]
    assert scan.notes == ["DICOMDIR cd1/DICOMDIR: 5 file(s) listed"]
    assert scan.skipped_kinds() == {"DICOMDIR index": 1, "index file": 2, "non-DICOM file": 1,
                                    "secondary capture": 1, "structured report": 1}
    series, pairings = pair_objects(scan)
    assert sorted(len(s.files) for s in series.values()) == [2, 2, 3, 20]  # phantom CT and its copy, dcmqi, TS
    reasons = {p.obj.path.name: (p.series_key is not None, p.reason) for p in pairings}
    assert reasons["rt.dcm"] == (True, "by referenced series UID")
    assert reasons["seg.dcm"] == (True, "by referenced series UID")
    assert reasons["invalid_reference_rt.dcm"] == (True, "by referenced series UID")
    # rt-utils' RTSTRUCT without a series reference: its contours' image references still name the series
    assert reasons["non_existent_reference_rt.dcm"] == (True, "by referenced instances (the object names no series)")
    paired, why = reasons["ambiguous_rt.dcm"]
    assert not paired and why.startswith("2 candidate image series by frame of reference")
    in_dicomdir = sorted((p.series_key is not None, p.reason) for p in pairings if p.obj.path.name == "IM000000")
    assert in_dicomdir[0][0] is False and in_dicomdir[0][1].endswith("is not in the export")
    assert in_dicomdir[1] == (True, "by referenced series UID")


# ---------------------------------------------------------------------------------------------- the import
def test_import_writes_an_nnunet_dataset(export: Path, imported: Path, shared_data: Path) -> None:
    spec = json.loads((imported / "dataset.json").read_text())
    assert spec["labels"] == {"background": 0, "Parotid_L": 1, "Liver": 2, "Spleen": 3}
    assert spec["channel_names"] == {"0": "CT"} and spec["file_ending"] == ".nii.gz" and spec["numTraining"] == 3
    assert "training" not in spec  # a training list would make readers take it for an MSD dataset
    cases = {r["case_id"]: r for r in _rows(imported, "cases.csv")}
    assert sorted(cases) == ["case_0001", "case_0002", "case_0003"]
    assert sorted(p.name for p in (imported / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in sorted(cases)]
    structures = {c: r["structures"].split(";") for c, r in cases.items()}
    by_structures = {tuple(n.split("=")[0] for n in s): c for c, s in structures.items()}
    liver_only, parotid, totalseg = by_structures[("Liver",)], by_structures[("Parotid_L",)], \
        by_structures[("Liver", "Spleen")]
    absent = json.loads((imported / "absent_structures.json").read_text())["cases"]
    assert absent == {liver_only: ["Parotid_L", "Spleen"], parotid: ["Liver", "Spleen"], totalseg: ["Parotid_L"]}
    contoured = json.loads((imported / "contoured_structures.json").read_text())["cases"]
    assert contoured[totalseg] == ["Liver", "Spleen"]
    # voxels: the TotalSegmentator case holds TotalSegmentator's own liver (5) and spleen (1), voxel for voxel
    seg = read_image(shared_data / INTEROP / "totalsegmentator" / "example_seg_dicom.nii.gz").array[:, :, ::-1, :]
    label = read_image(imported / "labelsTr" / f"{totalseg}.nii.gz")
    image = read_image(imported / "imagesTr" / f"{totalseg}_0000.nii.gz")
    assert label.same_geometry(image) and image.shape == (20, 512, 512)
    assert np.array_equal(label.array == 2, seg == 5) and np.array_equal(label.array == 3, seg == 1)
    # the RTSTRUCT case: the voxels medsight's RTSTRUCT reader gives for the renamed ROI
    phantom = export / "phantom"
    ref, _ = read_rtstruct(phantom / "rt.dcm", phantom, roi_values={"L Parotid": 1})
    assert int((read_image(imported / "labelsTr" / f"{parotid}.nii.gz").array == 1).sum()) == int(ref.array.sum()) > 0
    # the DICOMDIR case: dcmqi's liver SEG equals the label map dcmqi made it from (liver_seg.nrrd), on its grid
    liver = read_image(imported / "labelsTr" / f"{liver_only}.nii.gz")
    shipped = read_image(shared_data / INTEROP / "dcmqi" / "liver_seg.nrrd")
    assert liver.same_geometry(shipped, atol=1e-2) and np.array_equal(liver.array == 2, shipped.array > 0)
    assert int((liver.array == 2).sum()) == 107098


def test_report_says_what_was_skipped_and_why(imported: Path) -> None:
    rows = _rows(imported, "import_report.csv")
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows)  # one row per object
    decision = {p: (r["kind"], r["decision"]) for p, r in by_path.items()}
    assert decision["phantom/rt.dcm"] == ("RTSTRUCT", "paired")
    assert decision["totalseg/SEG/seg.dcm"] == ("SEG", "paired")
    assert by_path["phantom/ambiguous_rt.dcm"]["reason"].startswith("2 candidate image series by frame of reference")
    invalid = by_path["phantom/invalid_reference_rt.dcm"]
    assert invalid["decision"] == "skipped" and invalid["reason"].startswith("unreadable: Expected contours drawn")
    assert invalid["structures_mapped"] == "Brainstem->Brainstem;ROI-2->(unmapped);ROI-3->(unmapped);ROI-4->(unmapped)"
    assert by_path["phantom/non_existent_reference_rt.dcm"]["reason"] == "none of its structures maps to a label"
    segs = sorted((r["decision"], r["reason"]) for r in rows if r["kind"] == "SEG")
    assert [d for d, _ in segs] == ["paired", "paired", "skipped"] and segs[2][1].endswith("is not in the export")
    assert by_path["phantom/second"]["reason"] == "no SEG or RTSTRUCT references this series"
    left_out = sorted((r["kind"], r["path"]) for r in rows if r["kind"] in (
        "index file", "non-DICOM file", "secondary capture", "structured report", "DICOMDIR index"))
    assert left_out == [("DICOMDIR index", "cd1/DICOMDIR"), ("index file", "phantom/DIRFILE"),
                        ("index file", "phantom/README.txt"), ("non-DICOM file", "phantom/Thumbs.db"),
                        ("secondary capture", "totalseg/SC/screenshot.dcm"),
                        ("structured report", "totalseg/SR/report.dcm")]
    assert all(r["decision"] == "skipped" for r in rows if (r["kind"], r["path"]) in left_out)
    assert by_path["totalseg/SEG/seg.dcm"]["structures_mapped"] == "spleen->Spleen;Liver->Liver;stomach->(unmapped)"
    written = sorted(r["case_id"] for r in rows if r["decision"] == "written")
    assert written == ["case_0001", "case_0002", "case_0003"]
    mapping = json.loads((imported / "label_mapping.json").read_text())
    assert list(mapping["labels"]) == ["Parotid_L", "Liver", "Spleen"]
    assert "L Parotid" in mapping["labels"]["Parotid_L"]["synonyms"]
    assert mapping["unmapped_names_seen"] == ["ROI-1", "ROI-2", "ROI-3", "ROI-4", "stomach"]


def test_summary_lists_cases_labels_and_skips(export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "dataset", "import", str(export / "phantom"), str(tmp_path / "ds")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote 1 case(s) to {tmp_path / 'ds'}")
    assert main(["-q", "dataset", "import", str(export / "cd1" / "DICOMDIR"), str(tmp_path / "cd")]) == 0
    assert "wrote 1 case(s)" in capsys.readouterr().out  # a DICOMDIR as the entry point: its file-set
    assert "labels    Parotid_L=1 (1 case)" in printed
    assert "skipped   RTSTRUCT (1): 2 candidate image series by frame of reference" in printed
    assert "skipped   RTSTRUCT (1): unreadable" in printed and "unmapped  ROI-2 (2)" in printed
    assert "skipped   image series (1): no SEG or RTSTRUCT references this series" in printed


@pytest.mark.slow
def test_check_accepts_and_train_trains_on_the_import(imported: Path, tmp_path: Path) -> None:
    assert main(["-q", "dataset", "check", str(imported), "--quiet"]) == 0
    # planned as usual, then on a coarse grid (4 x 8 x 8 mm) so that one CPU epoch takes seconds, not minutes
    run = tmp_path / "run"
    assert main(["-q", "plan", str(imported), "--out", str(run / "plans.json"), "--base-filters", "4",
                 "--voxel-budget", "16384"]) == 0
    plan = json.loads((run / "plans.json").read_text())
    assert plan["labels"] == {"background": 0, "Parotid_L": 1, "Liver": 2, "Spleen": 3}
    plan["target_spacing"] = [4.0, 8.0, 8.0]
    (run / "plans.json").write_text(json.dumps(plan))
    assert main(["-q", "train", str(imported), "--out", str(run), "--plan", str(run / "plans.json"), "--epochs", "1",
                 "--iterations", "1", "--device", "cpu"]) == 0
    assert (run / "fold_0" / "metrics.csv").is_file()


def test_force_replaces_a_previous_import_only(export: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    assert main(["-q", "dataset", "import", str(export / "phantom"), str(out)]) == 0
    (out / "stale.txt").write_text("from before")
    assert main(["-q", "dataset", "import", str(export / "phantom"), str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "stale.txt").is_file()
    assert main(["-q", "dataset", "import", str(export / "phantom"), str(out), "--force"]) == 0
    assert not (out / "stale.txt").exists() and (out / "dataset.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left beside it
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    assert main(["-q", "dataset", "import", str(export / "phantom"), str(other), "--force"]) == 2
    assert "never other files" in capsys.readouterr().err and (other / "mine.txt").is_file()


def test_mapping_file_round_trip_and_keep_unmapped(export: Path, imported: Path, tmp_path: Path) -> None:
    mapping = json.loads((imported / "label_mapping.json").read_text())
    mapping["labels"]["Stomach"] = {"value": 7, "synonyms": ["Gaster"]}  # a label of the user's own
    del mapping["labels"]["Spleen"]
    edited = tmp_path / "mapping.json"
    edited.write_text(json.dumps(mapping))
    result = import_dicom_dataset(export / "totalseg", tmp_path / "ds", mapping=edited, keep_unmapped=True)
    # the file's labels keep their values (so imports of several exports agree), 'spleen' is added after them
    assert result.labels == {"Parotid_L": 1, "Liver": 2, "Stomach": 7, "spleen": 8} and not result.unmapped
    assert result.cases[0].voxels == {"Liver": 366708, "Stomach": 74102, "spleen": 130634}
    assert any("not consecutive" in n for n in result.notes)
    assert any("found in no case: Parotid_L" in n for n in result.notes)
    label = read_image(tmp_path / "ds" / "labelsTr" / "case_0001.nii.gz").array
    assert {int(v): int((label == v).sum()) for v in np.unique(label)} == {0: 4745538 - 74102, 2: 366708, 7: 74102,
                                                                          8: 130634}
    image = read_image(tmp_path / "ds" / "imagesTr" / "case_0001_0000.nii.gz")
    source = read_image(export / "totalseg" / "CT")
    assert image.array.dtype == np.int16 and np.array_equal(image.array, source.array)  # HU, lossless
    assert image.same_geometry(source)


def test_frame_of_reference_fallback_pairs_the_one_series_of_the_study(export: Path, tmp_path: Path) -> None:
    root = tmp_path / "study"
    root.mkdir()
    for name in ("ct_1.dcm", "ct_2.dcm", "ambiguous_rt.dcm"):
        shutil.copyfile(export / "phantom" / name, root / name)
    result = import_dicom_dataset(root, tmp_path / "ds")
    row = next(r for r in result.rows if r["path"] == "ambiguous_rt.dcm")
    assert row["decision"] == "paired" and row["reason"].startswith("by frame of reference UID within the study")
    assert result.cases[0].voxels == {"Parotid_L": 1443}
    # with rt.dcm beside it, both give the series Parotid_L: one object's is kept, the other's row says so
    shutil.copyfile(export / "phantom" / "rt.dcm", root / "rt.dcm")
    both = import_dicom_dataset(root, tmp_path / "ds", force=True)
    rows = sorted((r["decision"], r["reason"]) for r in both.rows if r["kind"] == "RTSTRUCT")
    assert [d for d, _ in rows] == ["paired", "skipped"]
    assert rows[1][1].endswith("Parotid_L taken from rt.dcm (newer, or later by path)")
    assert both.cases[0].voxels == {"Parotid_L": 1443}


def test_yaml_mapping(export: Path, tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("labels:\n  Spleen: [Lien]\n  Hepar:\n    value: 5\n    synonyms: [Liver]\n")
    assert load_mapping(mapping).labels == {"Spleen": 1, "Hepar": 5}
    mapping.write_text("labels: [unclosed\n")
    with pytest.raises(MedsightError, match="valid YAML"):
        load_mapping(mapping)


def test_bad_input_is_one_line_with_exit_2(export: Path, imported: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "no_dicom"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    out = tmp_path / "out"
    cases = [
        (["dataset", "import", str(empty), str(out)], "Expected DICOM image series under the export folder"),
        (["dataset", "import", str(tmp_path / "missing"), str(out)], "does not exist"),
        (["dataset", "import", str(export), str(out), "--mapping", str(empty / "notes.txt")], "valid JSON"),
        (["dataset", "import", str(export), str(out), "--mapping", str(tmp_path / "none.json")], "does not exist"),
        (["dataset", "import", str(export), str(imported)], "--force"),  # a non-empty OUT
        (["dataset", "import", str(export), str(export), "--force"], "outside the DICOM export"),
        # the SR and the secondary capture alone: DICOM, but no image series with labels
        (["dataset", "import", str(export / "totalseg" / "SR"), str(out)], "Expected DICOM image series"),
        (["dataset", "import", str(export / "phantom" / "second"), str(out)], "Expected at least one image series"),
        (["dataset", "import", str(export), str(out), "--modality", "MR"], "modality MR"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err, (argv, err)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["no_dicom"]
