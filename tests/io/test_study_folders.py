"""Hospital study folders: a tree of studies built from the real shared DICOM (MR, CT in JPEG 2000, dcmqi's CT with
its SEG, rt-utils' CT with its RTSTRUCT), with vendor index files, a localizer, a secondary capture, a dose report
and a DICOMDIR; what is listed, what is read, and what the command line says."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import copy_series, write_color, write_dicomdir, write_dirfile, write_non_image

from medsight.cli.app import main
from medsight.errors import MedsightError
from medsight.io import read_image
from medsight.io.dicom import list_series, read_dicom
from medsight.io.dicom_study import list_study

MR = Path("tcia_pgbm005_mr_t1post_dicom/volume")
MR_UID = "1.3.6.1.4.1.14519.5.2.1.4429.7055.276770677201759689184680286476"
CT3 = Path("dicom_interop/dcmqi/ct-3slice")
CT3_UID = "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1"
SEG = Path("dicom_interop/dcmqi/liver.dcm")
TS_CT = Path("dicom_interop/totalsegmentator/example_ct_dicom")
RT = Path("dicom_interop/rt_utils/mock_data")
RT_CT_UID = "2.16.840.1.114362.1.11940992.23790159890.563423471.893.88"


@dataclass(frozen=True)
class Tree:
    root: Path
    mr_study: Path
    localizer_uid: str
    sc_uid: str
    sr_uid: str
    ts_uid: str


def _study_uid(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).StudyInstanceUID)


def build_tree(shared: Path, root: Path) -> Tree:
    """``root/PAT1/MR`` (T1post + localizer + screenshot + dose report), ``root/PAT1/CT`` (dcmqi CT + its SEG),
    ``root/PAT2/CT`` (TotalSegmentator's JPEG 2000 CT), ``root/PAT3`` (rt-utils CT + RTSTRUCT), and index files."""
    mr_study = root / "PAT1" / "MR"
    shutil.copytree(shared / MR, mr_study / "SER00012")
    write_dirfile(mr_study / "SER00012" / "DIRFILE")
    study = _study_uid(mr_study / "SER00012")
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    loc = copy_series(shared / MR, mr_study / "SER00001", keep=[12], orientation=sagittal, study_uid=study,
                      series_number=1, description="T1 SAG")  # one slice, 90 degrees from the T1post
    write_dirfile(mr_study / "SER00001" / "DIRFILE")
    sc_path, _ = write_color(mr_study / "SER09000" / "IM0001", study_uid=study, description="Dose screen")
    sr_path = write_non_image(mr_study / "SER09001" / "IM0001", series_uid=pydicom.uid.generate_uid(), study_uid=study)
    ct_study = root / "PAT1" / "CT"
    shutil.copytree(shared / CT3, ct_study / "SER00002")
    write_dirfile(ct_study / "SER00002" / "DIRFILE")
    (ct_study / "SEG").mkdir()
    shutil.copyfile(shared / SEG, ct_study / "SEG" / "liver.dcm")
    ts = copy_series(shared / TS_CT, root / "PAT2" / "CT" / "S1", series_number=5)
    shutil.copytree(shared / RT, root / "PAT3", ignore=shutil.ignore_patterns("*_reference_rt.dcm"))
    for name, text in (("LOCKFILE", ""), ("VERSION", "1.0\n"), ("index.xml", "<index/>\n")):
        (root / name).write_text(text)
    (root / "thumbs").mkdir()
    (root / "thumbs" / "t1.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    return Tree(root=root, mr_study=mr_study, localizer_uid=str(pydicom.dcmread(loc[0]).SeriesInstanceUID),
                sc_uid=str(pydicom.dcmread(sc_path).SeriesInstanceUID),
                sr_uid=str(pydicom.dcmread(sr_path).SeriesInstanceUID),
                ts_uid=str(pydicom.dcmread(ts[0]).SeriesInstanceUID))


def _shared() -> Path:
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (shared / MR).is_dir() or not (shared / CT3).is_dir():
        pytest.skip(f"real DICOM not found under {shared}")
    return shared


@pytest.fixture(scope="module")
def study_tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return build_tree(_shared(), tmp_path_factory.mktemp("export"))


# ------------------------------------------------------------------------------------------------------ listing
def test_tree_lists_every_series_object_and_skipped_file(study_tree: Tree) -> None:
    listing = list_study(study_tree.root)
    by_uid = {s.series_uid: s for s in listing.series}
    assert set(by_uid) == {MR_UID, study_tree.localizer_uid, study_tree.sc_uid, CT3_UID, study_tree.ts_uid, RT_CT_UID}
    mr = by_uid[MR_UID]
    assert (mr.kind, mr.modality, mr.description, mr.series_number) == ("image", "MR", "T1post", 12)
    assert mr.num_frames == 24 and mr.shape == (24, 320, 260) and not mr.irregularities
    np.testing.assert_allclose(mr.spacing, (6.5, 0.6875, 0.6875), atol=1e-4)
    assert by_uid[study_tree.localizer_uid].kind == "localizer"  # single slice, orthogonal to the T1post
    assert by_uid[study_tree.sc_uid].kind == "secondary capture"
    assert by_uid[CT3_UID].shape == (3, 512, 512) and by_uid[study_tree.ts_uid].shape == (20, 512, 512)
    assert by_uid[RT_CT_UID].num_frames == 2
    kinds = {o.kind: o for o in listing.objects}
    assert set(kinds) == {"SEG", "RTSTRUCT", "SR"}
    assert kinds["SEG"].references == (CT3_UID,) and kinds["SEG"].contents == ("Liver",)
    assert kinds["RTSTRUCT"].references == (RT_CT_UID,) and kinds["RTSTRUCT"].contents == ("ROI-1",)
    assert kinds["SR"].series_uid == study_tree.sr_uid
    skipped = {Path(p).name for p in listing.skipped["index"]}
    assert skipped == {"DIRFILE", "LOCKFILE", "VERSION", "index.xml", "t1.jpg"}
    assert len(listing.skipped["index"]) == 7  # three DIRFILEs
    assert list_series(study_tree.root) == list(listing.series)


def test_several_candidates_are_refused_with_their_list(study_tree: Tree) -> None:
    with pytest.raises(MedsightError) as err:
        read_image(study_tree.root)
    message = str(err.value)
    assert "\n" not in message and "got 4 series" in message and "--series UID|NUMBER|DESCRIPTION" in message
    assert MR_UID in message and "'T1post'" in message and study_tree.localizer_uid not in message


@pytest.mark.parametrize("selector", [MR_UID, "12", "t1POST "], ids=["uid", "number", "description"])
def test_series_by_uid_number_or_description(study_tree: Tree, selector: str) -> None:
    img = read_image(study_tree.root, series_uid=selector)
    ref = read_image(_shared() / MR)
    assert img.source.series_uid == MR_UID and img.same_geometry(ref, atol=1e-6)
    np.testing.assert_array_equal(img.array, ref.array)


def test_ambiguous_or_unknown_selector_is_one_line(study_tree: Tree, tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match=r"SeriesInstanceUID, SeriesNumber or SeriesDescription .* got 'nope'"):
        read_image(study_tree.root, series_uid="nope")
    twin = tmp_path / "twin"
    copy_series(_shared() / CT3, twin / "a", description="same")
    copy_series(_shared() / CT3, twin / "b", description="same")
    with pytest.raises(MedsightError, match=r"one series named 'same' .* got 2: .*pass its SeriesInstanceUID"):
        read_image(twin, series_uid="same")


def test_series_folder_with_a_dirfile_reads(study_tree: Tree, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="medsight"):
        img = read_image(study_tree.mr_study / "SER00012")
    assert img.shape == (24, 320, 260) and img.source.series_uid == MR_UID
    notes = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(notes) == 1 and "1 vendor index" in notes[0] and "DIRFILE" in notes[0]


def test_study_with_one_image_series_picks_it_with_one_note_per_kind(
    study_tree: Tree, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="medsight"):
        img = read_image(study_tree.mr_study)
    assert img.source.series_uid == MR_UID
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("note: skipped")]
    assert len(notes) == 4, notes  # index files, the localizer, the secondary capture, the dose report (SR)
    assert any("2 vendor index" in n for n in notes) and any("localizer" in n and "'T1 SAG'" in n for n in notes)
    assert any("secondary capture" in n and "'Dose screen'" in n for n in notes)
    assert any("non-image object" in n and "1 SR" in n for n in notes)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_localizer_by_image_type_and_explicit_choice(study_tree: Tree, tmp_path: Path) -> None:
    study = tmp_path / "study"
    copy_series(_shared() / CT3, study / "ct", series_uid="")
    scout = copy_series(_shared() / CT3, study / "scout", keep=[0], image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                        description="Topo", series_number=1)
    assert read_image(study).source.series_uid == CT3_UID
    uid = str(pydicom.dcmread(scout[0]).SeriesInstanceUID)
    assert read_image(study, series_uid=uid).shape == (1, 512, 512)  # still readable when asked for


