"""Repair the header defects of real-world source series before a derived object (DICOM-SEG) is built on them.

Anonymisers and old scanners leave series that viewers display but that highdicom refuses as a source: the
TotalSegmentator example CT has an empty SOPClassUID, SOPInstanceUID, StudyInstanceUID and SeriesInstanceUID in
every slice (the file meta information still holds the SOP UIDs); dcmqi's GE CT has an empty
SpecificCharacterSet. :func:`load_source_series` reads the headers of one series (no pixels) and
:func:`repair_series` fixes, in memory only (the user's files are never changed):

* SOPClassUID / SOPInstanceUID empty or absent: taken from the file meta (MediaStorageSOPClassUID/InstanceUID);
* SpecificCharacterSet empty or not a DICOM defined term: dropped when every text value is ASCII (the default
  repertoire), else ``ISO_IR 192`` when the text is valid UTF-8, else ``ISO_IR 100`` (Latin-1 decodes any byte);
  an empty first value of a multi-valued (ISO 2022) set becomes ``ISO 2022 IR 6``;
* StudyInstanceUID / SeriesInstanceUID / FrameOfReferenceUID empty or absent: a UID derived from the series'
  SOP instance UIDs, so that every object derived from the same files agrees (the source files keep theirs; a
  derived SEG then references the series through its SOP instance UIDs, which are real);
* attributes a derived object copies from its source (Patient and General Study modules: PatientName, PatientID,
  PatientBirthDate, PatientSex, AccessionNumber, StudyID, StudyDate, StudyTime, ReferringPhysicianName) absent:
  added empty (they are type 2: present, may be empty); a PatientSex other than M/F/O, and a StudyDate, StudyTime
  or PatientBirthDate that is no valid DA/TM, become empty; an empty or absent SeriesNumber becomes 1;
* retired attributes (and group length elements outside the file meta): dropped.

Everything repaired in one series is logged as ONE warning line naming the folder and what was repaired (with the
number of files). What cannot be repaired (no SOP UID anywhere, two files with one SOPInstanceUID, two studies in
one series) raises a one-line :class:`~medsight.errors.MedsightError` naming the file and the tag.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydicom.datadict import dictionary_is_retired, dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, TM

from medsight.errors import require_exists, user_error
from medsight.io.dicom import find_dicom_files
from medsight.io.dicom_header import read_dataset

logger = logging.getLogger(__name__)

#: DICOM-SEG and other derived objects that live beside images but are not a source series.
DERIVED_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
})
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "PN", "UC"})
#: Type 2 attributes a derived object copies from its source (highdicom reads them as attributes).
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                 "StudyDate", "StudyTime", "ReferringPhysicianName")
_DATES = {"StudyDate": DA, "PatientBirthDate": DA, "StudyTime": TM}
_UID_SEED = "medsight source repair"
_RETIRED = "retired attributes dropped"


def load_source_series(series: str | Path, series_uid: str | None = None, *, level: int = logging.WARNING,
                       purpose: str = "the DICOM-SEG") -> list[Dataset]:
    """The image headers (no pixel data) of one series under ``series``, repaired by :func:`repair_series`.

    Args:
        series: a series folder (searched recursively) or one DICOM file.
        series_uid: the SeriesInstanceUID to keep, as the files hold it (``""`` for files without one; ``None``:
            every image file, which must then be one series).
        level: log level of the one repair line (readers pass ``logging.DEBUG``).
        purpose: what the headers are for, for the log line.

    Raises:
        MedsightError: no image files of that series; a defect that cannot be repaired.
    """
    root = require_exists(series, "DICOM series folder")
    files = find_dicom_files(root) if root.is_dir() else [root]
    out = []
    for path in files:
        ds = read_dataset(path, stop_before_pixels=True)
        if "Rows" not in ds or _sop_class(ds) in DERIVED_SOP_CLASSES:
            continue
        if series_uid is not None and str(ds.get("SeriesInstanceUID", "") or "") != series_uid:
            continue
        out.append(ds)
    if not out:
        raise user_error(f"image files of series {series_uid or '(any)'}", "none", root,
                         "point at the source series folder")
    repair_series(out, root, level=level, purpose=purpose)
    return out


def _sop_class(ds: Dataset) -> str:
    value = str(ds.get("SOPClassUID", "") or "")
    meta = getattr(ds, "file_meta", None)
    return value or (str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else "")


def repair_series(datasets: Sequence[Dataset], where: str | Path, *, level: int = logging.WARNING,
                  purpose: str = "the DICOM-SEG") -> list[str]:
    """Repair the headers of one series in place; returns the repairs made (also logged as one line).

    Args:
        datasets: the headers of every image file of the series (``ds.filename`` names the file in errors).
        where: the series folder, for the log line.
        level: log level of the line.
        purpose: what the headers are for, for the log line.

    Raises:
        MedsightError: naming the file and the tag that cannot be repaired.
    """
    done: Counter[str] = Counter()
    retired: set[str] = set()
    for ds in datasets:
        for note in _repair_dataset(ds, retired):
            done[note] += 1
    done.update(_repair_shared_uids(datasets))
    _check_unique_instances(datasets)
    notes = [f"{note} ({count} of {len(datasets)} files)" for note, count in done.items()]
    if retired:
        listed = sorted(retired)
        notes = [n.replace(_RETIRED, f"{_RETIRED} ({', '.join(listed[:4])}{', ...' if len(listed) > 4 else ''})")
                 for n in notes]
    if notes:
        logger.log(level, "repaired the headers of the source series in %s for %s (the files are unchanged): %s",
                   where, purpose, "; ".join(notes))
    return notes


def _repair_dataset(ds: Dataset, retired: set[str]) -> list[str]:
    notes = [_repair_sop_uid(ds, "SOPClassUID", "MediaStorageSOPClassUID", "(0008,0016)"),
             _repair_sop_uid(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID", "(0008,0018)"),
             _repair_charset(ds)]
    for keyword in _TYPE2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, "")
            notes.append(f"{keyword} absent: added empty")
        elif keyword == "PatientSex" and str(ds.PatientSex or "").strip().upper() not in ("", "M", "F", "O"):
            notes.append(f"PatientSex {str(ds.PatientSex)[:16]!r} not M/F/O: emptied")
            ds.PatientSex = ""
        elif keyword in _DATES and not _valid(_DATES[keyword], ds.get(keyword)):
            notes.append(f"{keyword} {str(ds.get(keyword))[:26]!r} not a valid {_DATES[keyword].__name__}: emptied")
            setattr(ds, keyword, "")
    if not str(ds.get("SeriesNumber", "") or "").strip():
        ds.SeriesNumber = 1
        notes.append("SeriesNumber missing: set to 1")
    dropped = _drop_retired(ds)
    if dropped:
        retired.update(dropped)
        notes.append(_RETIRED)
    return [n for n in notes if n]


def _repair_sop_uid(ds: Dataset, keyword: str, meta_keyword: str, tag: str) -> str:
    if str(ds.get(keyword, "") or "").strip():
        return ""
    meta = getattr(ds, "file_meta", None)
    value = str(meta.get(meta_keyword, "") or "").strip() if meta is not None else ""
    if not value:
        raise user_error(f"a {keyword} {tag} in the dataset or the file meta ({meta_keyword})", "neither",
                         getattr(ds, "filename", None), "re-export the series from the archive (an anonymiser "
                         "emptied the UID)")
    setattr(ds, keyword, value)
    return f"{keyword} missing: taken from the file meta"


def _valid(kind: type, value: object) -> bool:
    text = str(value or "").strip()
    if not text:
        return True
    try:
        kind(text)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _defined_charsets() -> frozenset[str]:
    """The Specific Character Set defined terms (highdicom's list, the writer's constraint)."""
    import highdicom as hd

    return frozenset(v.value for v in hd.enum.SpecificCharacterSetValues)


def _repair_charset(ds: Dataset) -> str:
    if "SpecificCharacterSet" not in ds:
        return ""
    raw = ds.SpecificCharacterSet
    values = [str(v).strip() for v in (raw if isinstance(raw, Sequence) and not isinstance(raw, str) else [raw])]
    defined = _defined_charsets()
    if len(values) > 1 and values[0] == "" and all(v in defined for v in values[1:]):
        ds.SpecificCharacterSet = ["ISO 2022 IR 6", *values[1:]]
        return "SpecificCharacterSet first value empty: ISO 2022 IR 6"
    if values and all(v in defined for v in values):
        return ""
    shown = "\\".join(values)
    text = b"".join(_text_bytes(ds))
    del ds.SpecificCharacterSet  # decode the raw text below with the default repertoire first
    if text.isascii():
        return f"SpecificCharacterSet {shown!r} invalid: dropped (ASCII text)"
    try:
        text.decode("utf-8")
        ds.SpecificCharacterSet = "ISO_IR 192"
    except UnicodeDecodeError:
        ds.SpecificCharacterSet = "ISO_IR 100"
    return f"SpecificCharacterSet {shown!r} invalid: {ds.SpecificCharacterSet} (non-ASCII text)"


def _text_bytes(ds: Dataset) -> Iterator[bytes]:
    """The undecoded bytes of the text elements of ``ds`` and its sequences (str values as UTF-8)."""
    for elem in ds.elements():
        tag = BaseTag(elem.tag)
        vr = elem.VR
        if vr is None and not tag.is_private:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr == "SQ":
            for item in ds[tag].value:
                yield from _text_bytes(item)
        elif vr in _TEXT_VRS:
            value = elem.value
            if isinstance(value, bytes):
                yield value
            elif value is not None and not isinstance(elem, RawDataElement):
                yield str(value).encode("utf-8")


def _drop_retired(ds: Dataset) -> list[str]:
    """Delete the retired top-level attributes and group lengths of ``ds``; returns their tags."""
    dropped = []
    for elem in list(ds.elements()):
        tag = Tag(elem.tag)
        if tag.is_private:
            continue
        if tag.element == 0 or _is_retired(tag):
            dropped.append(f"({tag.group:04X},{tag.element:04X})")
            del ds[tag]
    return dropped


def _is_retired(tag: BaseTag) -> bool:
    try:
        return bool(dictionary_is_retired(tag))
    except KeyError:
        return False


def _repair_shared_uids(datasets: Sequence[Dataset]) -> Counter[str]:
    """Study/Series/FrameOfReference UIDs: one per series; empty ones derived from the SOP instance UIDs."""
    notes: Counter[str] = Counter()
    instances = sorted(str(ds.SOPInstanceUID) for ds in datasets)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        found = {str(ds.get(keyword, "") or "").strip() for ds in datasets} - {""}
        if len(found) > 1:
            other = next(ds for ds in datasets if str(ds.get(keyword, "")) != sorted(found)[0])
            raise user_error(f"one {keyword} in the series", f"{len(found)} ({', '.join(sorted(found)[:2])})",
                             getattr(other, "filename", None), "pass the files of one series only")
        value = found.pop() if found else generate_uid(entropy_srcs=[_UID_SEED, keyword, *instances])
        missing = sum(1 for ds in datasets if str(ds.get(keyword, "") or "").strip() != value)
        for ds in datasets:
            setattr(ds, keyword, value)
        if missing:
            notes[f"{keyword} missing: derived from the SOP instance UIDs"] = missing
    return notes


def _check_unique_instances(datasets: Sequence[Dataset]) -> None:
    seen: dict[str, object] = {}
    for ds in datasets:
        uid = str(ds.SOPInstanceUID)
        if uid in seen:
            raise user_error("one file per SOPInstanceUID (0008,0018)", f"{uid} also in {seen[uid]}",
                             getattr(ds, "filename", None), "remove the duplicate copy of the file")
        seen[uid] = getattr(ds, "filename", None)


__all__ = ["DERIVED_SOP_CLASSES", "load_source_series", "repair_series"]
