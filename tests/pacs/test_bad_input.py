"""Bad input at the node: an unknown AE title, a non-image object, a truncated instance, a series that never
completes, a series no rule matches, and the PACS down while sending. Each gets one clear log line and a job status,
and the node keeps serving. Also: de-identification on ingest."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc import OrthancServer, free_port, start_orthanc
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsight.io import read_image
from medsight.io.sc_write import write_overlay_series
from medsight.pacs.node import Node

from .conftest import NodeFactory, rule, series_uids, wait_for

ECHO = "1.2.840.10008.1.1"
#: a rule's run where the job fails before any prediction (incomplete series, no matching rule)
NO_RUN = Path("/nonexistent/run")


def send(node: Node, datasets: list[Dataset], *, ae_title: str = "ORTHANC") -> list[int] | None:
    """C-STORE ``datasets`` to the node as ``ae_title``; the statuses, or None when the association is refused."""
    from pynetdicom import AE

    ae = AE(ae_title=ae_title)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}) or [ECHO]:
        ae.add_requested_context(sop_class, [str(ds.file_meta.TransferSyntaxUID) for ds in datasets][:1] or None)
    assoc = ae.associate("127.0.0.1", node.config.port, ae_title=node.config.ae_title)
    if not assoc.is_established:
        return None
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def echo(node: Node) -> bool:
    from pynetdicom import AE

    ae = AE(ae_title="ORTHANC")
    ae.add_requested_context(ECHO)
    assoc = ae.associate("127.0.0.1", node.config.port, ae_title=node.config.ae_title)
    try:
        return bool(assoc.is_established and assoc.send_c_echo().Status == 0)
    finally:
        if assoc.is_established:
            assoc.release()


def mr_datasets(mr_series: Path, skip: tuple[int, ...] = ()) -> list[Dataset]:
    return [pydicom.dcmread(f) for i, f in enumerate(sorted(mr_series.iterdir())) if i not in skip]


def _pacs_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "medsight.pacs" and text in r.getMessage()]


def test_unknown_ae_title_is_refused_and_the_node_keeps_serving(make_node: NodeFactory,
                                                               caplog: pytest.LogCaptureFixture,
                                                               mr_series: Path) -> None:
    caplog.set_level(logging.INFO, logger="medsight.pacs")
    node = make_node()
    assert send(node, mr_datasets(mr_series)[:1], ae_title="INTRUDER") is None
    assert len(_pacs_lines(caplog, "refused an association from calling AE title 'INTRUDER'")) == 1
    assert node.store.jobs() == []
    assert echo(node)


def test_non_image_and_truncated_instances_fail_their_series(make_node: NodeFactory, mr_series: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="medsight.pacs")
    node = make_node()
    sr = Dataset()
    sr.SOPClassUID, sr.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", generate_uid()
    sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.Modality = generate_uid(), generate_uid(), "SR"
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    cut = mr_datasets(mr_series)[5]
    cut.PixelData = cut.PixelData[: len(cut.PixelData) // 2]
    assert send(node, [sr]) == [0x0000]
    assert send(node, [cut]) == [0xA900]
    jobs = {j["series_uid"]: j for j in node.store.jobs()}
    assert jobs[sr.SeriesInstanceUID]["state"] == "failed"
    assert jobs[sr.SeriesInstanceUID]["reason"].startswith("not an image: SOP class Basic Text SR")
    assert jobs[cut.SeriesInstanceUID]["state"] == "failed"
    assert jobs[cut.SeriesInstanceUID]["reason"] == (f"truncated pixel data in instance {cut.SOPInstanceUID}: "
                                                     f"{len(cut.PixelData)} of {2 * len(cut.PixelData)} bytes")
    assert len(_pacs_lines(caplog, "not an image")) == 1 and len(_pacs_lines(caplog, "truncated")) == 1
    assert not any((node.config.workdir / "incoming").rglob("*.dcm"))
    assert echo(node)


def test_a_series_that_never_completes_times_out(make_node: NodeFactory, mr_series: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="medsight.pacs")
    node = make_node(quiet_seconds=0.5, series_timeout=3.0, rules=rule(NO_RUN))
    assert send(node, mr_datasets(mr_series, skip=(12,))) == [0] * 23
    _, series = series_uids(mr_series)
    job = wait_for(lambda: (j := node.store.job(series)) and j["state"] == "failed" and j, 30, "the timeout")
    assert job["reason"].startswith("series incomplete after 3 s: gap in slice positions (13.00 mm where the step "
                                    "is 6.50 mm")
    # the node's poll thread stores the failure, then logs it: this test may read in between, so wait for the line
    wait_for(lambda: _pacs_lines(caplog, "failed: series incomplete"), 5, "the failure's log line")
    assert len(_pacs_lines(caplog, "failed: series incomplete")) == 1
    assert len(_pacs_lines(caplog, "quiet but not complete")) == 1  # once, not at every poll
    assert echo(node)


def test_a_series_no_rule_matches_fails_with_the_reason(make_node: NodeFactory, mr_series: Path) -> None:
    node = make_node(quiet_seconds=0.3, rules=rule(NO_RUN, modality="CT"))
    assert send(node, mr_datasets(mr_series)) == [0] * 24
    _, series = series_uids(mr_series)
    job = wait_for(lambda: (j := node.store.job(series)) and j["state"] == "failed" and j, 30, "the rule check")
    assert job["reason"] == ("no rule matches Modality MR, BodyPartExamined BRAIN and the series description")


@pytest.mark.slow
def test_pacs_down_while_sending_is_retried_until_sent(orthanc: OrthancServer, make_node: NodeFactory,
                                                      mr_series: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="medsight.pacs")
    down = free_port()
    node = make_node(pacs={"port": down, "timeout": 3.0})
    study, series = series_uids(mr_series)
    image = read_image(mr_series)
    labels = np.zeros(image.array.shape, np.uint8)
    labels[0, 11:13, 120:160, 100:140] = 1
    overlays = write_overlay_series(image.with_array(labels), mr_series, tmp_path / "sc")
    for f in mr_series.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        node.store.record_instance(series_uid=series, study_uid=study, sop_uid=str(ds.SOPInstanceUID), path=f,
                                   folder=mr_series, modality="MR")
    node.store.set_state(series, "running")
    node.store.add_results(series, [(str(pydicom.dcmread(f).SOPInstanceUID), "sc", str(f)) for f in overlays])
    job = wait_for(lambda: (j := node.store.job(series)) and j["attempts"] >= 2 and j, 60, "two failed sends")
    assert job["state"] == "sending" and "retrying" in job["reason"]
    assert len(_pacs_lines(caplog, "sending failed")) >= 2
    assert echo(node)
    second = start_orthanc(tmp_path / "orthanc2", dicom_port=down, modalities={"medsight": ["MEDSIGHT", "127.0.0.1",
                                                                                           node.config.port]})
    try:
        wait_for(lambda: node.store.job(series)["state"] == "sent", 60, "the send after Orthanc came up")
        assert len(second.get("/instances")) == len(overlays) == 2
    finally:
        second.stop()


def test_deidentify_on_ingest(make_node: NodeFactory, mr_series: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="medsight.pacs")
    node = make_node(deidentify=True, quiet_seconds=30.0, series_timeout=60.0)
    original = mr_datasets(mr_series)[:2]
    assert send(node, original) == [0, 0]
    [job] = node.store.jobs()
    assert job["series_uid"] != original[0].SeriesInstanceUID and job["study_uid"] != original[0].StudyInstanceUID
    stored = [pydicom.dcmread(f) for f in sorted((node.config.workdir / "incoming").rglob("*.dcm"))]
    assert len(stored) == 2 and all(ds.PatientIdentityRemoved == "YES" for ds in stored)
    assert all("PGBM" not in str(ds.get("PatientName", "")) + str(ds.get("PatientID", "")) for ds in stored)
    assert all((a.PixelData == b.PixelData) for a, b in zip(sorted(original, key=lambda d: d.InstanceNumber),
                                                           sorted(stored, key=lambda d: d.InstanceNumber)))
    assert (node.config.workdir / "deid_key.json").is_file()
    assert not any("PGBM" in r.getMessage() for r in caplog.records)




def test_a_result_the_pacs_already_holds_is_not_resent_after_a_crash(orthanc: OrthancServer, make_node: NodeFactory,
                                                                     mr_series: Path, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The node died after the PACS stored a result but before it was recorded as sent: a new node asks the PACS
    first and sends only the one it lacks."""
    caplog.set_level(logging.INFO, logger="medsight.pacs")
    study, series = series_uids(mr_series)
    image = read_image(mr_series)
    labels = np.zeros(image.array.shape, np.uint8)
    labels[0, 11:13, 120:160, 100:140] = 1
    overlays = write_overlay_series(image.with_array(labels), mr_series, tmp_path / "sc")
    orthanc.upload(overlays[:1])  # stored by the dead node, never recorded
    node = make_node(poll_seconds=30.0)  # the worker waits; this test drives the send itself
    node.store.record_instance(series_uid=series, study_uid=study, sop_uid="9.9", path="/x", folder=mr_series)
    node.store.set_state(series, "running")
    node.store.add_results(series, [(str(pydicom.dcmread(f).SOPInstanceUID), "sc", str(f)) for f in overlays])
    assert node.send_job(node.store.job(series))
    assert len(_pacs_lines(caplog, "the PACS already holds 1 result instance(s); not resent")) == 1
    assert len(orthanc.get("/instances")) == 2
    assert all(r["sent_at"] for r in node.store.results(series))
