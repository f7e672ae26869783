"""DICOM de-identification: the PS3.15 Annex E Basic Application Level Confidentiality Profile, on pydicom.

``deidentify_folder(IN_DIR, OUT_DIR, key=...)`` reads every DICOM file under ``IN_DIR`` (never writing there),
applies the profile to a copy and writes it under ``OUT_DIR``; an audit CSV lists, per file, each element that was
removed, emptied or replaced (element path, tag and action; never a value).

The profile's actions, from Table E.1-1 (``resources/deid/ps3.15_table_e1-1_basic.tsv``, DICOM 2026c):

* ``X`` remove, ``Z`` empty, ``D`` replace with a dummy of the same VR, ``U`` replace the UID by a new one;
* compound codes are resolved without IOD knowledge to a choice that keeps files valid: ``Z/D`` -> D, ``X/D`` -> D,
  ``X/Z`` -> Z, ``X/Z/D`` -> Z, ``X/Z/U*`` (reference sequences) -> keep the items and replace the UIDs in them;
* a sequence marked ``D`` (Content Sequence) keeps its items, which are de-identified recursively; inside it, free
  text, names, dates and times that the table does not list (``TextValue``...) are replaced as well;
* every private attribute, curve (groups ``50xx``) and overlay (groups ``60xx``; the profile lists Overlay Data and
  Comments, the rest of a group describes the removed plane) is removed; pixel data is kept byte for byte.

UIDs and the patient pseudonym are keyed hashes (:class:`DeidKey`): the same key maps the same UID to the same new UID
in every file and every run, so series, studies and references still link. With ``shift_dates=True`` (the Retain
Longitudinal Temporal Information with Modified Dates option) every date of a patient moves back by the same number
of days (365-3650, from the key and the patient ID) and times are kept; otherwise dates follow the profile.
PatientIdentityRemoved = YES and De-identification Method (Code Sequence: DCM 113100, and 113107 with date shifting)
are added. Files with BurnedInAnnotation = YES are written (the pixels are not cleaned) and warned about.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

from medsight import __version__
from medsight.core.atomic import atomic_path, write_text
from medsight.errors import require_exists, user_error
from medsight.io.dicom import find_dicom_files, walk_files

logger = logging.getLogger(__name__)

PROFILE_RESOURCE = "deid/ps3.15_table_e1-1_basic.tsv"
KEY_FORMAT = "medsight-deid-key"
AUDIT_COLUMNS = ("file", "output", "element", "tag", "action", "rule")
#: compound codes of Table E.1-1 -> the action medsight takes (see the module docstring).
COMPOUND = {"Z/D": "D", "X/D": "D", "X/Z": "Z", "X/Z/D": "Z", "X/Z/U*": "U*"}
#: value representations replaced inside a ``D`` sequence even when the table does not list them.
FREE_TEXT_VRS = frozenset({"PN", "DA", "DT", "TM", "LT", "ST", "UT", "UC", "UR"})
_META_REMOVED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)


# ------------------------------------------------------------------------------------------------ profile
@lru_cache(maxsize=1)
def basic_profile() -> dict[int, tuple[str, str]]:
    """Table E.1-1, Basic Profile column: ``{tag: (action code, attribute name)}``."""
    text = resources.files("medsight.resources").joinpath(PROFILE_RESOURCE).read_text(encoding="utf-8")
    table: dict[int, tuple[str, str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            tag, code, name = line.split("\t")
            table[int(tag, 16)] = (COMPOUND.get(code, code), name)
    return table


def _is_curve_or_overlay(tag: BaseTag) -> str | None:
    group = tag.group
    if 0x5000 <= group <= 0x501E and group % 2 == 0:
        return "curve (50xx)"
    if 0x6000 <= group <= 0x601E and group % 2 == 0:
        return "overlay (60xx)"
    return None


# ---------------------------------------------------------------------------------------------------- key
@dataclass(frozen=True)
class DeidKey:
    """The secret behind the new UIDs, patient pseudonyms and date shifts. Keep it with the originals, not with
    the de-identified data: whoever holds it can map original UIDs to new ones and undo the date shift."""

    secret: str

    @classmethod
    def generate(cls) -> DeidKey:
        return cls(secrets.token_hex(32))

    @classmethod
    def load_or_create(cls, path: str | Path) -> tuple[DeidKey, bool]:
        """Read the key file at ``path``, or create one there (mode 0600); returns ``(key, created)``."""
        p = Path(path)
        if p.exists():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
                secret = str(data["secret"]) if data.get("format") == KEY_FORMAT else ""
                int(secret, 16)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise user_error("a medsight de-identification key file (JSON with 'secret')", "something else", p,
                                 "point --key at the key of the earlier run, or at a new file name") from exc
            return cls(secret), False
        key = cls.generate()
        body = {"format": KEY_FORMAT, "version": 1, "secret": key.secret,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        with atomic_path(p) as tmp:
            tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o600)
        return key, True

    def _digest(self, kind: str, value: str) -> str:
        return hashlib.sha256(f"{self.secret}\x00{kind}\x00{value}".encode()).hexdigest()

    def uid(self, old: str) -> str:
        """The new UID of ``old``: ``2.25.<UUID as integer>`` with the UUID from a keyed hash (same key, same UID)."""
        digest = bytes.fromhex(self._digest("uid", str(old).strip()))
        return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"

    def pseudonym(self, patient: str) -> str:
        """``ANON<10 hex>``: the new Patient ID of a patient."""
        return "ANON" + self._digest("patient", patient)[:10].upper()

    def date_shift_days(self, patient: str) -> int:
        """Days (negative, -365..-3650) by which the dates of ``patient`` move."""
        return -(365 + int(self._digest("days", patient), 16) % (3650 - 365 + 1))


# ------------------------------------------------------------------------------------------------ dataset
@dataclass
class _Context:
    key: DeidKey
    shift_days: int | None
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)  # element, tag, action, rule

    def note(self, path: str, tag: BaseTag, action: str, rule: str) -> None:
        self.changes.append((path, f"({tag.group:04X},{tag.element:04X})", action, rule))


def _dummy(vr: str, key: DeidKey, value: object) -> object:
    """A non-empty dummy value consistent with ``vr``."""
    if vr == "UI":
        return _map_uids(value, key)
    if vr == "DA":
        return "19000101"
    if vr == "DT":
        return "19000101000000"
    if vr == "TM":
        return "000000"
    if vr == "AS":
        return "000Y"
    if vr in ("DS", "IS"):
        return "0"
    if vr in ("FD", "FL", "SS", "US", "SL", "UL", "SV", "UV", "AT"):
        return 0
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    if vr == "PN":
        return "ANONYMOUS"
    if vr == "UR":
        return "http://anonymized.invalid"
    return "ANONYMIZED"


def _map_uids(value: object, key: DeidKey) -> object:
    if value is None or value == "":
        return value
    if isinstance(value, str):
        return key.uid(value)
    return [key.uid(str(v)) for v in value]  # type: ignore[attr-defined]


def _shift_one(text: str, vr: str, days: int) -> str | None:
    text = text.strip()
    if not text:
        return text
    try:
        day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None
    if vr == "DA" and len(text) != 8:
        return None
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d") + text[8:]


def _shift(value: object, vr: str, days: int) -> object | None:
    """Dates moved by ``days``; ``None`` when a value is not a parseable date (it is then emptied)."""
    if isinstance(value, str):
        return _shift_one(value, vr, days)
    out = [_shift_one(str(v), vr, days) for v in value]  # type: ignore[attr-defined]
    return None if any(v is None for v in out) else out


def _clean(ds: Dataset, ctx: _Context, prefix: str = "", *, strict: bool = False) -> None:
    """Apply the profile to ``ds`` in place (recursing into sequences), recording every change in ``ctx``."""
    table = basic_profile()
    for tag in list(ds.keys()):
        elem = ds[tag]
        name = f"{prefix}{elem.keyword or f'({tag.group:04X},{tag.element:04X})'}"
        if tag.is_private:
            del ds[tag]
            ctx.note(name, tag, "removed", "private attribute")
            continue
        group_rule = _is_curve_or_overlay(tag)
        if group_rule:
            del ds[tag]
            ctx.note(name, tag, "removed", group_rule)
            continue
        code = table.get(int(tag), ("", ""))[0]
        rule = f"profile {code}"
        if not code and strict and elem.VR in FREE_TEXT_VRS:
            code, rule = "D", "free text inside a D sequence"
        if ctx.shift_days is not None and elem.VR in ("DA", "DT", "TM"):
            if elem.VR != "TM" and not elem.is_empty:  # whole-day shifts leave the time of day unchanged
                shifted = _shift(elem.value, elem.VR, ctx.shift_days)
                elem.value = shifted if shifted is not None else ""
                ctx.note(name, tag, "date shifted" if shifted is not None else "emptied",
                         "date shift option" if shifted is not None else "unparseable date")
            continue
        if code == "X":
            del ds[tag]
            ctx.note(name, tag, "removed", "profile X")
        elif elem.VR == "SQ":
            _clean_sequence(elem, code, ctx, name)
        elif not code or elem.is_empty:
            continue
        elif code == "Z":
            elem.value = b"" if elem.VR in ("OB", "OW", "UN") else ""
            ctx.note(name, tag, "emptied", "profile Z")
        elif code in ("U", "U*") and elem.VR == "UI":
            elem.value = _map_uids(elem.value, ctx.key)
            ctx.note(name, tag, "uid replaced", f"profile {code}")
        elif int(tag) == 0x00100020:  # Patient ID: a keyed pseudonym, so that a patient's studies still group
            elem.value = ctx.key.pseudonym(str(elem.value))
            ctx.note(name, tag, "replaced", "profile D (pseudonym)")
        else:
            elem.value = _dummy(elem.VR, ctx.key, elem.value)
            ctx.note(name, tag, "replaced", rule)


def _clean_sequence(elem: pydicom.DataElement, code: str, ctx: _Context, name: str) -> None:
    """``Z`` empties the sequence; otherwise its items are de-identified (``D``: strictly, see the module doc)."""
    if code == "Z":
        if len(elem.value):
            elem.value = DicomSequence([])
            ctx.note(name, elem.tag, "emptied", "profile Z")
        return
    for i, item in enumerate(elem.value):
        _clean(item, ctx, f"{name}[{i}].", strict=code == "D")


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def deidentify_dataset(ds: Dataset, key: DeidKey, *, shift_dates: bool = False) -> list[tuple[str, str, str, str]]:
    """De-identify ``ds`` in place (file meta included); returns ``[(element, tag, action, rule)]``."""
    patient = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")
    ctx = _Context(key, key.date_shift_days(patient) if shift_dates else None)
    _clean(ds, ctx)
    ds.PatientIdentityRemoved = "YES"
    method = [f"medsight {__version__}", "DICOM PS3.15 E.1-1 Basic Profile"]
    codes = [_code_item("113100", "Basic Application Confidentiality Profile")]
    if shift_dates:
        method.append("Retain Longitudinal Modified Dates (day shift)")
        codes.append(_code_item("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
    ds.DeidentificationMethod = method
    ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if shift_dates else "REMOVED"
    for tag in (0x00120062, 0x00120063, 0x00120064, 0x00280303):
        ctx.note(ds[tag].keyword, ds[tag].tag, "added", "de-identification record")
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for tag in _META_REMOVED:
            if tag in meta:
                ctx.note(f"file_meta.{meta[tag].keyword}", meta[tag].tag, "removed", "file meta identifying the sender")
                del meta[tag]
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID  # the writer is now pydicom
        meta.ImplementationVersionName = f"MEDSIGHT_{__version__}"[:16]
    return ctx.changes


# ------------------------------------------------------------------------------------------------- folder
@dataclass(frozen=True)
class DeidResult:
    """What :func:`deidentify_folder` did.

    Attributes:
        written: ``(input file, output file)`` pairs.
        skipped: ``(input file, reason)`` for DICOM files that could not be read (nothing written for them).
        burned_in: input files marked BurnedInAnnotation = YES (written; their pixels may show identifiers).
        audit_csv: the audit file.
        ignored: number of non-DICOM files under the input folder (not copied).
    """

    written: tuple[tuple[Path, Path], ...]
    skipped: tuple[tuple[Path, str], ...]
    burned_in: tuple[Path, ...]
    audit_csv: Path
    ignored: int = 0


def _output_name(ds: Dataset, key: DeidKey) -> Path:
    """``<patient pseudonym>/<study>/<series>/<instance>.dcm`` from the new (already replaced) identifiers."""
    def short(uid: object, n: int) -> str:
        return hashlib.sha256(str(uid).encode()).hexdigest()[:n]

    series_number = ds.get("SeriesNumber")
    series = f"{int(series_number):03d}_" if series_number not in (None, "") else ""
    return (Path(str(ds.get("PatientID", "") or "ANON")) / f"study_{short(ds.get('StudyInstanceUID'), 8)}"
            / f"series_{series}{short(ds.get('SeriesInstanceUID'), 8)}" / f"{short(ds.get('SOPInstanceUID'), 16)}.dcm")


def _check_folders(in_dir: Path, out_dir: Path) -> None:
    src, dst = in_dir.resolve(), out_dir.resolve()
    if dst == src or src in dst.parents:
        raise user_error("an output folder outside the input folder", str(out_dir), in_dir,
                         "choose OUT_DIR beside IN_DIR (the input is never modified)")


def default_audit_path(out_dir: str | Path) -> Path:
    """``<OUT_DIR>_deid_audit.csv`` beside the output folder (it names the input files, so it stays with them)."""
    out = Path(out_dir)
    return out.parent / f"{out.name}_deid_audit.csv"


def deidentify_folder(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    key: DeidKey | None = None,
    shift_dates: bool = False,
    audit_csv: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DeidResult:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir`` (see the module docstring).

    Args:
        in_dir: folder searched recursively; nothing in it is modified.
        out_dir: output folder (not inside ``in_dir``); files go to ``<pseudonym>/study_<h>/series_<n>_<h>/<h>.dcm``.
        key: the secret for UIDs, pseudonyms and date shifts (default: a new random one, so UIDs stay consistent
            within this run only).
        shift_dates: shift dates per patient instead of removing them (needs a key kept by the user to repeat).
        audit_csv: where to write the audit (default :func:`default_audit_path`).
        progress: ``progress(done, total)`` after each file.

    Returns:
        The :class:`DeidResult`.
    """

    src = require_exists(in_dir, "input folder")
    if not src.is_dir():
        raise user_error("an input folder", "a file", src, "pass the folder holding the DICOM files")
    dst = Path(out_dir)
    _check_folders(src, dst)
    key = key or DeidKey.generate()
    files = find_dicom_files(src)
    if not files:
        raise user_error("DICOM files in the input folder", "none", src, "point at the folder exported from PACS")
    ignored = sum(1 for _ in walk_files(src)) - len(files)
    rows: list[tuple[str, ...]] = []
    written: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    burned: list[Path] = []
    for i, path in enumerate(files):
        rel = str(path.relative_to(src))
        try:
            ds = pydicom.dcmread(path, force=True)
            if "SOPInstanceUID" not in ds:
                raise InvalidDicomError("no SOPInstanceUID")
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError) as exc:
            reason = f"unreadable DICOM ({type(exc).__name__})"
            skipped.append((path, reason))
            rows.append((rel, "", "", "", "skipped", reason))
            logger.warning("%s: %s, not written", path, reason)
            continue
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            burned.append(path)
            logger.warning("%s has BurnedInAnnotation = YES: identifiers may be burned into the pixels, which "
                           "this profile does not clean; check the images before sharing", path)
        changes = deidentify_dataset(ds, key, shift_dates=shift_dates)
        target = dst / _output_name(ds, key)
        _save(ds, target)
        out_rel = str(target.relative_to(dst))
        written.append((path, target))
        if path in burned:
            rows.append((rel, out_rel, "BurnedInAnnotation", "(0028,0301)", "warning",
                         "burned-in annotation: pixels not cleaned"))
        rows.extend((rel, out_rel, *change) for change in changes)
        if progress is not None:
            progress(i + 1, len(files))
    audit = Path(audit_csv) if audit_csv is not None else default_audit_path(dst)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(AUDIT_COLUMNS)
    writer.writerows(rows)
    write_text(audit, buf.getvalue())
    return DeidResult(tuple(written), tuple(skipped), tuple(burned), audit, ignored)


def _save(ds: Dataset, target: Path) -> None:
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        meta = FileMetaDataset(getattr(ds, "file_meta", None) or FileMetaDataset())
        implicit = ds.original_encoding[0] is not False
        meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta = meta
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


__all__ = ["AUDIT_COLUMNS", "DeidKey", "DeidResult", "basic_profile", "default_audit_path", "deidentify_dataset",
           "deidentify_folder"]
