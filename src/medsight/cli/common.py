"""Parsers of option values shared by several commands: durations, folds, label lists, lesion options."""

from __future__ import annotations

import argparse
import re

from medsight.errors import MedsightError, user_error


def parse_duration(text: str) -> float:
    """``"20m"``, ``"1h30m"``, ``"90s"``, ``"45"`` (minutes) -> seconds."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t) * 60
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
    if not parts or "".join(a + b for a, b in parts) != t.replace(" ", ""):
        raise MedsightError(f"Expected a duration like 20m, 1h30m or 90s, got {text!r}; fix --time-budget")
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)


def parse_folds(text: str) -> list[int] | str:
    """``--fold``: ``0``, ``0,1``, ``cv`` (all five) or ``all`` (train on every case)."""
    if text == "all":
        return "all"
    if text in ("cv", "0-4"):
        return [0, 1, 2, 3, 4]
    try:
        return [int(x) for x in text.split(",")]
    except ValueError as exc:
        raise MedsightError(f"Expected --fold as 0..4, a list like 0,1, 'cv' or 'all', got {text!r}; fix --fold") from exc


def parse_labels(text: str | None, *, background: bool = False) -> dict[str, int] | None:
    """``"liver=1,tumour=2"`` -> ``{"liver": 1, "tumour": 2}`` sorted by value; ``None`` stays ``None``.

    ``background``: add ``background=0`` when no name has value 0 (``dataset init`` writes every label).

    Raises:
        MedsightError: for entries that are not ``name=integer``, or a name or value given twice.
    """
    if text is None:
        return None
    example = "background=0,tumour=1" if background else "liver=1,tumour=2"
    out: dict[str, int] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value.lstrip("-").isdigit():
            raise user_error("--labels as name=value pairs", repr(item), None, f"write e.g. --labels {example}")
        if name in out or int(value) in out.values():
            raise user_error("each label name and value once in --labels", repr(text), None, "remove the repeated entry")
        out[name] = int(value)
    if not out:
        raise user_error("at least one label in --labels", repr(text), None, f"write e.g. --labels {example}")
    if background and 0 not in out.values():
        out = {"background": 0, **out}
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def add_lesion_options(p: argparse.ArgumentParser) -> None:
    """``--lesion-label``, ``--threshold``, ``--min-volume`` (``detect`` and ``evaluate --lesions``)."""
    p.add_argument("--lesion-label", type=int, metavar="V", help="label value of the lesions (default: any non-zero)")
    p.add_argument("--threshold", type=float, metavar="P",
                   help="detect components of probability >= P (needs probabilities) instead of the label map")
    p.add_argument("--min-volume", type=float, default=0.0, metavar="MM3",
                   help="drop lesions smaller than this (mm³; mm² for 2D; default 0)")
