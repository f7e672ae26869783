"""Pick the PACS client the configuration names: DIMSE (:class:`~medsight.pacs.dimse.DimseClient`) or DICOMweb
(:class:`~medsight.pacs.dicomweb.DicomWebClient`); both follow :class:`medsight.pacs.client.PacsClient`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from medsight.errors import MedsightError, user_error
from medsight.io.dicom_files import find_dicom_files
from medsight.pacs.client import PacsClient, pixel_shortfall
from medsight.pacs.config import PacsConfig
from medsight.pacs.dicomweb import DicomWebClient
from medsight.pacs.dimse import DimseClient


def connect(config: PacsConfig, *, ae_title: str = "MEDSIGHT", transport: str | None = None) -> PacsClient:
    """The client for ``transport`` (default ``config.transport``): a DIMSE client calling ``config.called_ae``
    at ``config.host:config.port`` as ``ae_title``, or a DICOMweb client at ``config.url``."""
    kind = transport or config.transport
    if kind == "dicomweb":
        if not config.url:
            raise MedsightError("Expected a DICOMweb URL (--url or [pacs] url), got none; give the PACS' DICOMweb "
                                "root, e.g. http://127.0.0.1:8042/dicom-web")
        return DicomWebClient(config.url, timeout=config.timeout)
    if kind != "dimse":
        raise MedsightError(f"Expected a transport dimse or dicomweb, got {kind!r}; pick one of them")
    return DimseClient(config.host, config.port, called_ae=config.called_ae, ae_title=ae_title,
                       timeout=config.timeout)


def files_to_send(paths: Sequence[str | Path]) -> list[Path]:
    """The DICOM files of ``paths`` (files, or folders searched recursively), each checked to be a whole, readable
    DICOM object with its UIDs before anything is sent.

    Raises:
        MedsightError: a path that does not exist, no DICOM file, or a truncated or unreadable file (one line).
    """
    files: list[Path] = []
    for p in (Path(x) for x in paths):
        if not p.exists():
            raise user_error("an existing DICOM file or folder", "nothing", p, "check the path")
        files += find_dicom_files(p) if p.is_dir() else [p]
    if not files:
        raise user_error("DICOM files to send", "none", ", ".join(str(p) for p in paths), "point at DICOM files")
    for f in files:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(f)
                _ = ds.get("PixelData")  # reads to the end: a truncated file stops early
            ended = [w for w in caught if "end of file" in str(w.message).lower() or "truncat" in str(w.message)]
            if ended or pixel_shortfall(ds) is not None:
                raise EOFError("the file ends before its pixel data does")
            missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
                       if not ds.get(k)]
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            raise user_error("a whole, readable DICOM file", f"{type(exc).__name__} (truncated or not DICOM)", f,
                             "re-export the file or leave it out") from exc
        if missing:
            raise user_error("a DICOM file with its UIDs", f"no {', '.join(missing)}", f,
                             "a PACS refuses such files; repair the header or leave the file out")
    return files


__all__ = ["connect", "files_to_send"]
