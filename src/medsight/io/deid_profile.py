"""What de-identification keeps, replaces and removes: PS3.15 Annex E, E.1.1 semantics, denying by default.

Two shipped tables decide (``resources/deid/``):

* ``ps3.15_table_e1-1_basic.tsv``: Table E.1-1 of DICOM 2026c, Basic Profile column (the action for each listed
  attribute: ``X`` remove, ``Z`` empty, ``D`` dummy, ``U`` new UID; compound codes resolved as in :data:`COMPOUND`);
* ``medsight_keep_lists.tsv``: what is **kept**: the ``base`` list (needed to use the image: pixels, geometry,
  acquisition physics, object type, coded values, SR structure) and one list per standard option (Retain Patient
  Characteristics, Retain Device Identity, Clean Descriptors), plus the ``replace`` list (free text a structure needs,
  such as an SR TEXT item's TextValue: replaced by a dummy).

:func:`rule_for` turns a tag, its VR and the :class:`DeidOptions` into a :class:`Rule`, in this order: private
attributes, curves, overlays, group lengths and unknown public attributes are removed; birth date and time follow the
table (never shifted); with ``shift_dates`` every other date is shifted and every time kept; an attribute an enabled
option retains is kept (Clean Descriptors: only when :func:`is_clean_descriptor`); a listed attribute gets its table
action; any other date or time is removed; a kept attribute is kept (a sequence: its items are cleaned by the same
rules, at every depth); a ``replace`` attribute gets a dummy; any other UID is replaced by the keyed UID (registered
DICOM UIDs such as SOP classes are public and kept); everything else is removed.

Kept text is also checked against the identifying values of its own file (:func:`identifying_tokens`): a kept value
that holds a name, the patient ID, the accession number, an address... is removed.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from pydicom.datadict import dictionary_has_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID

BASIC_RESOURCE = "deid/ps3.15_table_e1-1_basic.tsv"
KEEP_RESOURCE = "deid/medsight_keep_lists.tsv"
#: compound codes of Table E.1-1 -> the action medsight takes without IOD knowledge (a dummy keeps a Type 1
#: attribute valid; reference sequences keep their items with the UIDs inside replaced).
COMPOUND = {"Z/D": "D", "X/D": "D", "X/Z": "Z", "X/Z/D": "Z", "X/Z/U*": "U*"}
#: the lists of ``medsight_keep_lists.tsv`` and the option each belongs to (``None``: always applied).
LISTS = {"base": None, "replace": None, "patient": "patient_characteristics", "device": "device_identity",
         "descriptors": "clean_descriptors"}
#: dates that no option keeps or shifts: with Retain Patient Characteristics the age is kept instead.
NEVER_SHIFTED = frozenset({0x00100030, 0x00100032, 0x00100033, 0x00100034, 0x00100035})
DATE_TIME_VRS = frozenset({"DA", "DT", "TM"})
#: kept values of these VRs are checked against the identifying values of the file.
TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT", "UR"})
#: attributes whose values identify the patient or the place (with every PN value): the sources of
#: :func:`identifying_tokens`.
IDENTIFIER_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "MedicalRecordLocator", "PatientBirthDate", "AccessionNumber", "StudyID",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID", "AdmissionID", "ServiceEpisodeID",
    "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest", "MilitaryRank",
    "BranchOfService", "RegionOfResidence", "CountryOfResidence", "Occupation", "ResponsibleOrganization",
    "CurrentPatientLocation", "PatientInstitutionResidence", "PersonAddress", "PersonTelephoneNumbers",
)
#: burned-in annotation risk when BurnedInAnnotation is missing (PS3.15 E.1.1 / E.3.1 guidance).
RISKY_MODALITIES = frozenset({"US", "SC", "XC", "OT", "ES"})
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # SC Image Storage; its multi-frame variants are SECONDARY_CAPTURE.n
#: Clean Descriptors: at most this long, only these characters, no longer digit run (after removing separators).
DESCRIPTOR_MAX_LENGTH = 64
DESCRIPTOR_MAX_DIGITS = 5
#: what pydicom raises on a value it cannot convert (an odd byte length, a DS that is not a number...).
VALUE_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError, AttributeError, OverflowError,
                                             struct.error, BytesLengthException)
_DESCRIPTOR_CHARS = re.compile(r"^[\w .,:;+\-/()\[\]^*#%=&']*$")
_SEPARATORS = re.compile(r"[ .\-/:]")
_DIGIT_RUN = re.compile(r"\d+")
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class DeidOptions:
    """The PS3.15 Annex E options of a run (all off: the Basic Profile alone).

    Attributes:
        shift_dates: Retain Longitudinal Temporal Information with Modified Dates (DCM 113107): every date is moved
            by the keyed per-patient offset instead of being removed; times are kept only with this option.
        patient_characteristics: Retain Patient Characteristics (DCM 113108): sex, age, size, weight...
        device_identity: Retain Device Identity (DCM 113109): station name, serial numbers...
        clean_descriptors: Clean Descriptors (DCM 113105): study/series descriptions, protocol name... kept when
            :func:`is_clean_descriptor`, else handled as the table says.
        accept_burned_in: write files with a burned-in annotation risk to OUT (default: quarantined).
    """

    shift_dates: bool = False
    patient_characteristics: bool = False
    device_identity: bool = False
    clean_descriptors: bool = False
    accept_burned_in: bool = False

    def codes(self) -> list[tuple[str, str]]:
        """``(code value, code meaning)`` of DCM CID 7050 for the profile and the options used."""
        out = [("113100", "Basic Application Confidentiality Profile")]
        if self.clean_descriptors:
            out.append(("113105", "Clean Descriptors Option"))
        if self.shift_dates:
            out.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
        if self.patient_characteristics:
            out.append(("113108", "Retain Patient Characteristics Option"))
        if self.device_identity:
            out.append(("113109", "Retain Device Identity Option"))
        return out


@dataclass(frozen=True)
class Rule:
    """What happens to one attribute.

    Attributes:
        action: ``remove``, ``empty``, ``dummy``, ``pseudonym``, ``uid``, ``shift``, ``keep``, ``clean`` (keep when
            clean, else ``fallback``) or ``recurse`` (a kept sequence: clean its items).
        reason: the rule, as written in the audit.
        fallback: for ``clean``: the rule applied when the value is not clean.
    """

    action: str
    reason: str
    fallback: Rule | None = None


# ------------------------------------------------------------------------------------------------------- tables
@lru_cache(maxsize=1)
def basic_profile() -> dict[int, tuple[str, str]]:
    """Table E.1-1, Basic Profile column: ``{tag: (action code, attribute name)}`` (compound codes resolved)."""
    text = resources.files("medsight.resources").joinpath(BASIC_RESOURCE).read_text(encoding="utf-8")
    table: dict[int, tuple[str, str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            tag, code, name = line.split("\t")
            table[int(tag, 16)] = (COMPOUND.get(code, code), name)
    return table


@lru_cache(maxsize=1)
def keep_lists() -> dict[str, dict[int, tuple[str, str]]]:
    """``medsight_keep_lists.tsv``: ``{list name: {tag: (keyword, why)}}`` for every list of :data:`LISTS`."""
    text = resources.files("medsight.resources").joinpath(KEEP_RESOURCE).read_text(encoding="utf-8")
    out: dict[str, dict[int, tuple[str, str]]] = {name: {} for name in LISTS}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            keyword, name, why = line.split("\t")
            tag = tag_for_keyword(keyword)
            if tag is None or name not in out:
                raise ValueError(f"{KEEP_RESOURCE}: unknown keyword or list in {line!r}")
            out[name][tag] = (keyword, why)
    return out


def _retained(tag: int, options: DeidOptions) -> str | None:
    """The list name of the enabled option that retains ``tag``, if any."""
    lists = keep_lists()
    for name, flag in LISTS.items():
        if flag is not None and getattr(options, flag) and tag in lists[name]:
            return name
    return None


def _table_rule(code: str, vr: str, tag: int) -> Rule:
    reason = f"profile {code}"
    if code == "X":
        return Rule("remove", reason)
    if code == "Z":
        return Rule("empty", reason)
    if vr == "SQ":  # D (Content Sequence...), U*: keep the items, clean them
        return Rule("recurse", reason)
    if code in ("U", "U*") and vr in ("UI", "UN"):
        return Rule("uid", reason)
    if tag == 0x00100020:  # Patient ID: a keyed pseudonym, so that a patient's studies still group
        return Rule("pseudonym", "profile D (pseudonym)")
    return Rule("dummy", reason)


def _group_rule(tag: BaseTag) -> str | None:
    group = tag.group
    if tag.is_private:
        return "private attribute"
    if 0x5000 <= group <= 0x501E and group % 2 == 0:
        return "curve (50xx)"
    if 0x6000 <= group <= 0x601E and group % 2 == 0:
        return "overlay (60xx)"
    if tag.element == 0:
        return "group length"
    if group == 0x0002:
        return "file meta attribute inside the data set"
    return None


def rule_for(tag: int, vr: str, options: DeidOptions) -> Rule:
    """The :class:`Rule` for an attribute (see the module docstring for the order)."""
    base_tag = BaseTag(tag)
    by_group = _group_rule(base_tag)
    if by_group:
        return Rule("remove", by_group)
    table = basic_profile()
    code = table.get(tag, ("", ""))[0]
    if not code and not dictionary_has_tag(base_tag):
        return Rule("remove", "unknown public attribute")
    if options.shift_dates and tag not in NEVER_SHIFTED:
        if vr in ("DA", "DT"):
            return Rule("shift", "date shift option")
        if vr == "TM":
            return Rule("keep", "date shift option (times kept)")
    retained = _retained(tag, options)
    if retained == "descriptors":
        fallback = _table_rule(code, vr, tag) if code else Rule("remove", "not clean, not in the keep list")
        return Rule("clean", "clean descriptors option", fallback)
    if retained:
        return Rule("recurse" if vr == "SQ" else "keep", f"{retained} option")
    if code:
        return _table_rule(code, vr, tag)
    if vr in DATE_TIME_VRS:
        return Rule("remove", "date/time not kept (see the date shift option)")
    lists = keep_lists()
    if tag in lists["base"]:
        return Rule("recurse" if vr == "SQ" else "keep", "keep list")
    if tag in lists["replace"]:
        return Rule("dummy", "free text replaced")
    if vr == "UI":
        return Rule("uid", "UID not in the keep list")
    return Rule("remove", "not in the keep list")


def is_registered_uid(value: str) -> bool:
    """Whether ``value`` is a UID of the DICOM standard (SOP class, transfer syntax, coding scheme...): public."""
    return UID(value).name != str(value)


# --------------------------------------------------------------------------------------------- identifying text
@dataclass(frozen=True)
class Identifiers:
    """The identifying values of one file, for checking kept text.

    Attributes:
        words: lower-case words (3+ letters or digits) of names, IDs, addresses...
        wholes: the same values lower-cased with everything but letters and digits removed (4+ characters), found
            also inside longer words (``MRN99812377``).
    """

    words: frozenset[str]
    wholes: frozenset[str]


def _normalized(text: str) -> str:
    return "".join(_WORD.findall(text.lower()))


def identifying_tokens(ds: Dataset, options: DeidOptions | None = None) -> Identifiers:
    """The identifying values of ``ds`` (every person name and the :data:`IDENTIFIER_KEYWORDS`, at every depth),
    except those an enabled option retains (a kept station name does not remove itself from other values)."""
    options = options or DeidOptions()
    wanted = {tag_for_keyword(k) for k in IDENTIFIER_KEYWORDS}
    values: list[str] = []

    def visit(d: Dataset) -> None:
        for tag in list(d.keys()):
            try:
                elem = d[tag]
                value = elem.value
            except VALUE_ERRORS:  # unreadable: removed by the walk anyway
                continue
            if elem.VR == "SQ":
                for item in value or ():
                    visit(item)
            elif value not in (None, "") and (tag in wanted or elem.VR == "PN") and not _retained(int(tag), options):
                values.extend(str(v) for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value]))

    visit(ds)
    words = {w for v in values for w in _WORD.findall(v.lower()) if len(w) >= 3}
    wholes = {n for n in (_normalized(v) for v in values) if len(n) >= 4}
    return Identifiers(frozenset(words), frozenset(wholes))


def holds_identifier(text: str, ids: Identifiers) -> bool:
    """Whether ``text`` contains a word or a whole value of ``ids`` (case-insensitive)."""
    if set(_WORD.findall(text.lower())) & ids.words:
        return True
    flat = _normalized(text)
    return any(w in flat for w in ids.wholes)


def is_clean_descriptor(text: str, ids: Identifiers) -> bool:
    """Clean Descriptors: ``text`` is kept only when it is at most 64 characters of letters, digits, spaces and
    ``.,:;+-/()[]^*#%=&'``; has no run of more than 5 digits once spaces, dots, dashes, slashes and colons are taken
    out (dates, phone numbers, record numbers); holds no ``://``; and holds no identifying value of its file."""
    if len(text) > DESCRIPTOR_MAX_LENGTH or not _DESCRIPTOR_CHARS.match(text) or "://" in text:
        return False
    if any(len(run) > DESCRIPTOR_MAX_DIGITS for run in _DIGIT_RUN.findall(_SEPARATORS.sub("", text))):
        return False
    return not holds_identifier(text, ids)


# ----------------------------------------------------------------------------------------------- burned-in text
def burned_in_risk(ds: Dataset) -> str | None:
    """Why the pixels of ``ds`` may show identifying text, or ``None``: BurnedInAnnotation = YES (or any value but
    NO), or BurnedInAnnotation missing on modality US, SC, XC, OT or ES or on a Secondary Capture SOP class."""
    value = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if value == "NO":
        return None
    if value:
        return f"BurnedInAnnotation = {value}"
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in RISKY_MODALITIES:
        return f"BurnedInAnnotation missing on modality {modality}"
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class == SECONDARY_CAPTURE or sop_class.startswith(SECONDARY_CAPTURE + "."):
        return "BurnedInAnnotation missing on a Secondary Capture image"
    return None


__all__ = ["COMPOUND", "VALUE_ERRORS", "DeidOptions", "Identifiers", "Rule", "basic_profile", "burned_in_risk",
           "holds_identifier", "identifying_tokens", "is_clean_descriptor", "is_registered_uid", "keep_lists", "rule_for"]
