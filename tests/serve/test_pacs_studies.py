"""``GET /api/pacs/studies``: the DICOM node's studies with their state, read from its job store, without paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from medsight.pacs.config import NodeConfig
from medsight.pacs.store import JobStore


def test_node_studies_are_listed_with_state_and_no_server_paths(make_client: Callable[..., TestClient],
                                                                 tmp_path: Path) -> None:
    node = tmp_path / "node"
    assert make_client().get("/api/pacs/studies").status_code == 404  # no node configured
    client = make_client(pacs_workdir=node)
    assert client.get("/api/pacs/studies").json() == {"studies": [], "node": "no studies received yet"}
    store = JobStore(NodeConfig(workdir=node).store_path)
    folder = node / "incoming" / "9.1"
    store.record_instance(series_uid="9.1", study_uid="1.1", sop_uid="9.1.1", path=str(folder / "a.dcm"),
                          folder=str(folder), modality="CT", now=100.0)
    store.record_refused(series_uid="9.2", study_uid="1.1", folder=str(node / "incoming" / "9.2"),
                         reason=f"not an image: SR in {node / 'incoming' / '9.2'}")
    store.close()
    body = client.get("/api/pacs/studies").json()
    (study,) = body["studies"]
    assert study["study_uid"] == "1.1" and study["state"] == "failed" and study["instances"] == 1
    assert {s["series_uid"]: s["state"] for s in study["series"]} == {"9.1": "received", "9.2": "failed"}
    assert str(tmp_path) not in str(body) and "NODE" in str(body)
    assert make_client(authorized=False, pacs_workdir=node).get("/api/pacs/studies").status_code == 401
