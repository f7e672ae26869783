"""Both PACS transports against a real Orthanc: echo, find, pull, push, and one-line errors (CLI included)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from orthanc import OrthancServer, free_port

from medsight.cli.app import main
from medsight.pacs.client import PacsError
from medsight.pacs.config import PacsConfig
from medsight.pacs.transport import connect

from .conftest import series_uids


def _config(orthanc: OrthancServer) -> PacsConfig:
    return PacsConfig(host="127.0.0.1", port=orthanc.dicom_port, called_ae=orthanc.aet, url=orthanc.dicomweb_url)


@pytest.mark.parametrize("transport", ["dimse", "dicomweb"])
def test_find_pull_push_round_trip(transport: str, orthanc: OrthancServer, ct_series: Path, mr_series: Path,
                                   tmp_path: Path) -> None:
    orthanc.upload(sorted(ct_series.iterdir()))
    client = connect(_config(orthanc), transport=transport)
    client.echo()
    study, series = series_uids(ct_series)
    assert [s["StudyInstanceUID"] for s in client.find("STUDY")] == [study]
    found = client.find("SERIES", {"StudyInstanceUID": study})
    assert [(s["SeriesInstanceUID"], s["Modality"], s["NumberOfSeriesRelatedInstances"]) for s in found] == [
        (series, "CT", "20")]
    assert all("PatientName" not in s and "PatientID" not in s for s in found)
    files = client.retrieve(study, series, tmp_path / "pulled")
    assert len(files) == 20 and {f.parent.name for f in files} == {series}
    first = pydicom.dcmread(files[0])
    assert first.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"  # as stored: JPEG 2000, not transcoded
    original = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).PixelData for f in ct_series.iterdir()}
    assert all(original[pydicom.dcmread(f).SOPInstanceUID] == pydicom.dcmread(f).PixelData for f in files)
    mr_files = sorted(mr_series.iterdir())[:3]
    stored = client.store(mr_files)
    assert len(stored) == 3 and len(orthanc.get("/instances")) == 23
    mr_study, mr_uid = series_uids(mr_series)
    assert client.holds(mr_study, mr_uid, stored[0]) and not client.holds(mr_study, mr_uid, "1.2.3.4")


def test_unreachable_pacs_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    with pytest.raises(PacsError, match=f"127.0.0.1:{port}"):
        connect(PacsConfig(host="127.0.0.1", port=port, timeout=3.0)).echo()
    with pytest.raises(PacsError, match="DICOMweb server answering"):
        connect(PacsConfig(url=f"http://127.0.0.1:{port}/dicom-web", timeout=3.0), transport="dicomweb").echo()
    assert main(["pacs", "echo", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsight: error: Expected a DICOM node ORTHANC@127.0.0.1:")


def test_cli_echo_find_and_a_truncated_push(orthanc: OrthancServer, ct_series: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--port", str(orthanc.dicom_port), "--called-ae", orthanc.aet]
    assert main(["pacs", "echo", *flags]) == 0
    assert main(["pacs", "push", str(ct_series), *flags]) == 0
    assert "20 of 20 instances stored" in capsys.readouterr().out
    assert main(["pacs", "find", "--level", "series", "--transport", "dicomweb", "--url", orthanc.dicomweb_url]) == 0
    assert "Modality=CT" in capsys.readouterr().out
    data = next(iter(sorted(ct_series.iterdir()))).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    assert main(["pacs", "push", str(cut), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated or not DICOM" in err[0] and str(cut) in err[0]
