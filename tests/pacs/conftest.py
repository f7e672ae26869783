"""Fixtures of the PACS tests: a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) for the session, a tiny
trained segmentation run, the shared CT and MR series, and in-process nodes.

Orthanc is started on free loopback ports with a generated configuration (tests/pacs/orthanc.py), emptied before
each test that uses it, and stopped at the end of the session. The tests skip cleanly when /usr/sbin/Orthanc is
absent.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))

from orthanc import ORTHANC, OrthancServer, free_port, set_modalities, start_orthanc  # noqa: E402

from medsight.pacs.config import NodeConfig, PacsConfig, Rule  # noqa: E402
from medsight.pacs.node import Node  # noqa: E402

CT = Path("dicom_interop") / "totalsegmentator" / "example_ct_dicom"
MR = Path("tcia_pgbm005_mr_t1post_dicom") / "volume"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """One Orthanc for the session (DICOMweb on); modalities are registered per test through its REST API."""
    if not ORTHANC.is_file():
        pytest.skip(f"Orthanc not installed ({ORTHANC}; Debian packages orthanc, orthanc-dicomweb)")
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture
def orthanc(orthanc_server: OrthancServer) -> OrthancServer:
    """The session's Orthanc, emptied, with medsight (AE MEDSIGHT) registered as a modality: Orthanc answers C-FIND
    and C-GET only to known modalities. The port is a placeholder until a node fixture sets its own."""
    if not orthanc_server.alive():
        pytest.fail("Orthanc stopped answering; see its log in " + str(orthanc_server.folder))
    orthanc_server.clear()
    set_modalities(orthanc_server, {"medsight": ["MEDSIGHT", "127.0.0.1", 11112]})
    return orthanc_server


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fold, one iteration, 4 base filters, on 4 phantoms at 8 mm (few sliding windows on a real series)."""
    from medsight.data.synthetic import write_phantom_dataset
    from medsight.engine.config import RunOptions
    from medsight.tasks.segmentation.pipeline import train

    root = tmp_path_factory.mktemp("pacs_run")
    dataset = write_phantom_dataset(root / "phantoms", num_cases=4, shape=(12, 40, 40), spacing=(8.0, 8.0, 8.0),
                                    seed=3)
    train(dataset, root / "run", folds=[0], config=RunOptions(epochs=1, iterations_per_epoch=1, seed=0,
                                                               device="cpu"), base_filters=4)
    return root / "run"


@pytest.fixture(scope="session")
def ct_series(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TotalSegmentator example CT (20 slices, JPEG 2000) with the UIDs a PACS requires: its files hold empty
    Study/Series/SOP Instance UIDs (the file meta keeps the SOP ones), so the SOP UIDs are copied from the file meta
    and the study and series get fixed UIDs. Pixels and every other attribute are unchanged."""
    out = tmp_path_factory.mktemp("ct_series")
    study, series = generate_uid(entropy_srcs=["medsight ct study"]), generate_uid(entropy_srcs=["medsight ct"])
    for f in sorted((shared_data / CT).iterdir()):
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.save_as(out / f"{f.name}.dcm")
    return out


@pytest.fixture(scope="session")
def mr_series(shared_data: Path) -> Path:
    """The TCIA PGBM-005 T1 post-contrast MR series (24 slices, uncompressed), as it is."""
    return shared_data / MR


def series_uids(folder: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(next(iter(sorted(folder.iterdir()))), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


NodeFactory = Callable[..., Node]


@pytest.fixture
def make_node(orthanc: OrthancServer, tmp_path: Path) -> Iterator[NodeFactory]:
    """``make(**config_changes) -> Node``: a started in-process node on a free port, registered in Orthanc as
    modality ``medsight`` (AE MEDSIGHT), accepting ORTHANC, sending back to that Orthanc; stopped afterwards."""
    nodes: list[Node] = []

    def make(**changes: Any) -> Node:
        port = free_port()
        base = NodeConfig(pacs=PacsConfig(host="127.0.0.1", port=orthanc.dicom_port, called_ae=orthanc.aet,
                                          url=orthanc.dicomweb_url, timeout=20.0),
                          port=port, allowed_ae=(orthanc.aet,), workdir=tmp_path / f"node{len(nodes)}",
                          quiet_seconds=1.0, series_timeout=60.0, tta=False, retry_base=0.2, retry_max=1.0,
                          poll_seconds=0.1)
        pacs = changes.pop("pacs", {})
        config = dataclasses.replace(base, pacs=dataclasses.replace(base.pacs, **pacs), **changes)
        set_modalities(orthanc, {"medsight": ["MEDSIGHT", "127.0.0.1", port]})
        node = Node(config)
        node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def rule(run: Path, **fields: Any) -> tuple[Rule, ...]:
    return (Rule(runs=(run,), name=fields.pop("name", "test"), **fields),)
