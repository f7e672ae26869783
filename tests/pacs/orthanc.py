"""Start a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) on free loopback ports, for tests and benchmarks.

:func:`start_orthanc` writes a JSON configuration into a folder (storage and index there, DICOMweb plugin on, the
given DICOM modalities registered, HTTP and DICOM on 127.0.0.1 only), starts ``/usr/sbin/Orthanc`` on it, waits until
``/system`` answers and returns an :class:`OrthancServer`; :meth:`OrthancServer.stop` ends that process (and only it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN_CANDIDATES = (Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
                     Path("/usr/lib/orthanc/libOrthancDicomWeb.so.1.7"))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dicomweb_plugin() -> Path | None:
    return next((p for p in PLUGIN_CANDIDATES if p.is_file()), None)


@dataclass
class OrthancServer:
    """A running Orthanc: its ports, AE title, folder and process."""

    folder: Path
    http_port: int
    dicom_port: int
    aet: str
    process: subprocess.Popen[bytes]
    modalities: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def post(self, path: str, body: bytes, content_type: str = "application/dicom") -> Any:
        req = urllib.request.Request(self.url + path, data=body, method="POST", headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def delete(self, path: str) -> None:
        req = urllib.request.Request(self.url + path, method="DELETE")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def upload(self, files: list[Path]) -> list[str]:
        """POST each file to ``/instances``; returns Orthanc's instance ids."""
        return [self.post("/instances", Path(f).read_bytes())["ID"] for f in files]

    def clear(self) -> None:
        """Delete every patient (tests share one server per session)."""
        for pid in self.get("/patients"):
            self.delete(f"/patients/{pid}")

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Orthanc's tags of every instance of the study (``MainDicomTags`` + series tags)."""
        found = self.post("/tools/find", json.dumps({"Level": "Instance", "Query": {"StudyInstanceUID": study_uid},
                                                      "Expand": True}).encode(), "application/json")
        return list(found)

    def series_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        found = self.post("/tools/find", json.dumps({"Level": "Series", "Query": {"StudyInstanceUID": study_uid},
                                                      "Expand": True}).encode(), "application/json")
        return list(found)

    def alive(self) -> bool:
        try:
            self.get("/system")
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_orthanc(folder: str | Path, *, modalities: dict[str, list[Any]] | None = None, aet: str = "ORTHANC",
                  http_port: int | None = None, dicom_port: int | None = None,
                  timeout: float = 60.0) -> OrthancServer:
    """Start Orthanc with its configuration, storage and log under ``folder``; wait until it answers.

    ``modalities``: name -> ``[AET, host, port]`` (Orthanc's ``DicomModalities``), e.g. medsight's node.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    http_port = http_port or free_port()
    dicom_port = dicom_port or free_port()
    plugin = dicomweb_plugin()
    config = {
        "Name": "medsight-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": aet, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "HttpServerEnabled": True, "DicomServerEnabled": True,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
        "DicomCheckModalityHost": False, "DicomModalities": modalities or {}, "StableAge": 1,
        "Plugins": [str(plugin)] if plugin else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False, "StudiesMetadata": "Full",
                     "SeriesMetadata": "Full"},
        "HttpTimeout": 60, "DicomScuTimeout": 30, "DicomAssociationCloseDelay": 0, "ConcurrentJobs": 2,
        "OverwriteInstances": False,
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2), encoding="utf-8")
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - kept open for the process' lifetime
    process = subprocess.Popen([str(ORTHANC), str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                               env={**os.environ, "LANG": "C"})
    server = OrthancServer(folder, http_port, dicom_port, aet, process, dict(modalities or {}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}; see {folder / 'orthanc.log'}")
        if server.alive():
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within {timeout} s; see {folder / 'orthanc.log'}")


def set_modalities(server: OrthancServer, modalities: dict[str, list[Any]]) -> None:
    """Register (or replace) DICOM modalities at run time through the REST API."""
    for name, (aet, host, port) in modalities.items():
        server_body = json.dumps({"AET": aet, "Host": host, "Port": port}).encode()
        req = urllib.request.Request(f"{server.url}/modalities/{name}", data=server_body, method="PUT",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30):
            pass
        server.modalities[name] = [aet, host, port]
