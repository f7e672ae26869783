"""The headline of a run report: what the model does, on which data, how it was validated, the main metric with its
95 % CI, and the comparison a reader wants next (per label or class, per fold) in one compact table.

The numbers are the ones the run already computed, never recomputed here: the pooled validation summary
(``validation/summary.json``: mean, SD and bootstrap CI from :mod:`medsight.metrics.summary`, as in the model
card) for segmentation, ``validation/metrics.json`` (stratified bootstrap CIs) for classification, and the folds'
own ``fold_K/validation`` files for the per-fold rows.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.engine.run import fold_dir
from medsight.metrics.auc import roc_auc
from medsight.report.describe import data_phrase
from medsight.report.html import as_mapping, esc, fmt, read_json, table


@dataclass(frozen=True)
class Headline:
    """The facts of a headline; :func:`render_headline` turns them into HTML."""

    task: str
    data: str
    validation: str
    metric: str = ""
    value: float | None = None
    ci: tuple[float, float] | None = None
    n: int | None = None
    headers: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    notes: list[str] = field(default_factory=list)
    missing: str = "No validation metric yet: no fold with validation cases has finished."

    @property
    def interval(self) -> str:
        """``"95 % CI 0.79–0.83, 80 cases"``."""
        ci = f"95 % CI {fmt(self.ci[0])}–{fmt(self.ci[1])}" if self.ci else "no CI"
        return ci + (f", {self.n} cases" if self.n is not None else "")

    @property
    def answer(self) -> str:
        """``"mean Dice 0.812 (95 % CI 0.79–0.83, 80 cases)"``; a plain statement when there is no number."""
        if self.value is None or not math.isfinite(self.value):
            return self.missing
        return f"{self.metric} {fmt(self.value)} ({self.interval})"


def render_headline(h: Headline, *also: Headline) -> str:
    """The headline box (``id="headline"``): answer first, then task, data, validation and the comparison table;
    ``also``: further headlines of the same run (the classification half of a multi-task run), each answer and
    table below the first."""
    parts = []
    for i, x in enumerate((h, *also)):
        big = esc(x.answer)
        if x.value is not None and math.isfinite(x.value):
            big = f'{esc(x.metric)} <span class="big">{esc(fmt(x.value))}</span> ({esc(x.interval)})'
        lead = f"{esc(x.task)}: " if also else ""
        parts.append(f'<p class="answer">{lead}{big}</p>')
        if i == 0:
            parts.append(f"<p><b>Task:</b> {esc(' + '.join(y.task for y in (h, *also)))}. <b>Data:</b> {esc(h.data)}. "
                         f"<b>Validated by:</b> {esc(h.validation)}.</p>")
        if x.rows:
            parts.append(table(x.headers, x.rows, [False] + [True] * (len(x.headers) - 1)))
        parts += [f'<p class="note">{esc(n)}</p>' for n in x.notes]
    return f'<div class="headline" id="headline">{"".join(parts)}</div>'


def _ci(stats: Mapping[str, Any] | None) -> tuple[float, float] | None:
    if not isinstance(stats, Mapping):
        return None
    lo, hi = stats.get("ci_low"), stats.get("ci_high")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and math.isfinite(lo) and math.isfinite(hi):
        return float(lo), float(hi)
    return None


def _mean(stats: Any) -> float | None:
    if isinstance(stats, Mapping):
        stats = stats.get("mean")
    return float(stats) if isinstance(stats, (int, float)) and math.isfinite(stats) else None


def with_ci(stats: Mapping[str, Any] | None) -> str:
    """``"0.812 [0.79, 0.83]"`` from a :func:`~medsight.metrics.summary.describe` result."""
    mean = _mean(stats)
    if mean is None:
        return "–"
    ci = _ci(stats)
    return f"{fmt(mean)} [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else fmt(mean)


def validation_text(run_dir: Path, summary: Mapping[str, Any] | None) -> str:
    """How the model was validated, in words (k-fold cross-validation, which folds, how many cases)."""
    summary = summary or {}
    done = [str(k) for k in summary.get("folds_with_validation") or []]
    k = summary.get("num_folds")
    splits_json = run_dir / "splits.json"
    sizes = []
    if splits_json.is_file():
        try:
            splits = json.loads(splits_json.read_text(encoding="utf-8"))
            sizes = [len(s.get("val", [])) for s in splits] if isinstance(splits, list) else []
            k = k or len(sizes) or None
        except (OSError, ValueError, AttributeError, TypeError):
            sizes = []
    if not done:
        return (f"{k}-fold cross-validation planned; no fold with validation cases has finished" if k
                else "not validated (no fold with validation cases)")
    of = f" of a {k}-fold cross-validation" if k else ""
    cases = [sizes[int(f)] for f in done if f.isdigit() and int(f) < len(sizes)]
    n = f" ({sum(cases)} validation cases)" if cases else ""
    which = "all folds" if k and len(done) == int(k) else f"fold{'s' if len(done) > 1 else ''} {', '.join(done)}"
    return f"out-of-fold predictions of {which}{of}, pooled{n}"


# ---------------------------------------------------------------------------------------------- segmentation
def segmentation_headline(run_dir: str | Path, *, task: str = "") -> Headline:
    """The headline of a segmentation run (and the segmentation half of a multi-task run)."""
    run = Path(run_dir)
    plans = read_json(run / "plans.json")[0] or {}
    summary = read_json(run / "summary.json")[0] or {}
    pooled = read_json(run / "validation" / "summary.json")[0] or {}
    dims = f"{plans['dims']}D " if plans.get("dims") else ""
    task = task or f"{dims}segmentation"
    labels = as_mapping(pooled.get("labels"))
    fg = as_mapping(pooled.get("foreground_mean"))
    main = fg.get("dice") if isinstance(fg.get("dice"), Mapping) else None
    metric = "mean Dice over foreground labels"
    if main is None and len(labels) == 1:
        only = next(iter(labels.values()))
        main, metric = (only.get("metrics") or {}).get("dice"), "Dice"
    has_hd = any("hd95" in (lab.get("metrics") or {}) for lab in labels.values() if isinstance(lab, Mapping))
    headers = ["label", "cases", "Dice [95 % CI]"] + ([f"HD95 ({_distance_unit(run)}) [95 % CI]"] if has_hd else [])
    rows: list[list[Any]] = []
    for name, lab in labels.items():
        ms = lab.get("metrics") or {} if isinstance(lab, Mapping) else {}
        rows.append([name, lab.get("n_cases"), with_ci(ms.get("dice"))] + ([with_ci(ms.get("hd95"))] if has_hd else []))
    folds = _segmentation_folds(run, summary)
    if len(folds) == 1:  # one fold: its row would repeat the pooled numbers
        folds = []
    if folds:
        rows += [[f"fold {k}", n, fmt(d) if d is not None else "–"] + (["–"] if has_hd else []) for k, n, d in folds]
    notes = []
    if folds:
        notes.append("Fold rows: mean foreground Dice of that fold's own validation cases (before the postprocessing "
                     "decided on the pooled folds).")
    return Headline(task=task, data=data_phrase(plans) if plans else "unknown (no plans.json)",
                    validation=validation_text(run, summary), metric=metric, value=_mean(main), ci=_ci(main),
                    n=pooled.get("n_cases"), headers=headers, rows=rows, notes=notes)


def _distance_unit(run: Path) -> str:
    """The distance unit of the pooled per-case table (``mm``; ``px`` for images without a spacing)."""
    path = run / "validation" / "per_case.csv"
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as fh:
            row = next(csv.DictReader(fh), None)
        if row and row.get("distance_unit"):
            return str(row["distance_unit"])
    return "mm"


def _segmentation_folds(run: Path, summary: Mapping[str, Any]) -> list[tuple[str, int | None, float | None]]:
    out = []
    for k in summary.get("folds_with_validation") or []:
        s = read_json(fold_dir(run, k) / "validation" / "summary.json")[0]
        if s is None:
            continue
        fg = (s.get("foreground_mean") or {}).get("dice")
        if fg is None and len(s.get("labels") or {}) == 1:
            fg = (next(iter(s["labels"].values())).get("metrics") or {}).get("dice")
        out.append((str(k), s.get("n_cases"), _mean(fg)))
    return out


# ---------------------------------------------------------------------------------------------- classification
def _macro(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("macro")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _fold_auc(path: Path, classes: Sequence[str]) -> tuple[int, float | None]:
    """(cases, AUC) of one fold's validation predictions.csv: binary on the positive (last) class, else the mean
    one-vs-rest AUC over classes."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not classes or not all(f"prob_{c}" in rows[0] for c in classes) or "label" not in rows[0]:
        return len(rows), None
    probs = np.asarray([[float(r[f"prob_{c}"]) for c in classes] for r in rows])
    truth = [r["label"] for r in rows]
    scored = classes[-1:] if len(classes) == 2 else classes
    aucs = [roc_auc(probs[:, list(classes).index(c)], np.asarray([t == c for t in truth])) for c in scored]
    aucs = [a for a in aucs if math.isfinite(a)]
    return len(rows), (float(np.mean(aucs)) if aucs else None)


