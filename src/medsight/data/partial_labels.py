"""Partial labels: which structures were *not annotated* in a case (unlabelled, not background).

Many clinical datasets contour only some organs per patient (OpenKBP: Esophagus in 45 of 120 cases). A structure
that was not contoured is absent from that case's label map, but its voxels are unknown, not background; a trainer
that treats them as background learns to suppress the organ. This module reads, per case, the label names that were
not annotated, from (all that exist, united):

* ``dataset.json`` key ``"absent_structures"``: ``{case_id: [label name or value, ...]}``;
* ``absent_structures.json`` beside ``dataset.json`` (written by ``medsight dataset import``):
  ``{"cases": {case_id: [label names]}}``;
* ``contoured_structures.json`` beside ``dataset.json`` (OpenKBP's, and ``medsight dataset import``'s):
  ``{"cases": {case_id: [label names that were contoured]}}``; every foreground label not listed is absent.
  Names there that are not labels of the dataset (e.g. target volumes) are ignored.

A case not mentioned anywhere is fully annotated. Unknown label names in an absent list are refused (a typo would
otherwise silently keep an organ as background); case ids that are not in the dataset are logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medsight.core.tables import read_json_object
from medsight.errors import user_error

log = logging.getLogger(__name__)

ABSENT_KEY = "absent_structures"
ABSENT_FILE = "absent_structures.json"
CONTOURED_FILE = "contoured_structures.json"


def _case_lists(raw: Any, where: Path, key: str) -> dict[str, list[Any]]:
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise user_error(f"'{key}' as an object of case id -> list of structures", repr(raw)[:60], where,
                         'write e.g. {"case_001": ["Esophagus"]}')
    return {str(k): list(v) for k, v in raw.items()}


def _names(items: Iterable[Any], labels: Mapping[str, int], where: Path, case_id: str) -> set[str]:
    """Label names from names or values; an unknown one is refused."""
    by_value = {v: k for k, v in labels.items()}
    out = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item in by_value:
            out.add(by_value[item])
        elif isinstance(item, str) and item in labels:
            out.add(item)
        elif isinstance(item, str) and item.isdigit() and int(item) in by_value:
            out.add(by_value[int(item)])
        else:
            raise user_error(f"absent structures among the labels {', '.join(k for k in labels if labels[k])}",
                             f"{item!r} for case {case_id}", where, "fix the name or add the label to 'labels'")
    out.discard(next((k for k, v in labels.items() if v == 0), "background"))
    return out


def read_absent_structures(spec_data: Mapping[str, Any], spec_path: Path, labels: Mapping[str, int],
                           case_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Per case, the foreground label names that were not annotated (only cases lacking some).

    Args:
        spec_data: the parsed ``dataset.json``.
        spec_path: its path (the two optional files are looked for beside it).
        labels: label name -> value of the dataset.
        case_ids: the dataset's cases.

    Returns:
        ``{case_id: (name, ...)}`` in label-value order; empty when every case is fully annotated.
    """
    ids = set(case_ids)
    foreground = [k for k, v in sorted(labels.items(), key=lambda kv: kv[1]) if v != 0]
    absent: dict[str, set[str]] = {}
    sources: list[tuple[Path, dict[str, list[Any]], bool]] = []  # (where, lists, lists are the contoured ones)
    if ABSENT_KEY in spec_data:
        sources.append((spec_path, _case_lists(spec_data[ABSENT_KEY], spec_path, ABSENT_KEY), False))
    for name, contoured in ((ABSENT_FILE, False), (CONTOURED_FILE, True)):
        path = spec_path.parent / name
        if path.is_file():
            sources.append((path, _case_lists(read_json_object(path, fix='write {"cases": {case: [structures]}}').get("cases"), path, "cases"), contoured))
    for where, lists, contoured in sources:
        unknown = sorted(set(lists) - ids)
        if unknown:
            log.info("%s names %d case(s) not in the dataset (ignored), first %s", where, len(unknown), unknown[0])
        for cid, items in lists.items():
            if cid not in ids:
                continue
            if contoured:
                present = {str(i) for i in items}
                missing = {k for k in foreground if k not in present}
            else:
                missing = _names(items, labels, where, cid)
            if missing:
                absent.setdefault(cid, set()).update(missing)
    return {cid: tuple(k for k in foreground if k in names) for cid, names in sorted(absent.items())}


__all__ = ["ABSENT_FILE", "ABSENT_KEY", "CONTOURED_FILE", "read_absent_structures"]
