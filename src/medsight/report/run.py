"""The run report (``RUN/report.html``): run summary, plan and training first, then the sections a task brings
(validation metrics, overlays, heat maps)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_text
from medsight.engine.curves import VAL_SCORES, plot_curves, read_metrics_csv
from medsight.engine.run import fold_paths
from medsight.errors import InputNotFoundError, MedsightError
from medsight.report.html import (
    compact,
    esc,
    flatten,
    fmt,
    fmt_seconds,
    img,
    kv_table,
    na,
    page,
    read_json,
    table,
)

log = logging.getLogger(__name__)


CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds")


# ---------------------------------------------------------------------------------------------- sections
def _plan_section(run_dir: Path) -> str:
    plans, why = read_json(run_dir / "plans.json")
    if plans is None:
        return na(why)
    parts = ["<h3>Fields</h3>", kv_table(plans, scalars_only=True)]
    config = plans.get("configuration")
    if isinstance(config, dict):
        parts += ["<h3>Configuration</h3>", kv_table(config)]
    configs = plans.get("configurations")
    if isinstance(configs, dict):
        for name, cfg in configs.items():
            if isinstance(cfg, dict):
                parts += [f"<h3>Configuration {esc(name)}</h3>", kv_table(cfg)]
    fp = plans.get("fingerprint")
    if isinstance(fp, dict):
        parts += ["<h3>Dataset fingerprint</h3>", table(("field", "summary"), [(k, _summarize_value(v)) for k, v in fp.items()])]
    return "".join(parts)


def _summarize_value(value: Any) -> str:
    """A short description of a fingerprint entry (lists of numbers as range and median)."""
    if isinstance(value, dict):
        keys = list(value)
        scalars = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        if scalars and len(scalars) == len(keys) and len(keys) <= 8:
            return compact(scalars)
        return f"{len(keys)} entries: {', '.join(map(str, keys[:8]))}{' …' if len(keys) > 8 else ''}"
    if isinstance(value, list) and value:
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return compact(value)
        if arr.ndim == 1:
            return (f"n={arr.size}, min {fmt(np.nanmin(arr))}, median {fmt(np.nanmedian(arr))}, "
                    f"max {fmt(np.nanmax(arr))}")
        if arr.ndim == 2:
            med = ", ".join(fmt(v) for v in np.nanmedian(arr, axis=0))
            return f"n={arr.shape[0]}, median per axis [{med}]"
    return compact(value)


def _fold_csvs(run_dir: Path) -> list[Path]:
    def key(p: Path) -> tuple[int, str]:
        m = re.search(r"(\d+)$", p.parent.name)
        return (int(m.group(1)) if m else 10**6, p.parent.name)

    return sorted((p for p in fold_paths(run_dir, "metrics.csv") if p.is_file()), key=key)


def _training_section(run_dir: Path) -> str:
    csvs = _fold_csvs(run_dir)
    if not csvs:
        return na("not available (no fold_*/metrics.csv)")
    rows: list[tuple[Any, ...]] = []
    score = "val_dice"
    for p in csvs:
        try:
            d = read_metrics_csv(p)
            score = next((c for c in VAL_SCORES if c in d), score)
        except MedsightError as exc:
            rows.append((p.parent.name, str(exc), None, None, None, None, None))
            continue
        n = max((len(v) for v in d.values()), default=0)
        dice = d.get(score, np.full(n, np.nan))
        epoch = d.get("epoch", np.arange(n, dtype=float))
        best = int(np.nanargmax(dice)) if np.isfinite(dice).any() else None

        def last(col: str, data: dict[str, np.ndarray] = d) -> float | None:
            v = data.get(col)
            v = v[np.isfinite(v)] if v is not None else np.empty(0)
            return float(v[-1]) if v.size else None

        seconds = d.get("seconds")
        # the column is the cumulative wall time at the end of each epoch: the fold's time is its last value
        total = float(np.nanmax(seconds)) if seconds is not None and np.isfinite(seconds).any() else None
        rows.append((p.parent.name, n, float(dice[best]) if best is not None else None,
                     int(epoch[best]) if best is not None and np.isfinite(epoch[best]) else None,
                     last("train_loss"), last("val_loss"), fmt_seconds(total)))
    html = table(("fold", "epochs", f"best val {VAL_SCORES[score]}", "at epoch", "last train loss", "last val loss", "time"),
                   rows, (False, True, True, True, True, True, True))
    try:
        curves = plot_curves(csvs, run_dir / "curves.png")
        figure = img(curves.read_bytes(), alt="training curves", cls="wide")
    except (MedsightError, OSError, ValueError) as exc:
        log.warning("could not plot the training curves: %s", exc)
        figure = na(f"curves not available ({exc})")
    return html + figure


# ---------------------------------------------------------------------------------------------- report
def write_report(run_dir: str | Path, sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``run_dir/report.html`` (atomically): run summary, plan and training, then ``sections``.

    Args:
        run_dir: the run folder (every file it reads is optional).
        sections: (title, HTML) pairs from the task (validation metrics, overlays, heat maps).

    Returns:
        The path of ``report.html``.

    Raises:
        InputNotFoundError: ``run_dir`` does not exist.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputNotFoundError(f"Expected an existing run folder, got {run_dir} which does not exist; check the path")
    run_summary, why = read_json(run_dir / "summary.json")
    parts = [("Run summary", kv_table(flatten(run_summary)) if run_summary is not None else na(why))]
    parts.append(("Plan", _plan_section(run_dir)))
    parts.append(("Training", _training_section(run_dir)))
    parts.extend(sections)
    out = write_text(run_dir / "report.html", page(f"medsight report — {run_dir.resolve().name}", parts,
                                                   note=f"Run folder <code>{esc(run_dir.resolve())}</code>"))
    log.info("report written to %s", out)
    return out
