"""The node's SQLite job store: states, idempotent ingest, restart recovery, results sent once, back-off."""

from __future__ import annotations

from pathlib import Path

from medsight.pacs.store import JobStore, job_lines


def _receive(store: JobStore, series: str, sop: str, *, study: str = "1.2.3", now: float = 100.0) -> bool:
    return store.record_instance(series_uid=series, study_uid=study, sop_uid=sop, path=f"/x/{sop}.dcm",
                                 folder=f"/x/{series}", modality="CT", now=now)


def test_ingest_is_idempotent_and_a_quiet_series_is_found(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    assert _receive(store, "9.1", "9.1.1", now=100.0)
    assert _receive(store, "9.1", "9.1.2", now=101.0)
    assert not _receive(store, "9.1", "9.1.2", now=102.0)  # a resend is not counted twice
    assert store.job("9.1")["instances"] == 2
    assert store.quiet_series(5.0, now=103.0) == []
    assert [j["series_uid"] for j in store.quiet_series(5.0, now=106.5)] == ["9.1"]


def test_restart_requeues_running_jobs_and_results_are_sent_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    for series in ("9.1", "9.2"):
        _receive(store, series, f"{series}.1")
        store.set_state(series, "queued")
    job = store.claim_next()
    assert job is not None and job["state"] == "running" and job["series_uid"] == "9.1"
    store.close()  # the node dies with 9.1 running, 9.2 queued
    store = JobStore(path)
    assert store.recover() == [job["series_uid"]]
    assert {j["series_uid"]: j["state"] for j in store.jobs()} == {"9.1": "queued", "9.2": "queued"}
    assert store.job(job["series_uid"])["reason"] == "resumed after a restart"
    again = store.claim_next()
    assert again is not None and again["series_uid"] == job["series_uid"]  # the resumed job goes first
    store.set_state("9.2", "failed", "not needed here")
    store.add_results("9.1", [("5.1", "seg", "/r/seg.dcm"), ("5.2", "sc", "/r/sc1.dcm")])
    assert store.job("9.1")["state"] == "sending"
    store.mark_sent(["5.1"])
    assert not store.finish_sending("9.1")
    assert [r["sop_uid"] for r in store.unsent("9.1")] == ["5.2"]
    store.mark_sent(["5.2", "5.2"])
    assert store.finish_sending("9.1") and store.job("9.1")["state"] == "sent"
    assert store.recover() == []  # a sent job stays sent


def test_failed_sends_back_off_exponentially_up_to_the_cap(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    _receive(store, "9.1", "9.1.1")
    store.add_results("9.1", [("5.1", "seg", "/r/seg.dcm")])
    delays = [store.retry_later("9.1", "connection refused", base=2.0, cap=10.0) for _ in range(5)]
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0]
    job = store.job("9.1")
    assert job["state"] == "sending" and job["attempts"] == 5 and "connection refused" in job["reason"]
    assert store.due_to_send() == []  # the next attempt is 10 s away
    assert len(store.unsent("9.1")) == 1  # kept until sent


def test_studies_summarise_their_series_for_the_web_server(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    _receive(store, "9.1", "9.1.1", study="1.1")
    _receive(store, "9.2", "9.2.1", study="1.1")
    _receive(store, "9.3", "9.3.1", study="1.2")
    store.set_state("9.1", "sent")
    store.record_refused(series_uid="9.2", study_uid="1.1", folder="/x", reason="not an image: SR; ignored")
    studies = {s["study_uid"]: s for s in store.studies()}
    assert studies["1.1"]["state"] == "failed" and studies["1.2"]["state"] == "received"
    assert [s["series_uid"] for s in studies["1.1"]["series"]] == ["9.1", "9.2"]
    assert studies["1.1"]["instances"] == 2
    lines = job_lines(store.jobs())
    assert lines[0].startswith("state\t") and any("not an image" in line for line in lines)
    assert [e["event"] for e in store.events("9.2")] == ["received", "failed"]


def test_a_new_instance_reopens_a_finished_series(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    _receive(store, "9.1", "9.1.1")
    store.set_state("9.1", "sent")
    _receive(store, "9.1", "9.1.2", now=200.0)
    job = store.job("9.1")
    assert job["state"] == "received" and job["instances"] == 2