def classification_headline(run_dir: str | Path, *, metrics_file: str = "validation/metrics.json",
                            task: str = "") -> Headline:
    """The headline of a classification run (and the classification half of a multi-task run)."""
    run = Path(run_dir)
    plans = read_json(run / "plans.json")[0] or {}
    summary = read_json(run / "summary.json")[0] or {}
    m = read_json(run / metrics_file)[0] or {}
    dims = f"{plans['dims']}D " if plans.get("dims") else ""
    task = task or f"{dims}{'multi-label ' if plans.get('multilabel') else ''}classification"
    ci95 = as_mapping(m.get("ci95"))
    auc_ci = ci95.get("auc")
    ci = (float(auc_ci[0]), float(auc_ci[1])) if isinstance(auc_ci, list) and None not in auc_ci and len(auc_ci) == 2 else None
    headers = ["class / fold", "cases", "AUC", "sensitivity", "specificity"]
    rows: list[list[Any]] = []
    per_class = as_mapping(m.get("n_per_class"))
    counts = ", ".join(f"{k} {v}" for k, v in per_class.items())
    if m.get("task") == "binary" or not any(isinstance(m.get(k), Mapping) for k in ("auc", "sensitivity")):
        positive = f"; positive class {list(per_class)[-1]}" if len(per_class) == 2 else ""
        if m:
            rows.append([f"all ({counts}{positive})" if counts else "all", m.get("n"), _macro(m.get("auc")),
                         _macro(m.get("sensitivity")), _macro(m.get("specificity"))])
    else:
        for name, n in per_class.items():
            rows.append([name, n, *[m[key].get(name) if isinstance(m.get(key), Mapping) else None
                                    for key in ("auc", "sensitivity", "specificity")]])
        rows.append(["macro mean", m.get("n"), _macro(m.get("auc")), _macro(m.get("sensitivity")),
                     _macro(m.get("specificity"))])
    classes = [str(c) for c in plans.get("class_names") or m.get("class_names") or []]
    folds = summary.get("folds_with_validation") or []
    for k in folds if len(folds) > 1 else []:  # one fold: its row would repeat the pooled numbers
        preds = fold_dir(run, k) / "validation" / "predictions.csv"
        if preds.is_file():
            n, auc = _fold_auc(preds, classes)
            auc = None if plans.get("multilabel") else auc  # the label column holds several classes
            rows.append([f"fold {k}", n, auc, None, None])
    notes = []
    if m.get("thresholds") is not None:
        notes.append(f"Sensitivity and specificity at the decision threshold(s) {fmt(m.get('thresholds'))} chosen on "
                     "the validation cases; CI: stratified percentile bootstrap over cases.")
    missing = Headline.missing
    if m and _macro(m.get("auc")) is None:
        missing = f"AUC not defined on the {m.get('n')} validation case(s): a class is missing among them."
    return Headline(task=task, data=data_phrase(plans) if plans else "unknown (no plans.json)", missing=missing,
                    validation=validation_text(run, summary), metric="AUC" if not isinstance(m.get("auc"), Mapping) else "macro AUC",
                    value=_macro(m.get("auc")), ci=ci, n=m.get("n"), headers=headers, rows=rows, notes=notes)


__all__ = ["Headline", "classification_headline", "render_headline", "segmentation_headline", "validation_text", "with_ci"]
