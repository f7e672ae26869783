"""The node process is killed (SIGKILL) with one job running and one queued; after a restart every job ends sent,
and Orthanc holds each result exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from orthanc import OrthancServer, free_port, set_modalities

from medsight.pacs.store import JobStore

from .conftest import series_uids, wait_for


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child writes to it for its whole life
    return subprocess.Popen([sys.executable, "-m", "medsight", "pacs", "listen", "--config", str(config)],
                            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _listening(log: Path) -> bool:
    return "listening as MEDSIGHT" in log.read_text(errors="replace")


@pytest.mark.slow
def test_sigkill_with_jobs_running_and_queued_loses_and_duplicates_nothing(
        orthanc: OrthancServer, tiny_run: Path, ct_series: Path, mr_series: Path, tmp_path: Path) -> None:
    port = free_port()
    set_modalities(orthanc, {"medsight": ["MEDSIGHT", "127.0.0.1", port]})
    workdir = tmp_path / "node"
    config = tmp_path / "node.toml"
    config.write_text(f"""
[pacs]
host = "127.0.0.1"
port = {orthanc.dicom_port}
called_ae = "{orthanc.aet}"

[node]
ae_title = "MEDSIGHT"
port = {port}
allowed_ae = ["{orthanc.aet}"]
workdir = "{workdir}"
quiet_seconds = 1
series_timeout = 300
tta = false
send = ["seg", "sc"]
poll_seconds = 0.1
retry_base = 0.5
retry_max = 2

[[rules]]
name = "everything"
runs = ["{tiny_run}"]
""", encoding="utf-8")
    log = tmp_path / "node.log"
    node = _start(config, log)
    try:
        wait_for(lambda: _listening(log), 120, "the node to listen")
        studies = []
        for source in (ct_series, mr_series):
            ids = orthanc.upload(sorted(source.iterdir()))
            studies.append(orthanc.get(f"/instances/{ids[0]}/study")["ID"])
        orthanc.post("/modalities/medsight/store", json.dumps({"Resources": studies, "Synchronous": True}).encode(),
                     "application/json")
        store = JobStore(workdir / "jobs.sqlite")
        wait_for(lambda: {j["state"] for j in store.jobs()} == {"running", "queued"}, 120,
                 "one job running and one queued")
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=30)
        assert {j["state"] for j in store.jobs()} == {"running", "queued"}

        node = _start(config, log)
        wait_for(lambda: (jobs := store.jobs()) and all(j["state"] in ("sent", "failed") for j in jobs), 300,
                 "every job to finish after the restart")
        jobs = store.jobs()
        assert [j["state"] for j in jobs] == ["sent", "sent"], [j["reason"] for j in jobs]
        assert any(e["detail"] == "resumed after a restart" for e in store.events())
        for source in (ct_series, mr_series):
            study_uid, series_uid = series_uids(source)
            series = orthanc.series_of_study(study_uid)
            kinds = sorted(s["MainDicomTags"]["Modality"] for s in series)
            assert kinds == sorted([jobs[0]["modality"] if series_uid == jobs[0]["series_uid"] else
                                    jobs[1]["modality"], "SEG", "OT"])
            results = store.results(series_uid)
            assert all(r["sent_at"] for r in results)
            held = sum(len(s["Instances"]) for s in series if s["MainDicomTags"]["Modality"] in ("SEG", "OT"))
            assert held == len(results)
        assert len(orthanc.get("/instances")) == 20 + 24 + sum(j["results"] for j in jobs)
        store.close()
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                assert node.wait(timeout=60) == 0
            finally:
                if node.poll() is None:
                    node.kill()
    text = log.read_text(errors="replace")
    assert "resumed 1 job(s) left running by a previous node" in text
    assert "PGBM" not in text and "Traceback" not in text