def test_seg_folder_is_an_object_not_an_image(study_tree: Tree) -> None:
    seg_folder = study_tree.root / "PAT1" / "CT" / "SEG"
    listing = list_study(seg_folder)
    assert not listing.series and [o.kind for o in listing.objects] == ["SEG"]
    with pytest.raises(MedsightError, match=r"only non-image objects \(SEG; e\.g\. liver\.dcm\)"):
        read_image(seg_folder)
    # the CT study reads its one image series; the SEG beside it is noted, not read
    assert read_image(study_tree.root / "PAT1" / "CT").source.series_uid == CT3_UID


def test_jpeg2000_ct_with_empty_sop_class_reads_from_the_tree(study_tree: Tree) -> None:
    img = read_image(study_tree.root, series_uid=study_tree.ts_uid)
    ref = read_image(_shared() / TS_CT)
    np.testing.assert_array_equal(img.array, ref.array)


# ------------------------------------------------------------------------------------------------------ DICOMDIR
@pytest.fixture(scope="module")
def dicomdir(study_tree: Tree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = _shared()
    files = sorted((shared / MR).iterdir()) + sorted((shared / CT3).iterdir()) + [shared / SEG]
    files += [next((study_tree.mr_study / "SER09000").iterdir()), next((study_tree.mr_study / "SER09001").iterdir())]
    return write_dicomdir(tmp_path_factory.mktemp("media"), files)


def test_dicomdir_lists_and_reads_its_series(dicomdir: Path) -> None:
    listing = list_study(dicomdir)
    assert {(s.series_uid, s.kind) for s in listing.series} >= {(MR_UID, "image"), (CT3_UID, "image")}
    assert sorted(o.kind for o in listing.objects) == ["SEG", "SR"]
    assert not listing.skipped and not listing.missing
    img = read_dicom(dicomdir, series_uid="T1post")
    np.testing.assert_array_equal(img.array, read_dicom(_shared() / MR).array)
    folder = list_study(dicomdir.parent)  # the folder holding it: the DICOMDIR itself is an index file
    assert [Path(p).name for p in folder.skipped["index"]] == ["DICOMDIR"]
    assert {s.series_uid for s in folder.series} == {s.series_uid for s in listing.series}


def test_dicomdir_with_a_missing_file_reads_what_is_there(dicomdir: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    media = tmp_path / "media"
    shutil.copytree(dicomdir.parent, media)
    ct_files = [i for i in list_study(media / "DICOMDIR").series if i.series_uid == CT3_UID][0].folder
    victim = sorted(Path(ct_files).iterdir())[0]
    victim.unlink()
    listing = list_study(media / "DICOMDIR")
    assert len(listing.missing) == 1
    with caplog.at_level(logging.INFO, logger="medsight"):
        img = read_image(media / "DICOMDIR", series_uid=CT3_UID)
    assert img.shape[0] == 2 and "lists 1 file(s) that are missing" in caplog.text


def test_broken_dicomdir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x001.2")
    with pytest.raises(MedsightError) as err:
        read_image(tmp_path / "DICOMDIR")
    assert "\n" not in str(err.value) and "DICOMDIR" in str(err.value)


# -------------------------------------------------------------------------------------------------- command line
def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_lists_the_study(study_tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "info", str(study_tree.root))
    assert code == 0
    assert "6 series, 3 non-image object(s)" in out and MR_UID in out and "'T1post'" in out
    assert "[localizer]" in out and "[secondary capture]" in out and "spacing 6.5 x 0.6875 x 0.6875 mm" in out
    assert "SEG  liver.dcm" in out and f"references {CT3_UID} (CT #2" in out and "1 segments: Liver" in out
    assert "RTSTRUCT" in out and "ROI-1" in out and "skipped: 7 vendor index" in out
    assert "pass --series UID|NUMBER|DESCRIPTION" in out
    code, out, _ = _run(capsys, "info", str(study_tree.root), "--json")
    facts = json.loads(out)
    assert code == 0 and facts["image"] is None and len(facts["series"]) == 6
    assert {o["kind"] for o in facts["objects"]} == {"SEG", "RTSTRUCT", "SR"}
    seg = next(o for o in facts["objects"] if o["kind"] == "SEG")
    assert seg["references"] == [CT3_UID] and len(facts["skipped"]["index"]) == 7


def test_info_describes_one_series_of_the_study(study_tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "info", str(study_tree.root), "--series", "12")
    assert code == 0 and "6 series" in out  # the listing, then the chosen series
    description = out.split("\n\n", 1)[1]
    assert "24 x 320 x 260" in description and MR_UID in description and "T1post" in description


def test_info_on_a_dicomdir(dicomdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "info", str(dicomdir), "--json")
    facts = json.loads(out)
    assert code == 0 and {s["series_uid"] for s in facts["series"]} >= {MR_UID, CT3_UID}
    assert sorted(o["kind"] for o in facts["objects"]) == ["SEG", "SR"]


def test_convert_picks_by_series_or_refuses(study_tree: Tree, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "convert", str(study_tree.root), str(tmp_path / "x.nii.gz"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "got 4 series" in err
    assert not (tmp_path / "x.nii.gz").exists()
    code, out, _ = _run(capsys, "convert", str(study_tree.root), str(tmp_path / "t1.nii.gz"), "--series", "T1post")
    assert code == 0 and "24 x 320 x 260" in out
    np.testing.assert_array_equal(read_image(tmp_path / "t1.nii.gz").array, read_image(_shared() / MR).array)


def test_info_lists_irregularities_and_unreadable_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dicom_factory import write_series

    tilted = write_series(tmp_path / "study" / "tilt", n_slices=5, tilt_deg=15.0, description="tilted")
    gap = write_series(tmp_path / "study" / "gap", offsets=[0.0, 2.0, 4.0, 10.0], description="gap",
                       study_uid=tilted.study_uid)
    mixed = write_series(tmp_path / "study" / "mixed", n_slices=2, description="mixed", study_uid=tilted.study_uid)
    write_series(tmp_path / "study" / "mixed", n_slices=2, prefix="b", series_uid=mixed.series_uid,
                 study_uid=tilted.study_uid, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    listing = list_study(tmp_path / "study")
    by_uid = {s.series_uid: s for s in listing.series}
    assert by_uid[tilted.series_uid].irregularities[0].startswith("gantry tilt of 15.00 degrees")
    assert by_uid[tilted.series_uid].shape == (5, 8 + 4, 6)  # 4 steps * 2.5 mm * tan 15 deg = 2.68 mm = 3.35 rows
    assert "missing slices" in by_uid[gap.series_uid].irregularities[0]
    assert "gap(s) wider than 2 x the median step" in by_uid[gap.series_uid].reconstruction
    assert "one slice orientation per series" in by_uid[mixed.series_uid].problem
    code, out, _ = _run(capsys, "info", str(tmp_path / "study"))
    assert code == 0 and "irregular: gantry tilt of 15.00 degrees" in out and "read as: reconstructed onto" in out
    assert "(cannot be read: Expected one slice orientation per series" in out
