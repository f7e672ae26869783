"""One small client interface over both PACS transports, DIMSE (:mod:`medsight.pacs.dimse`) and DICOMweb
(:mod:`medsight.pacs.dicomweb`).

:class:`PacsClient` is what the node and the command line use: ``echo``, ``find`` (studies, series or instances),
``retrieve`` (a series or a study into a folder, one file per instance, written atomically), ``store`` (files; the
SOP Instance UIDs the PACS confirmed come back) and ``holds`` (does the PACS have this instance: asked before a
result is resent after a crash). :func:`medsight.pacs.transport.connect` builds the one the configuration names.

Query results are dicts of DICOM keywords to strings, restricted to the UIDs, dates, descriptions and counts of
:data:`RETURN_KEYS`: patient names and IDs are neither requested nor returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from pydicom.dataset import Dataset

from medsight.core.atomic import atomic_path
from medsight.errors import MedsightError

LEVELS = ("STUDY", "SERIES", "IMAGE")
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}

#: keywords asked for and returned at each query level (no patient names or IDs)
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "STUDY": ("StudyInstanceUID", "StudyDate", "StudyDescription", "ModalitiesInStudy", "AccessionNumber",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "BodyPartExamined", "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}


class PacsError(MedsightError):
    """The PACS could not be reached or refused a request (one line: what, where, what to check)."""


class PacsClient(Protocol):
    """What the node and the CLI need from a PACS, whatever the transport."""

    def echo(self) -> None:
        """Check that the PACS answers (C-ECHO, or a QIDO-RS query); raises :class:`PacsError`."""

    def find(self, level: str, query: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        """Matches at ``level`` (STUDY, SERIES or IMAGE) of ``query`` (keyword -> value, wildcards allowed)."""

    def retrieve(self, study_uid: str, series_uid: str | None, dest: Path) -> list[Path]:
        """Fetch a series (or the whole study) into ``dest/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``."""

    def store(self, files: Sequence[Path]) -> list[str]:
        """Send DICOM files; returns the SOP Instance UIDs the PACS accepted (raises when it accepted none)."""

    def holds(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        """Whether the PACS already holds this instance."""


def pixel_shortfall(ds: Dataset) -> tuple[int, int] | None:
    """``(bytes held, bytes needed)`` when the uncompressed Pixel Data is shorter than its header says, else None."""
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if ts not in UNCOMPRESSED or "PixelData" not in ds:
        return None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    needed = int(ds.Rows) * int(ds.Columns) * frames * int(ds.get("SamplesPerPixel", 1) or 1) * (
        int(ds.BitsAllocated) // 8 if int(ds.BitsAllocated) >= 8 else 1)
    if int(ds.BitsAllocated) == 1:
        needed = (int(ds.Rows) * int(ds.Columns) * frames + 7) // 8
    held = len(ds.PixelData)
    return (held, needed) if held < needed else None


def check_level(level: str) -> str:
    level = level.upper()
    if level == "INSTANCE":
        level = "IMAGE"
    if level not in LEVELS:
        raise MedsightError(f"Expected a query level STUDY, SERIES or IMAGE, got {level!r}; pick one of them")
    return level


def dataset_values(ds: Dataset, level: str) -> dict[str, str]:
    """The :data:`RETURN_KEYS` of ``ds`` as strings (multi-valued ones joined with ``\\``)."""
    out = {}
    for key in RETURN_KEYS[level]:
        value = ds.get(key)
        if value is None:
            continue
        out[key] = "\\".join(str(v) for v in value) if isinstance(value, (list, tuple)) or (
            hasattr(value, "__iter__") and not isinstance(value, (str, bytes))) else str(value)
    return out


def instance_path(dest: Path, ds: Dataset) -> Path:
    """Where a retrieved instance goes: ``dest/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``."""
    return Path(dest) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"


def save_instance(ds: Dataset, target: Path) -> Path:
    """Write a received data set atomically (temporary name, fsync, rename), keeping its transfer syntax."""
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return target


__all__ = ["LEVELS", "RETURN_KEYS", "PacsClient", "PacsError", "check_level", "dataset_values",
           "instance_path", "pixel_shortfall", "save_instance"]
