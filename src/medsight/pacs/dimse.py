"""The PACS client over DIMSE (C-ECHO, C-FIND, C-GET, C-STORE), on ``pynetdicom``.

Retrieval uses C-GET (the instances come back on the same association, so the node needs no listening port for a
pull and the PACS needs no route back to it). The storage SOP classes and transfer syntaxes proposed (and accepted by
the node's listener, :mod:`medsight.pacs.listener`) are :data:`STORAGE_CLASSES` x :data:`TRANSFER_SYNTAXES`: the
image classes medsight reads, the objects it writes (SEG, RTSTRUCT, Secondary Capture), in every transfer syntax
pydicom can decode, so a JPEG 2000 series arrives as the archive holds it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from medsight.pacs.client import (
    RETURN_KEYS,
    PacsError,
    check_level,
    dataset_values,
    instance_path,
    save_instance,
)

TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                     ExplicitVRBigEndian, JPEG2000Lossless, JPEG2000, JPEGLosslessSV1, JPEGBaseline8Bit,
                     JPEGExtended12Bit, JPEGLSLossless, JPEGLSNearLossless, RLELossless)

#: storage SOP classes (UIDs) the node exchanges: images in, derived objects out
STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.128",  # PET Image
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR (accepted so that a non-image object is reported, not refused)
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
)

#: the image classes a C-GET proposes one presentation context per compressed transfer syntax for: a PACS picks
#: one transfer syntax per context and some (Orthanc) cannot transcode, so each syntax needs its own context
IMAGE_CLASSES = STORAGE_CLASSES[:10]
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
COMPRESSED = (JPEG2000Lossless, JPEG2000, JPEGLosslessSV1, JPEGBaseline8Bit, JPEGLSLossless, RLELossless)

GET_MODEL = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve Information Model - GET
FIND_MODEL = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
VERIFICATION = "1.2.840.10008.1.1"


def retrieve_contexts() -> list[tuple[str, list[str]]]:
    """``(SOP class, transfer syntaxes)`` of each storage context a C-GET proposes (77 of the 128 allowed)."""
    out: list[tuple[str, list[str]]] = [(uid, [str(t) for t in UNCOMPRESSED]) for uid in STORAGE_CLASSES]
    out += [(uid, [str(ts)]) for uid in IMAGE_CLASSES for ts in COMPRESSED]
    return out


def status_text(status: Any) -> str:
    return f"0x{int(status.Status):04X}" if status is not None and "Status" in status else "no status"


class DimseClient:
    """A DIMSE SCU: ``ae_title`` calling ``called_ae`` at ``host:port``."""

    def __init__(self, host: str, port: int, *, called_ae: str = "ANY-SCP", ae_title: str = "MEDSIGHT",
                 timeout: float = 30.0) -> None:
        self.host, self.port, self.called_ae, self.ae_title, self.timeout = host, int(port), called_ae, ae_title, timeout

    @property
    def where(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"

    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.ae_title)
        for name in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, name, self.timeout)
        return ae

    @contextmanager
    def _association(self, ae: Any, what: str, **kwargs: Any) -> Iterator[Any]:
        try:
            assoc = ae.associate(self.host, self.port, ae_title=self.called_ae, **kwargs)
        except OSError as exc:
            raise PacsError(f"Expected a DICOM node answering at {self.where} to {what}, got {exc}; check that it "
                            "runs, its port and AE title") from exc
        if not assoc.is_established:
            reason = ("a rejection" if assoc.is_rejected else
                      "no association (nothing listening there, or the connection was aborted)")
            raise PacsError(f"Expected a DICOM node {self.where} to accept an association from {self.ae_title} to "
                            f"{what}, got {reason}; check that it runs, the host, port, called AE title, and that "
                            f"it knows {self.ae_title} as a modality")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def echo(self) -> None:
        ae = self._ae()
        ae.add_requested_context(VERIFICATION)
        with self._association(ae, "answer a C-ECHO") as assoc:
            status = assoc.send_c_echo()
            if status is None or status.Status != 0:
                raise PacsError(f"Expected C-ECHO success from {self.where}, got {status_text(status)}; see its log")

    def find(self, level: str, query: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        level = check_level(level)
        ds = Dataset()
        ds.QueryRetrieveLevel = level
        for key in RETURN_KEYS[level]:
            setattr(ds, key, "")
        for key, value in (query or {}).items():
            setattr(ds, key, value)
        ae = self._ae()
        ae.add_requested_context(FIND_MODEL)
        out = []
        with self._association(ae, f"answer a {level} C-FIND") as assoc:
            for status, identifier in assoc.send_c_find(ds, FIND_MODEL):
                if status is None or "Status" not in status:
                    raise PacsError(f"Expected C-FIND answers from {self.where}, got none (timeout); see its log")
                if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                    out.append(dataset_values(identifier, level))
                elif status.Status != 0:
                    raise PacsError(f"Expected C-FIND success from {self.where}, got {status_text(status)}; "
                                    "check the query keys")
        return out

    def retrieve(self, study_uid: str, series_uid: str | None, dest: Path) -> list[Path]:
        from pynetdicom import build_role, evt

        ae = self._ae()
        ae.add_requested_context(GET_MODEL)
        for uid, syntaxes in retrieve_contexts():
            ae.add_requested_context(uid, syntaxes)
        roles = [build_role(uid, scp_role=True) for uid in STORAGE_CLASSES]
        written: list[Path] = []
        problems: list[str] = []

        def on_store(event: Any) -> int:
            try:
                ds = event.dataset
                ds.file_meta = event.file_meta
                written.append(save_instance(ds, instance_path(dest, ds)))
            except (OSError, ValueError, AttributeError) as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                return 0xA700
            return 0x0000

        query = Dataset()
        query.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
        query.StudyInstanceUID = study_uid
        if series_uid:
            query.SeriesInstanceUID = series_uid
        with self._association(ae, "send a series (C-GET)", ext_neg=roles,
                               evt_handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
            for status, _ in assoc.send_c_get(query, GET_MODEL):
                if status is None or "Status" not in status:
                    raise PacsError(f"Expected C-GET answers from {self.where}, got none (timeout); see its log")
                if status.Status not in (0x0000, 0xFF00, 0xFF01):
                    raise PacsError(f"Expected C-GET success from {self.where} for study {study_uid}, got "
                                    f"{status_text(status)}; check the UIDs and the PACS' log")
        if problems:
            raise PacsError(f"Expected to store every retrieved instance in {dest}, got {len(problems)} failures "
                            f"({problems[0]}); check the disk")
        return written

    def store(self, files: Sequence[Path]) -> list[str]:
        if not files:
            return []
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        ae = self._ae()
        pairs = sorted({(str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID)) for h in headers})
        for sop_class in sorted({c for c, _ in pairs}):
            ae.add_requested_context(sop_class, sorted({t for c, t in pairs if c == sop_class}))
        stored: list[str] = []
        with self._association(ae, f"store {len(files)} instances (C-STORE)") as assoc:
            for f in files:
                ds = pydicom.dcmread(f)
                status = assoc.send_c_store(ds)
                if status is None or "Status" not in status:
                    raise PacsError(f"Expected a C-STORE answer from {self.where}, got none after {len(stored)} of "
                                    f"{len(files)}; check the PACS")
                if status.Status not in (0x0000, 0xB000, 0xB006, 0xB007):
                    raise PacsError(f"Expected C-STORE success from {self.where}, got {status_text(status)} for "
                                    f"{Path(f).name}; see the PACS' log")
                stored.append(str(ds.SOPInstanceUID))
        return stored

    def holds(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        found = self.find("IMAGE", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                                    "SOPInstanceUID": sop_uid})
        return any(f.get("SOPInstanceUID") == sop_uid for f in found)


__all__ = ["FIND_MODEL", "GET_MODEL", "retrieve_contexts", "STORAGE_CLASSES", "TRANSFER_SYNTAXES", "DimseClient", "status_text"]
