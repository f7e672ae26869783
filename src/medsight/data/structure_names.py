"""Structure names -> dataset labels: an editable synonym table, matched insensitively to case, spacing and side.

Hospital contours carry the names their planners typed: ``Parotid_L``, ``LeftParotid``, ``L Parotid``,
``Parotid Left`` and ``parotid_lt`` are one organ. :func:`structure_key` reduces a name to a key that ignores case,
spaces, underscores, hyphens, dots and brackets, splits ``CamelCase`` words, and writes a left/right prefix or
suffix (``L``, ``Lt``, ``Left``, ``R``, ``Rt``, ``Right``, also glued as in ``LeftParotid``/``parotidright``) as one
side marker: all five names above give ``parotid_l``. A name with the side elsewhere (``Parotid_L_PRV``) keeps it
inside the key and so does not match the organ: a planning risk volume is not the organ.

A :class:`StructureMapping` is the table of labels (name, value, synonyms). The built-in one
(:func:`builtin_mapping`) knows the head-and-neck organs at risk of OpenKBP (``Brainstem``, ``SpinalCord``,
``Parotid_R``, ``Parotid_L``, ``Esophagus``, ``Larynx``, ``Mandible``, in OpenKBP's label order, so an import of a
complete head-and-neck export numbers them as ``../shared/data/openkbp_hn_ct`` does) and a few common organs
(TG-263 names with the usual variants and TotalSegmentator's names). Users edit the table as a JSON (or YAML) file:

.. code-block:: json

    {"labels": {"Parotid_L": {"value": 4, "synonyms": ["LeftParotid", "Glnd_Parotid_L"]},
                "Brainstem": {"value": 1, "synonyms": ["Brain Stem"]}}}

or, shorter, ``{"labels": {"Brainstem": ["Brain Stem"], "Parotid_L": []}}`` (values 1, 2, ... in file order).
``medsight dataset import`` writes the table it used as ``OUT/label_mapping.json``, ready to edit and pass back
with ``--mapping``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.errors import require_exists, user_error

LEFT = frozenset({"l", "lt", "lft", "left"})
RIGHT = frozenset({"r", "rt", "rgt", "right"})
_SEPARATORS = re.compile(r"[\s_\-.,;:/\\()\[\]{}+]+")
_CAMEL = (re.compile(r"([a-z0-9])([A-Z])"), re.compile(r"([A-Z]+)([A-Z][a-z])"))
_RESERVED = frozenset({"background", "ignore"})  # label names nnU-Net gives a meaning of its own
_GLUED_MIN = 3  # "LeftParotid" -> "parotid"; "Cleft" stays "cleft" (too little left after the side word)

#: The built-in labels, in value order (1, 2, ...): name and synonyms (sides are matched by :func:`structure_key`,
#: the explicit side variants listed here show users the forms that match).
BUILTIN_STRUCTURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # head and neck organs at risk, in OpenKBP's order (../shared/data/openkbp_hn_ct/dataset.json)
    ("Brainstem", ("Brain Stem", "Brain_Stem", "BrainStem", "Truncus Encephali")),
    ("SpinalCord", ("Spinal Cord", "Spinal_Cord", "Cord", "Medulla Spinalis", "spinal_cord")),
    ("Parotid_R", ("RightParotid", "R Parotid", "Parotid Right", "Rt Parotid", "Parotid_Rt", "Parotid Gland R",
                   "Glnd_Parotid_R", "parotid_gland_right")),
    ("Parotid_L", ("LeftParotid", "L Parotid", "Parotid Left", "Lt Parotid", "Parotid_Lt", "Parotid Gland L",
                   "Glnd_Parotid_L", "parotid_gland_left")),
    ("Esophagus", ("Oesophagus", "Esoph", "Esophagus_Cervical", "esophagus")),
    ("Larynx", ("Larynx_Total", "larynx")),
    ("Mandible", ("Bone_Mandible", "Mandible_Bone", "Mandibula", "Jaw_Lower", "Lower Jaw")),
    # common organs (TG-263 names; TotalSegmentator writes the lower-case forms)
    ("Liver", ("Hepar", "liver")),
    ("Spleen", ("Lien", "spleen")),
    ("Kidney_L", ("LeftKidney", "L Kidney", "Kidney Left", "kidney_left")),
    ("Kidney_R", ("RightKidney", "R Kidney", "Kidney Right", "kidney_right")),
    ("Heart", ("Heart_Whole", "Cardiac", "heart")),
    ("Lung_L", ("LeftLung", "L Lung", "Lung Left", "lung_left")),
    ("Lung_R", ("RightLung", "R Lung", "Lung Right", "lung_right")),
    ("Bladder", ("Urinary Bladder", "urinary_bladder", "Bladder_Urinary", "Vesica Urinaria")),
    ("Prostate", ("Prostate Gland", "Prostata", "prostate")),
    ("Rectum", ("Rectum_Wall", "rectum")),
    ("Femur_L", ("LeftFemur", "L Femur", "Femur Left", "Bone_Femur_L", "femur_left")),
    ("Femur_R", ("RightFemur", "R Femur", "Femur Right", "Bone_Femur_R", "femur_right")),
)

MAPPING_NOTE = (
    "Structure name -> label table used by 'medsight dataset import'. Each label has its value in labelsTr and the "
    "structure names (ROI names, segment labels) that map to it; matching ignores case, spaces, underscores and "
    "hyphens, and reads L/Lt/Left and R/Rt/Right prefixes or suffixes as the side. Edit it (add synonyms, rename, "
    "add labels) and pass it back with --mapping. 'unmapped_names_seen' lists the names the last import left out "
    "(it is ignored when read)."
)


def structure_key(name: str) -> str:
    """The matching key of a structure name: lower case, words joined, a left/right marker as ``_l``/``_r``.

    ``"Parotid_L"``, ``"LeftParotid"``, ``"L Parotid"``, ``"Parotid Left"``, ``"parotid-lt"`` -> ``"parotid_l"``;
    ``"Spinal Cord"``, ``"SpinalCord"``, ``"spinal_cord"`` -> ``"spinalcord"``.
    """
    text = str(name).strip()
    for pattern in _CAMEL:
        text = pattern.sub(r"\1 \2", text)
    tokens = [t for t in _SEPARATORS.split(text.lower()) if t]
    side = ""
    if len(tokens) > 1 and tokens[0] in LEFT | RIGHT:
        side, tokens = ("l" if tokens[0] in LEFT else "r"), tokens[1:]
    elif len(tokens) > 1 and tokens[-1] in LEFT | RIGHT:
        side, tokens = ("l" if tokens[-1] in LEFT else "r"), tokens[:-1]
    elif tokens:
        for word, mark in (("left", "l"), ("right", "r")):
            if tokens[0].startswith(word) and len(tokens[0]) - len(word) >= _GLUED_MIN:
                side, tokens = mark, [tokens[0][len(word):], *tokens[1:]]
                break
            if tokens[-1].endswith(word) and len(tokens[-1]) - len(word) >= _GLUED_MIN:
                side, tokens = mark, [*tokens[:-1], tokens[-1][: -len(word)]]
                break
    core = "".join(tokens)
    return f"{core}_{side}" if side else core


def lateral_pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    """The (left, right) pairs among ``names``: labels that are one organ on both sides (``LeftParotid`` and
    ``RightParotid``, ``Kidney_L`` and ``Kidney_R``), matched by :func:`structure_key`."""
    by_key = {structure_key(n): n for n in names}
    return [(by_key[k], by_key[k[:-2] + "_r"]) for k in sorted(by_key) if k.endswith("_l") and k[:-2] + "_r" in by_key]


@dataclass(frozen=True)
class LabelEntry:
    """One label of a mapping: its name in ``dataset.json``, its value in the label maps, and its synonyms."""

    name: str
    value: int
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class StructureMapping:
    """Structure names -> labels (see the module docstring). Build with :func:`builtin_mapping`,
    :func:`load_mapping` or :meth:`from_entries`; the label values are unique and >= 1 (0 is background).

    Attributes:
        entries: the labels in value order.
        source: where the table came from (``"built-in"`` or the file), for messages and the report.
    """

    entries: tuple[LabelEntry, ...]
    source: str = "built-in"
    _index: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, str] = {}
        values: dict[int, str] = {}
        for entry in self.entries:
            if entry.value in values:
                raise user_error("one label per value", f"{values[entry.value]!r} and {entry.name!r} both = "
                                 f"{entry.value}", self.source, "give each label its own value")
            values[entry.value] = entry.name
            for synonym in (entry.name, *entry.synonyms):
                key = structure_key(synonym)
                other = index.get(key)
                if other is not None and other != entry.name:
                    raise user_error("each structure name under one label",
                                     f"{synonym!r} matching both {other!r} and {entry.name!r}", self.source,
                                     "remove the synonym from one of the two labels")
                index[key] = entry.name
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_entries(cls, entries: Iterable[LabelEntry], source: str = "built-in") -> StructureMapping:
        """A mapping of ``entries`` (sorted by value)."""
        return cls(tuple(sorted(entries, key=lambda e: e.value)), source)

    @property
    def labels(self) -> dict[str, int]:
        """Label name -> value, foreground only, in value order."""
        return {e.name: e.value for e in self.entries}

    def match(self, structure_name: str) -> str | None:
        """The label a structure name maps to, or ``None`` when it is not in the table."""
        return self._index.get(structure_key(structure_name))

    def restricted(self, names: Iterable[str], *, renumber: bool) -> StructureMapping:
        """The labels among ``names``, in table order; ``renumber``: values 1, 2, ... (else kept)."""
        wanted = set(names)
        kept = [e for e in self.entries if e.name in wanted]
        if renumber:
            kept = [LabelEntry(e.name, i, e.synonyms) for i, e in enumerate(kept, start=1)]
        return StructureMapping.from_entries(kept, self.source)

    def extended(self, names: Sequence[str]) -> StructureMapping:
        """This table plus a new label for each name not yet matched (values after the largest one), so that
        ``--keep-unmapped`` imports every structure. Names with the same key become one label; ``background`` and
        ``ignore`` (which nnU-Net reads as its own labels) are never added."""
        entries = list(self.entries)
        index = dict(self._index)
        top = max((e.value for e in entries), default=0)
        for name in names:
            key = structure_key(name)
            if key in index or not key or key in _RESERVED:
                continue
            top += 1
            entries.append(LabelEntry(str(name), top, ()))
            index[key] = str(name)
        return StructureMapping.from_entries(entries, self.source)

    def to_json(self, unmapped: Iterable[str] = ()) -> dict[str, Any]:
        """The table as written to ``label_mapping.json`` (readable back by :func:`load_mapping`)."""
        out: dict[str, Any] = {
            "note": MAPPING_NOTE,
            "labels": {e.name: {"value": e.value, "synonyms": list(e.synonyms)} for e in self.entries},
        }
        seen = sorted(set(unmapped))
        if seen:
            out["unmapped_names_seen"] = seen
        return out


def builtin_mapping() -> StructureMapping:
    """The built-in table (:data:`BUILTIN_STRUCTURES`), values 1, 2, ... in table order."""
    return StructureMapping.from_entries(
        LabelEntry(name, value, synonyms) for value, (name, synonyms) in enumerate(BUILTIN_STRUCTURES, start=1))


def _read_table(path: Path) -> Any:
    text_error = "a JSON (or .yaml/.yml) label mapping"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise user_error(f"a readable {text_error}", f"a read error ({exc})", path, "check the file") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise user_error("PyYAML to read a YAML mapping", "it is not installed", path,
                             "pip install pyyaml, or write the mapping as JSON") from exc
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise user_error(f"valid YAML in {text_error}", f"a parse error ({reason})", path,
                             "fix the YAML syntax") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise user_error(f"valid JSON in {text_error}", f"a parse error ({exc})", path, "fix the JSON syntax") from exc


def _entry(name: Any, raw: Any, default_value: int, path: Path) -> LabelEntry:
    example = '"Parotid_L": {"value": 4, "synonyms": ["LeftParotid"]}'
    if not isinstance(name, str) or not name.strip():
        raise user_error("label names as non-empty strings", repr(name), path, f"write e.g. {example}")
    if name.strip().lower() == "background":
        raise user_error("foreground labels only", "a label named 'background'", path,
                         "drop it: background is always 0")
    value: Any = default_value
    synonyms: Any = []
    if isinstance(raw, Mapping):
        unknown = sorted(set(raw) - {"value", "synonyms"})
        if unknown:
            raise user_error("label fields 'value' and 'synonyms'", f"{unknown} in {name!r}", path,
                             f"write e.g. {example}")
        value = raw.get("value", default_value)
        synonyms = raw.get("synonyms", [])
    elif isinstance(raw, list):
        synonyms = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif raw is not None:
        raise user_error("a label as {value, synonyms}, a list of synonyms or a value", f"{raw!r} for {name!r}",
                         path, f"write e.g. {example}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise user_error("label values as integers >= 1 (0 is background)", f"{value!r} for {name!r}", path,
                         "fix the value")
    if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
        raise user_error("synonyms as a list of strings", f"{synonyms!r} for {name!r}", path,
                         'write e.g. "synonyms": ["LeftParotid", "L Parotid"]')
    return LabelEntry(name.strip(), int(value), tuple(s for s in synonyms if s.strip()))


def load_mapping(path: str | Path) -> StructureMapping:
    """Read a label mapping file (JSON, or YAML with PyYAML installed); see the module docstring for the format.

    Raises:
        MedsightError: unreadable or malformed file, a value or synonym used twice (one line naming the file).
    """
    p = require_exists(path, "label mapping file")
    if p.is_dir():
        raise user_error("a label mapping file", "a folder", p, "pass the .json (or .yaml) file")
    data = _read_table(p)
    labels = data.get("labels") if isinstance(data, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        raise user_error("a mapping with a non-empty 'labels' object", f"{type(data).__name__}"
                         + (f" with keys {sorted(data)[:6]}" if isinstance(data, Mapping) else ""), p,
                         'write e.g. {"labels": {"Brainstem": {"value": 1, "synonyms": ["Brain Stem"]}}}')
    entries = [_entry(name, raw, i, p) for i, (name, raw) in enumerate(labels.items(), start=1)]
    return StructureMapping.from_entries(entries, str(p))


__all__ = ["BUILTIN_STRUCTURES", "LabelEntry", "StructureMapping", "builtin_mapping", "lateral_pairs",
           "load_mapping", "structure_key"]
