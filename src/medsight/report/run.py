"""The run report (``RUN/report.html``): the answer first, the details after.

1. the headline (task, data, validation, main metric with its 95 % CI, per label / per fold table), which the task
   builds (:mod:`medsight.report.headline`);
2. the task's own sections (worst and best cases, heat maps), then the uncertainty section when the run has
   ``uncertainty.json``;
3. training curves against epochs and wall time, with the "train longer" verdict (:mod:`medsight.report.training`);
4. the plan in a sentence and a compact table, with what was decided on the validation folds and why;
5. the full tables (the task's, the run summary, every plan field), collapsed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsight.core.atomic import write_text
from medsight.errors import InputNotFoundError, MedsightError
from medsight.report.describe import plan_html
from medsight.report.headline import classification_headline, render_headline, segmentation_headline
from medsight.report.html import details, esc, flatten, fmt_seconds, img, kv_table, na, page, read_json, table
from medsight.report.plots import plot_training
from medsight.report.training import RULE, FoldTraining, fold_csvs, read_fold_training, still_improving
from medsight.report.uncertainty import uncertainty_section

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- training
def training_section(run_dir: Path) -> str:
    """Per fold: epochs, best score and its epoch, wall time (the last cumulative ``seconds``), time per epoch and
    the last losses; the curves against epochs and wall time; the "train longer" verdict per fold."""
    csvs = fold_csvs(run_dir)
    if not csvs:
        return na("not available (no fold_*/metrics.csv)")
    folds: list[FoldTraining] = []
    rows: list[tuple[Any, ...]] = []
    for p in csvs:
        try:
            f = read_fold_training(p)
        except MedsightError as exc:
            rows.append((p.parent.name, str(exc), None, None, None, None, None, None))
            continue
        folds.append(f)
        per_epoch = f.seconds_per_epoch
        rows.append((f.fold, f.epochs, f.best_score, f.best_epoch, fmt_seconds(f.total_seconds),
                     f"{per_epoch:.1f} s" if per_epoch is not None else None, f.last(f.train_loss), f.last(f.val_loss)))
    score = next((f.score_name for f in folds if f.score_column), "validation score")
    parts = [table(("fold", "epochs", f"best {score}", "at epoch", "wall time", "per epoch", "last train loss",
                    "last validation loss"), rows, (False, True, True, True, True, True, True, True))]
    timed = [f.total_seconds for f in folds if f.total_seconds is not None]
    if len(timed) > 1:
        parts.append(f'<p class="note">Folds together: {esc(fmt_seconds(sum(timed)))} of training (the sum of the '
                     "folds' times; folds trained side by side take less wall time).</p>")
    verdicts = [(f, still_improving(f.epoch, f.score)) for f in folds if f.score_column]
    advice = [t.sentence(f.fold) for f, t in verdicts if t.improving is not False]
    settled = [t.sentence(f.fold) for f, t in verdicts if t.improving is False]
    if advice:
        parts.append('<div class="advice" id="train-longer">' + "".join(f"<p>{esc(s)}</p>" for s in advice) + "</div>")
    parts += [f"<p>{esc(s)}</p>" for s in settled]
    if verdicts:
        parts.append(f'<p class="note">Rule: {esc(RULE)}.</p>')
    try:
        curves = plot_training(folds, run_dir / "curves.png")
        parts.append(img(curves.read_bytes(), alt="training curves against epochs and wall time", cls="wide"))
    except (MedsightError, OSError, ValueError) as exc:
        log.warning("could not plot the training curves: %s", exc)
        parts.append(na(f"curves not available ({exc})"))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- report
def full_tables(run_dir: Path) -> list[tuple[str, str]]:
    """(summary, HTML) of the run's own full tables: the run summary and every plan field, nothing cut."""
    out = []
    summary, why = read_json(run_dir / "summary.json")
    out.append(("Run summary (summary.json, every field)", kv_table(flatten(summary)) if summary is not None else na(why)))
    plans, why = read_json(run_dir / "plans.json")
    if plans is None:
        out.append(("Plan (plans.json)", na(f"plans.json {why}")))
    else:
        fields = {k: v for k, v in flatten(plans).items() if not k.startswith("fingerprint.full.")}
        out.append(("Plan (plans.json, every field but the per-case fingerprint lists)", kv_table(fields)))
    return out


def default_headline(run_dir: Path) -> str:
    """The headline a run's plan calls for: classification for classification plans, segmentation otherwise."""
    plans = read_json(run_dir / "plans.json")[0] or {}
    if plans.get("task") == "classification":
        return render_headline(classification_headline(run_dir))
    return render_headline(segmentation_headline(run_dir))


def write_report(run_dir: str | Path, sections: Sequence[tuple[str, str]] = (), *, headline: str | None = None,
                 full: Sequence[tuple[str, str]] = (), plan_rows: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``run_dir/report.html`` (atomically), answer first (see the module docstring for the order).

    Args:
        run_dir: the run folder (every file it reads is optional).
        sections: (title, HTML) pairs from the task, shown right after the headline (cases, heat maps).
        headline: HTML of the headline (:func:`~medsight.report.headline.render_headline`); default
            :func:`default_headline`.
        full: (summary, HTML) of the task's full tables, shown collapsed at the end.
        plan_rows: extra (setting, value) rows for the compact plan table.

    Returns:
        The path of ``report.html``.

    Raises:
        InputNotFoundError: ``run_dir`` does not exist.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputNotFoundError(f"Expected an existing run folder, got {run_dir} which does not exist; check the path")
    parts = list(sections)
    uncertainty = uncertainty_section(run_dir)
    if uncertainty is not None:
        parts.append(("Uncertainty: which predictions to check", uncertainty))
    parts.append(("Training", training_section(run_dir)))
    plans = read_json(run_dir / "plans.json")[0]
    summary = read_json(run_dir / "summary.json")[0]
    calibration = read_json(run_dir / "calibration.json")[0]
    plan = plan_html(plans, summary, calibration, extra_rows=plan_rows)
    parts.append(("Plan", plan or na("not available (no readable plans.json)")))
    tables = [*full, *full_tables(run_dir)]
    parts.append(("Full tables", "".join(details(name, body) for name, body in tables)))
    lead = default_headline(run_dir) if headline is None else headline
    out = write_text(run_dir / "report.html", page(f"medsight report — {run_dir.resolve().name}", parts, lead=lead,
                                                   note=f"Run folder <code>{esc(run_dir.resolve())}</code>"))
    log.info("report written to %s", out)
    return out


__all__ = ["default_headline", "full_tables", "training_section", "write_report"]
