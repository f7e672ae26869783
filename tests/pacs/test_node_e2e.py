"""End to end against a real Orthanc: Orthanc sends a study to the node (C-STORE), the node segments it with a tiny
trained run and sends a DICOM-SEG, an RTSTRUCT and an overlay Secondary Capture series back, over DIMSE (C-STORE) or
DICOMweb (STOW-RS). The test reads the SEG back from Orthanc through DICOMweb and compares it with the node's NIfTI
prediction voxel for voxel, and checks what every returned object references."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from orthanc import OrthancServer

from medsight.io import read_image
from medsight.io.dicom_seg import read_dicom_seg
from medsight.pacs.dicomweb import DicomWebClient

from .conftest import NodeFactory, rule, series_uids, wait_for

CASES = [pytest.param("dimse", "ct_series", "CT", ("seg", "sc"), id="CT-dimse"),
         pytest.param("dicomweb", "mr_series", "MR", ("seg", "rtstruct", "sc"), id="MR-dicomweb")]


@pytest.mark.slow
@pytest.mark.parametrize(("transport", "series_fixture", "modality", "send"), CASES)
def test_orthanc_gets_seg_and_overlays_back(transport: str, series_fixture: str, modality: str,
                                            send: tuple[str, ...], orthanc: OrthancServer, make_node: NodeFactory,
                                            tiny_run: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    source: Path = request.getfixturevalue(series_fixture)
    study_uid, series_uid = series_uids(source)
    node = make_node(rules=rule(tiny_run, modality=modality), pacs={"transport": transport}, send=send)
    ids = orthanc.upload(sorted(source.iterdir()))
    study = orthanc.get(f"/instances/{ids[0]}/study")["ID"]
    orthanc.post("/modalities/medsight/store", json.dumps({"Resources": [study], "Synchronous": True}).encode(),
                 "application/json")
    job = wait_for(lambda: (j := node.store.job(series_uid)) and j["state"] in ("sent", "failed") and j, 600,
                   "the job to be sent")
    assert job["state"] == "sent", job["reason"]
    assert job["instances"] == len(list(source.iterdir()))

    by_modality: dict[str, list[dict]] = {}
    for s in orthanc.series_of_study(study_uid):
        by_modality.setdefault(s["MainDicomTags"]["Modality"], []).append(s)
    assert len(by_modality[modality]) == 1 and len(by_modality["SEG"]) == 1 and len(by_modality["OT"]) == 1
    assert ("RTSTRUCT" in by_modality) == ("rtstruct" in send)
    results = node.store.results(series_uid)
    assert all(r["sent_at"] for r in results)
    assert len(by_modality["OT"][0]["Instances"]) == sum(r["kind"] == "sc" for r in results)

    web = DicomWebClient(orthanc.dicomweb_url)
    seg_series = by_modality["SEG"][0]["MainDicomTags"]["SeriesInstanceUID"]
    [seg_file] = web.retrieve(study_uid, seg_series, tmp_path / "back")
    seg = pydicom.dcmread(seg_file)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    source_sops = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in source.iterdir()}
    assert {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} \
        <= source_sops
    [nifti] = (node.results_dir / series_uid / "run0").glob("*.nii.gz")
    prediction = read_image(nifti)
    from_pacs = read_dicom_seg(seg_file, source)
    assert from_pacs.shape == prediction.shape and (from_pacs.array == prediction.array).all()

    sc_series = by_modality["OT"][0]["MainDicomTags"]["SeriesInstanceUID"]
    for f in web.retrieve(study_uid, sc_series, tmp_path / "sc"):
        sc = pydicom.dcmread(f)
        assert sc.StudyInstanceUID == study_uid
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in source_sops
    if "rtstruct" in send:
        rt_series = by_modality["RTSTRUCT"][0]["MainDicomTags"]["SeriesInstanceUID"]
        [rt_file] = web.retrieve(study_uid, rt_series, tmp_path / "rt")
        rt = pydicom.dcmread(rt_file)
        refs = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence
        assert refs[0].SeriesInstanceUID == series_uid
    audit = [json.loads(line) for line in node.config.audit_path.read_text().splitlines()]
    assert audit[-1]["status"] == "ok" and "PGBM" not in node.config.audit_path.read_text()
