"""The report's view of ``RUN/uncertainty.json``: how well the per-case uncertainty score finds the validation cases
that failed, and which cases it flags for review.

The file (written after cross-validation, from the validation folds) holds::

    {"measure": str, "goal": {"dice_below": float}, "threshold": float, "spearman": float,
     "auroc": float | null, "n_failed": int,
     "cases": [{"case": str, "fold": str, "score": float, "dice": float, "review": bool}]}

``score`` is higher for less certain cases; a case is flagged (``review``) when its score is above ``threshold``;
a case *failed* when its Dice is below ``goal.dice_below``; ``spearman`` is the rank correlation of score and Dice
(negative when the score works) and ``auroc`` how well the score separates failed from other cases.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsight.report.html import as_mapping, esc, figure, fmt, na, read_json, table
from medsight.report.plots import plot_uncertainty

log = logging.getLogger(__name__)

UNCERTAINTY_JSON = "uncertainty.json"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def read_uncertainty(run_dir: str | Path) -> tuple[dict[str, Any] | None, str]:
    """(the checked contents of ``RUN/uncertainty.json``, "") or (None, why): absent, unreadable, or not the schema
    (cases without a numeric score or Dice are dropped; a file without a threshold or a case list is refused)."""
    data, why = read_json(Path(run_dir) / UNCERTAINTY_JSON)
    if data is None:
        return None, why
    threshold = _number(data.get("threshold"))
    cases = data.get("cases")
    if threshold is None or not isinstance(cases, list):
        return None, f"not available ({UNCERTAINTY_JSON} has no numeric 'threshold' or no 'cases' list)"
    kept = []
    for c in cases:
        if isinstance(c, Mapping) and _number(c.get("score")) is not None and _number(c.get("dice")) is not None:
            kept.append({"case": str(c.get("case", "?")), "fold": str(c.get("fold", "")), "score": float(c["score"]),
                         "dice": float(c["dice"]), "review": bool(c.get("review", float(c["score"]) > threshold))})
    goal = as_mapping(data.get("goal"))
    return {"measure": str(data.get("measure", "uncertainty")), "goal": _number(goal.get("dice_below")),
            "goal_rule": str(goal["rule"]) if goal.get("rule") else "",
            "case_score": str(data["case_score"]) if data.get("case_score") else "",
            "threshold": threshold, "spearman": _number(data.get("spearman")), "auroc": _number(data.get("auroc")),
            "n_failed": data.get("n_failed"), "cases": kept}, ""


def by_case(data: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Case id -> its entry (score, dice, review, fold)."""
    return {c["case"]: c for c in (data or {}).get("cases", [])}


def summary_sentence(data: Mapping[str, Any]) -> str:
    """The uncertainty result in words."""
    cases = data["cases"]
    flagged = sum(c["review"] for c in cases)
    goal = data.get("goal")
    text = (f"Each validation case gets a score ({data['measure']}; higher means less certain). "
            f"{flagged} of {len(cases)} cases are above the threshold {fmt(data['threshold'])} and flagged for review")
    if goal is not None:
        failed = data.get("n_failed")
        text += (f"; the threshold was chosen to find the cases with Dice below {fmt(goal)}"
                 + (f" ({failed} such case{'s' if failed != 1 else ''})" if isinstance(failed, int) else ""))
    text += "."
    rho, auroc = data.get("spearman"), data.get("auroc")
    if rho is not None:
        text += f" Spearman correlation of score and Dice: {fmt(rho)} (negative: the less certain a case, the lower its Dice)."
    if auroc is not None:
        text += f" AUROC of the score for finding failed cases: {fmt(auroc)}."
    elif goal is not None:
        text += " AUROC not defined (no failed case, or only failed cases)."
    return text


def uncertainty_section(run_dir: str | Path) -> str | None:
    """HTML of the uncertainty section, or None when the run has no ``uncertainty.json``."""
    data, why = read_uncertainty(run_dir)
    if data is None:
        return None if why == "not available" else na(why)
    cases = data["cases"]
    flagged = [c for c in cases if c["review"]]
    goal = fmt(data["goal"]) + (f" ({data['goal_rule']})" if data.get("goal_rule") else "")
    rows = [("measure", data["measure"]), *([("case score", data["case_score"])] if data.get("case_score") else []),
            ("review threshold (score above)", data["threshold"]),
            ("Dice goal (failed below)", goal), ("Spearman (score vs Dice)", data["spearman"]),
            ("AUROC (failed cases)", data["auroc"]), ("failed cases", data.get("n_failed")),
            ("flagged for review", f"{len(flagged)} of {len(cases)}")]
    parts = [f"<p>{esc(summary_sentence(data))}</p>", table(("", "value"), rows)]
    if cases:
        try:
            png = plot_uncertainty([c["score"] for c in cases], [c["dice"] for c in cases], [c["review"] for c in cases],
                                   data["threshold"], data["goal"], measure=data["measure"])
            parts.append(figure(png, "Each dot a validation case; right of the dashed line: flagged for review.",
                                alt="uncertainty score against Dice"))
        except (ValueError, OSError) as exc:  # a plot must never cost the report
            log.warning("uncertainty plot not drawn: %s", exc)
    if flagged:
        worst = sorted(flagged, key=lambda c: -c["score"])
        parts.append(table(("flagged case", "fold", "score", "Dice"),
                           [(c["case"], c["fold"], c["score"], c["dice"]) for c in worst[:12]],
                           (False, False, True, True)))
        if len(worst) > 12:
            parts.append(f'<p class="note">{len(worst) - 12} more flagged cases in {UNCERTAINTY_JSON}.</p>')
    return "".join(parts)


__all__ = ["UNCERTAINTY_JSON", "by_case", "read_uncertainty", "summary_sentence", "uncertainty_section"]
