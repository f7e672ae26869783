"""DICOM de-identification of one data set: PS3.15 Annex E (E.1.1), denying by default.

:func:`deidentify_dataset` walks every attribute at every sequence depth and applies the rule
:func:`medsight.io.deid_profile.rule_for` gives it: what the keep lists (``resources/deid/medsight_keep_lists.tsv``)
and the enabled options retain is kept, Table E.1-1 decides the attributes it lists, and everything else is removed
(dates, times, free text, unknown public and private attributes, curves, overlays) or replaced (UIDs). Kept values
are checked once more: a value that is not valid for its VR, or a kept text that holds an identifying value of the
same file (a name, the patient ID...), is removed. The file meta is rebuilt from scratch, and the 128-byte preamble is
zeroed. Pixel data is kept byte for byte: burned-in text is not cleaned (see :mod:`medsight.io.deid_folder`, which
quarantines files with that risk).

UIDs and the patient pseudonym are keyed hashes (:class:`DeidKey`): the same key maps the same UID to the same new UID
in every file and every run, so series, studies and references still link. With the date shift option every date of a
patient moves back by the same number of days (365-3650, from the key and the patient ID) and times are kept.
PatientIdentityRemoved = YES, De-identification Method and its Code Sequence (DCM 113100 and one code per option) and
Longitudinal Temporal Information Modified are added.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.valuerep import validate_value

from medsight import __version__
from medsight.core.atomic import atomic_path
from medsight.errors import user_error
from medsight.io.deid_profile import (
    TEXT_VRS,
    VALUE_ERRORS,
    DeidOptions,
    Identifiers,
    Rule,
    holds_identifier,
    identifying_tokens,
    is_clean_descriptor,
    is_registered_uid,
    rule_for,
)

KEY_FORMAT = "medsight-deid-key"
#: kept values of these VRs must be valid for the VR (a name planted in a CS or a TM is removed).
VALIDATED_VRS = frozenset({"AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_DT_REST = re.compile(r"^(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?$")
ZERO_PREAMBLE = b"\x00" * 128


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


# ------------------------------------------------------------------------------------------------ values
def _dummy(vr: str) -> object:
    """A non-empty dummy value consistent with ``vr`` (never derived from the old value)."""
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
    if vr in BINARY_VRS:
        return b"\x00\x00"
    if vr == "PN":
        return "ANONYMOUS"
    if vr == "UR":
        return "http://anonymized.invalid"
    if vr == "UI":
        return "2.25.0"
    return "ANONYMIZED"


def _values(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def _map_uids(value: object, key: DeidKey) -> object:
    """Each UID replaced by its keyed UID, except registered DICOM UIDs (public: SOP classes, coding schemes)."""
    new = [v if is_registered_uid(str(v)) else key.uid(str(v)) for v in _values(value)]
    return new[0] if len(new) == 1 else new


def _shift_one(text: str, vr: str, days: int) -> str | None:
    text = text.strip()
    if not text:
        return text
    rest = text[8:]
    if (vr == "DA" and rest) or (vr == "DT" and not _DT_REST.match(rest)):
        return None
    try:
        day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d") + rest


def _shift(value: object, vr: str, days: int) -> object | None:
    """Dates moved by ``days`` (a DT keeps its time and offset); ``None`` when a value is not a valid date."""
    out = [_shift_one(str(v), vr, days) for v in _values(value)]
    if any(v is None for v in out):
        return None
    return out[0] if len(out) == 1 else out


def _kept_value_problem(elem: DataElement, ids: Identifiers) -> str | None:
    """Why a value the rules keep must go after all: not valid for its VR, or it holds an identifying value."""
    values = _values(elem.value)
    if elem.VR in VALIDATED_VRS:
        for v in values:
            try:
                validate_value(elem.VR, str(v).strip(), pydicom_config.RAISE)
            except ValueError:
                return "kept value not valid for its VR"
    if elem.VR in TEXT_VRS and any(holds_identifier(str(v), ids) for v in values):
        return "kept value holds an identifying value of the file"
    return None


# ------------------------------------------------------------------------------------------------ dataset
@dataclass
class _Context:
    key: DeidKey
    options: DeidOptions
    shift_days: int | None
    ids: Identifiers
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)  # element, tag, action, rule

    def note(self, path: str, tag: BaseTag, action: str, rule: str) -> None:
        self.changes.append((path, f"({tag.group:04X},{tag.element:04X})", action, rule))


def _clean(ds: Dataset, ctx: _Context, prefix: str = "") -> None:
    """Apply the rules to every attribute of ``ds`` in place (recursing into kept sequences), noting each change."""
    for tag in list(ds.keys()):
        label = f"({tag.group:04X},{tag.element:04X})"
        try:
            elem = ds[tag]
            name = f"{prefix}{elem.keyword or label}"
            rule = rule_for(int(tag), elem.VR, ctx.options)
            _ = elem.value  # converting the raw value may fail: such a value is removed
        except VALUE_ERRORS:
            del ds[tag]
            ctx.note(f"{prefix}{label}", tag, "removed", "unreadable value")
            continue
        _apply(ds, elem, rule, ctx, name)


def _apply(ds: Dataset, elem: DataElement, rule: Rule, ctx: _Context, name: str) -> None:
    action, tag = rule.action, elem.tag
    if action == "remove":
        del ds[tag]
        ctx.note(name, tag, "removed", rule.reason)
    elif action == "recurse":
        for i, item in enumerate(elem.value or ()):
            _clean(item, ctx, f"{name}[{i}].")
    elif elem.is_empty:
        return  # an empty value carries nothing
    elif action == "empty":
        elem.value = DicomSequence([]) if elem.VR == "SQ" else (b"" if elem.VR in BINARY_VRS else "")
        ctx.note(name, tag, "emptied", rule.reason)
    elif action == "keep":
        problem = _kept_value_problem(elem, ctx.ids)
        if problem:
            del ds[tag]
            ctx.note(name, tag, "removed", problem)
    elif action == "clean":
        values = _values(elem.value)
        if elem.VR in TEXT_VRS and all(is_clean_descriptor(str(v), ctx.ids) for v in values):
            ctx.note(name, tag, "kept", "clean descriptor")
        elif rule.fallback is not None:
            _apply(ds, elem, rule.fallback, ctx, name)
    elif action == "dummy":
        elem.value = _dummy(elem.VR)
        ctx.note(name, tag, "replaced", rule.reason)
    elif action == "pseudonym":
        elem.value = ctx.key.pseudonym(str(elem.value))
        ctx.note(name, tag, "replaced", rule.reason)
    elif action == "uid":
        new = _map_uids(elem.value, ctx.key) if elem.VR == "UI" else _dummy(elem.VR)
        if new != elem.value:
            elem.value = new
            ctx.note(name, tag, "uid replaced", rule.reason)
    elif action == "shift":
        assert ctx.shift_days is not None
        shifted = _shift(elem.value, elem.VR, ctx.shift_days)
        elem.value = shifted if shifted is not None else ""
        ctx.note(name, tag, "date shifted" if shifted is not None else "emptied",
                 rule.reason if shifted is not None else "not a valid date")
    else:  # pragma: no cover - rule_for returns only the actions above
        raise AssertionError(action)


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _new_file_meta(ds: Dataset, ctx: _Context) -> None:
    """Replace the file meta by a fresh one: only what a reader needs (no AE titles, no private meta)."""
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    syntax = old.get("TransferSyntaxUID")
    if not syntax:
        implicit = ds.original_encoding[0] is not False
        syntax = pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID  # the writer is now pydicom
    meta.ImplementationVersionName = f"MEDSIGHT_{__version__}"[:16]
    for elem in old:
        if elem.tag not in meta and elem.tag.element != 0:
            ctx.note(f"file_meta.{elem.keyword or elem.tag}", elem.tag, "removed", "file meta rebuilt")
    ds.file_meta = meta


def deidentify_dataset(ds: Dataset, key: DeidKey, options: DeidOptions | None = None) -> list[tuple[str, str, str, str]]:
    """De-identify ``ds`` in place (preamble and file meta included); returns ``[(element, tag, action, rule)]``.

    Args:
        ds: a data set as read by pydicom.
        key: the secret for UIDs, the pseudonym and the date shift.
        options: the PS3.15 options (default: Basic Profile only).
    """
    options = options or DeidOptions()
    patient = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")
    ctx = _Context(key, options, key.date_shift_days(patient) if options.shift_dates else None,
                   identifying_tokens(ds, options))
    _clean(ds, ctx)
    ds.PatientIdentityRemoved = "YES"
    codes = options.codes()
    ds.DeidentificationMethod = [f"medsight {__version__}"[:64], "DICOM PS3.15 E.1.1, deny by default"] + [
        meaning[:64] for _, meaning in codes[1:]]
    ds.DeidentificationMethodCodeSequence = DicomSequence([_code_item(v, m) for v, m in codes])
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if options.shift_dates else "REMOVED"
    for tag in (0x00120062, 0x00120063, 0x00120064, 0x00280303):
        ctx.note(ds[tag].keyword, ds[tag].tag, "added", "de-identification record")
    preamble = getattr(ds, "preamble", None)
    if preamble and preamble != ZERO_PREAMBLE:
        ctx.changes.append(("preamble", "", "zeroed", "128-byte preamble"))
    ds.preamble = ZERO_PREAMBLE
    _new_file_meta(ds, ctx)
    return ctx.changes


__all__ = ["DeidKey", "DeidOptions", "deidentify_dataset"]
