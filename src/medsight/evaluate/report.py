"""The HTML report of a run folder: plan, training curves, validation metrics and overlays in one file.

``write_report(run_dir)`` reads what the trainer and :func:`~medsight.evaluate.folders.evaluate_folders` leave
(every piece is optional; a missing one is reported as "not available"):

```
run_dir/plans.json                   plan: top-level fields, "configuration", "fingerprint"
run_dir/summary.json                 run summary: dataset, folds, postprocessing, timings
run_dir/fold_<k>/metrics.csv         epoch,train_loss,val_loss,val_dice,lr,seconds -> run_dir/curves.png
run_dir/validation/per_case.csv      per case and label metrics
run_dir/validation/summary.json      per label mean, SD, CI
run_dir/validation/overlays/*.png    overlays to show (else rendered from the predictions in validation/ or
                                     fold_<k>/validation/ when images are given)
```

and writes ``run_dir/report.html`` (atomically): self-contained, images embedded as base64 PNG, no JavaScript.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.dataset import file_stem, image_files
from medsight.errors import InputNotFoundError, MedsightError
from medsight.evaluate.folders import read_csv_rows, read_mask, read_per_case
from medsight.io.atomic import write_text, write_with

log = logging.getLogger(__name__)

CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds")
# the validation score plotted beside the losses: the first of these a metrics.csv has
VAL_SCORES = {"val_dice": "Dice", "val_auc": "AUC"}
_SHOWN_METRICS = ("dice", "iou", "hd95", "assd", "sensitivity", "precision", "specificity", "accuracy", "auc",
                  "ref_volume", "pred_volume")
_MAX_OVERLAYS = 24
_MIN_OVERLAY_SIZE = 256
_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD", "sensitivity": "sensitivity",
          "precision": "precision", "specificity": "specificity", "accuracy": "accuracy", "auc": "AUC",
          "ref_volume": "reference volume", "pred_volume": "predicted volume"}
_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #446;padding-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;color:#334}
h3{font-size:1.05em;color:#445}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccd;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#eef}tr:nth-child(even) td{background:#f8f8fc}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.na{color:#888;font-style:italic}.note{color:#555;font-size:.9em}
figure{display:inline-block;margin:.4em;text-align:center}figure img{max-width:340px;border:1px solid #ccd}
figcaption{font-size:.85em;color:#444}img.wide{max-width:100%}details{margin:.5em 0}
code{background:#f2f2f6;padding:0 .2em}
"""


# ---------------------------------------------------------------------------------------------- reading
def _read_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(object, "") or (None, reason)."""
    if not path.is_file():
        return None, "not available"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("could not read %s: %s", path, exc)
        return None, f"not available ({path.name} could not be read: {exc})"
    if not isinstance(data, dict):
        return None, f"not available ({path.name} holds no JSON object)"
    return data, ""


def _num(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_metrics_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a trainer ``metrics.csv`` as float arrays (NaN for blanks); columns absent are left out."""
    rows = read_csv_rows(path, what="metrics.csv", fix="check the training run")
    columns = {k.strip() for r in rows for k in r if k}
    return {c: np.asarray([_num(r.get(c)) for r in rows], dtype=float) for c in columns}


def case_index(folder: str | Path) -> dict[str, Path]:
    """Map case ids to the image files of a folder: the stem, and the stem without an nnU-Net ``_0000`` suffix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"Expected an existing folder, got {folder} which does not exist; check the path")
    out: dict[str, Path] = {}
    for f in image_files(folder):
        stem = file_stem(f)
        out.setdefault(stem, f)
        m = re.fullmatch(r"(.+)_(\d{4})", stem)
        if m and m.group(2) == "0000":
            out.setdefault(m.group(1), f)
    return out


def _lookup(index: Mapping[str, Path] | None, case_id: str) -> Path | None:
    if not index:
        return None
    if case_id in index:
        return Path(index[case_id])
    token = re.split(r"[_\-.]", case_id, maxsplit=1)[0]
    hits = [p for k, p in index.items() if re.split(r"[_\-.]", k, maxsplit=1)[0] == token]
    return Path(hits[0]) if len({str(h) for h in hits}) == 1 else None


# ---------------------------------------------------------------------------------------------- curves
def plot_curves(metrics_csv_paths: Sequence[str | Path], out_png: str | Path) -> Path:
    """Plot loss (train solid, validation dashed) and the validation score (Dice, or AUC for classification) against epoch, one colour per fold.

    Args:
        metrics_csv_paths: trainer ``metrics.csv`` files (columns ``epoch, train_loss, val_loss, val_dice,
            lr, seconds``; missing columns and blank cells are skipped). The legend names each by its folder.
        out_png: PNG written atomically.

    Returns:
        ``out_png``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), dpi=100)
    ax_loss, ax_dice = fig.subplots(1, 2)
    colours = [f"C{i}" for i in range(10)]
    plotted = 0
    tables = [(Path(p), read_metrics_csv(p)) for p in metrics_csv_paths]
    score = next((c for c in VAL_SCORES if any(c in d for _, d in tables)), "val_dice")
    for i, (p, data) in enumerate(tables):
        name = p.parent.name or p.stem
        n = max((len(v) for v in data.values()), default=0)
        epoch = data.get("epoch", np.arange(n, dtype=float))
        c = colours[i % len(colours)]
        for key, ax, style, tag in (("train_loss", ax_loss, "-", "train"), ("val_loss", ax_loss, "--", "val"),
                                    (score, ax_dice, "-", "")):
            y = data.get(key)
            if y is None:
                continue
            ok = np.isfinite(y) & np.isfinite(epoch)
            if ok.any():
                ax.plot(epoch[ok], y[ok], style, color=c, label=f"{name} {tag}".strip(), marker="." if ok.sum() < 30 else None)
                plotted += 1
    for ax, title, ylabel in ((ax_loss, "Loss", "loss"), (ax_dice, f"Validation {VAL_SCORES[score]}", VAL_SCORES[score])):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
    fig.tight_layout()
    log.debug("plotted %d curve(s) from %d file(s) to %s", plotted, len(metrics_csv_paths), out_png)
    return write_with(out_png, lambda tmp: fig.savefig(tmp, format="png"))


# ---------------------------------------------------------------------------------------------- HTML helpers
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        if abs(v) >= 1000 or (abs(v) >= 100 and v.is_integer()):
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.4g}"
    return str(value)


def _na(reason: str = "not available") -> str:
    return f'<p class="na">{_esc(reason)}</p>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(headers)
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="num">{_esc(_fmt(v))}</td>' if num else f"<td>{_esc(_fmt(v))}</td>" for v, num in zip(r, numeric)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _compact(value: Any, limit: int = 160) -> str:
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str, separators=(", ", ": "))
    else:
        text = _fmt(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kv_table(data: Mapping[str, Any], *, scalars_only: bool = False) -> str:
    rows = [(k, _compact(v)) for k, v in data.items()
            if not scalars_only or not isinstance(v, (dict, list, tuple))]
    return _table(("field", "value"), rows) if rows else _na("no fields")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted keys (``timings.fold_0``); lists stay values."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _img(png: bytes, *, alt: str, cls: str = "") -> str:
    b64 = base64.b64encode(png).decode("ascii")
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{_esc(alt)}" src="data:image/png;base64,{b64}">'


# ---------------------------------------------------------------------------------------------- sections
def _plan_section(run_dir: Path) -> str:
    plans, why = _read_json(run_dir / "plans.json")
    if plans is None:
        return _na(why)
    parts = ["<h3>Fields</h3>", _kv_table(plans, scalars_only=True)]
    config = plans.get("configuration")
    if isinstance(config, dict):
        parts += ["<h3>Configuration</h3>", _kv_table(config)]
    configs = plans.get("configurations")
    if isinstance(configs, dict):
        for name, cfg in configs.items():
            if isinstance(cfg, dict):
                parts += [f"<h3>Configuration {_esc(name)}</h3>", _kv_table(cfg)]
    fp = plans.get("fingerprint")
    if isinstance(fp, dict):
        parts += ["<h3>Dataset fingerprint</h3>", _table(("field", "summary"), [(k, _summarize_value(v)) for k, v in fp.items()])]
    return "".join(parts)


def _summarize_value(value: Any) -> str:
    """A short description of a fingerprint entry (lists of numbers as range and median)."""
    if isinstance(value, dict):
        keys = list(value)
        scalars = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        if scalars and len(scalars) == len(keys) and len(keys) <= 8:
            return _compact(scalars)
        return f"{len(keys)} entries: {', '.join(map(str, keys[:8]))}{' …' if len(keys) > 8 else ''}"
    if isinstance(value, list) and value:
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return _compact(value)
        if arr.ndim == 1:
            return (f"n={arr.size}, min {_fmt(np.nanmin(arr))}, median {_fmt(np.nanmedian(arr))}, "
                    f"max {_fmt(np.nanmax(arr))}")
        if arr.ndim == 2:
            med = ", ".join(_fmt(v) for v in np.nanmedian(arr, axis=0))
            return f"n={arr.shape[0]}, median per axis [{med}]"
    return _compact(value)


def _fold_csvs(run_dir: Path) -> list[Path]:
    def key(p: Path) -> tuple[int, str]:
        m = re.search(r"(\d+)$", p.parent.name)
        return (int(m.group(1)) if m else 10**6, p.parent.name)

    return sorted((p for p in run_dir.glob("fold_*/metrics.csv") if p.is_file()), key=key)


def _training_section(run_dir: Path) -> str:
    csvs = _fold_csvs(run_dir)
    if not csvs:
        return _na("not available (no fold_*/metrics.csv)")
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
        total = float(np.nansum(seconds)) if seconds is not None and np.isfinite(seconds).any() else None
        rows.append((p.parent.name, n, float(dice[best]) if best is not None else None,
                     int(epoch[best]) if best is not None and np.isfinite(epoch[best]) else None,
                     last("train_loss"), last("val_loss"), _fmt_seconds(total)))
    table = _table(("fold", "epochs", f"best val {VAL_SCORES[score]}", "at epoch", "last train loss", "last val loss", "time"),
                   rows, (False, True, True, True, True, True, True))
    try:
        curves = plot_curves(csvs, run_dir / "curves.png")
        img = _img(curves.read_bytes(), alt="training curves", cls="wide")
    except (MedsightError, OSError, ValueError) as exc:
        log.warning("could not plot the training curves: %s", exc)
        img = _na(f"curves not available ({exc})")
    return table + img


def _fmt_seconds(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def _stat_cell(stats: Mapping[str, Any] | None) -> str:
    if not stats or not math.isfinite(_num(stats.get("mean"))):
        return "–"
    text = f"{_fmt(stats['mean'])} ± {_fmt(stats.get('sd'))}"
    if stats.get("ci_low") is not None and stats.get("ci_high") is not None:
        text += f" [{_fmt(stats['ci_low'])}, {_fmt(stats['ci_high'])}]"
    if stats.get("n_nan"):
        text += f" (n={stats.get('n')}, {stats['n_nan']} NaN)"
    return text


def _validation_section(run_dir: Path) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:

    val = run_dir / "validation"
    summary, why = _read_json(val / "summary.json")
    rows: list[dict[str, Any]] = []
    if (val / "per_case.csv").is_file():
        try:
            rows = read_per_case(val / "per_case.csv")
        except MedsightError as exc:
            log.warning("%s", exc)
    if summary is None and not rows:
        return _na("not available (no validation/summary.json or per_case.csv)"), rows, None
    parts = []
    units = {}
    if rows:
        units = {"ref_volume": rows[0].get("volume_unit", ""), "pred_volume": rows[0].get("volume_unit", ""),
                 "hd95": rows[0].get("distance_unit", ""), "assd": rows[0].get("distance_unit", "")}
    if summary is not None and isinstance(summary.get("labels"), dict):
        metrics = [m for m in summary.get("metrics", _SHOWN_METRICS) if m in _SHOWN_METRICS]
        if not summary.get("roi_dir") and "auc" not in metrics:  # background-dominated without a field of view
            metrics = [m for m in metrics if m not in ("specificity", "accuracy")]
        headers = ["label", "cases", *[f"{_NAMES[m]} ({units[m]})" if units.get(m) else _NAMES[m] for m in metrics]]
        table_rows = []
        for name, info in summary["labels"].items():
            stats = info.get("metrics", {}) if isinstance(info, dict) else {}
            table_rows.append([name, info.get("n_cases") if isinstance(info, dict) else None,
                               *[_stat_cell(stats.get(m)) for m in metrics]])
        fg = summary.get("foreground_mean")
        if isinstance(fg, dict) and len(summary["labels"]) > 1:
            table_rows.append(["mean over labels", summary.get("n_cases"), *[_stat_cell(fg.get(m)) for m in metrics]])
        level = int(round(100 * float(summary.get("ci", 0.95))))
        parts.append(f'<p class="note">mean ± SD [{level} % bootstrap CI of the mean over cases, '
                     f'{_esc(summary.get("bootstrap", ""))} resamples]</p>')
        parts.append(_table(headers, table_rows, [False, True, *[True] * len(metrics)]))
        notes = []
        for name, info in summary["labels"].items():
            if not isinstance(info, dict):
                continue
            for key, text in (("empty_both", "both empty (scored Dice 1)"), ("empty_reference", "empty reference"),
                              ("empty_prediction", "empty prediction"), ("missing", "missing prediction")):
                if info.get(key):
                    notes.append(f"{name}: {info[key]} case(s) with {text}")
        notes += [str(w) for w in summary.get("warnings", []) or []]
        if notes:
            parts.append("<ul class=\"note\">" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    else:
        parts.append(_na(f"summary {why}"))
    if rows:
        metric_cols = [m for m in _SHOWN_METRICS if any(m in r and math.isfinite(r[m]) for r in rows)]
        per_case = _table(["case", "label", *[_NAMES[m] for m in metric_cols], "empty"],
                          [[r.get("case"), r.get("label"), *[r.get(m) for m in metric_cols], r.get("empty", "")] for r in rows],
                          [False, False, *[True] * len(metric_cols), False])
        parts.append(f"<details><summary>Per-case metrics ({len(rows)} rows)</summary>{per_case}</details>")
    return "".join(parts), rows, summary


def _case_dice(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    by_case: dict[str, list[float]] = {}
    for r in rows:
        by_case.setdefault(str(r.get("case")), []).append(_num(r.get("dice")))
    out = {}
    for case, values in by_case.items():
        v = np.asarray(values)
        v = v[np.isfinite(v)]
        out[case] = float(v.mean()) if v.size else math.nan
    return out


def _overlay_section(run_dir: Path, rows: list[dict[str, Any]], summary: dict[str, Any] | None,
                     images: Mapping[str, Path] | None, references: Mapping[str, Path] | None) -> str:
    folder = run_dir / "validation" / "overlays"
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if pngs:
        figs = [f"<figure>{_img(p.read_bytes(), alt=p.stem)}<figcaption>{_esc(p.stem)}</figcaption></figure>"
                for p in pngs[:_MAX_OVERLAYS]]
        more = f'<p class="note">{len(pngs) - _MAX_OVERLAYS} more in validation/overlays/</p>' if len(pngs) > _MAX_OVERLAYS else ""
        return "".join(figs) + more
    if not rows:
        return _na("not available (no overlays and no per-case metrics)")
    if not images:
        return _na("not available (no validation/overlays/; pass images=... to render best and worst cases)")
    missing = {str(r.get("case")) for r in rows if r.get("missing") is True}
    dice = {c: d for c, d in _case_dice(rows).items() if math.isfinite(d) and c not in missing}
    ranked = sorted(dice, key=lambda c: dice[c])
    worst, best = ranked[:3], ranked[::-1][:3]
    chosen = [("best", c) for c in best] + [("worst", c) for c in worst if c not in best]
    figs, skipped = [], []
    for kind, case in chosen:
        try:
            png = _render_case(run_dir, case, rows, summary, images, references)
        except (MedsightError, OSError) as exc:
            log.warning("overlay of %s not rendered: %s", case, exc)
            png = None
        if png is None:
            skipped.append(case)
            continue
        figs.append(f"<figure>{_img(png, alt=case)}<figcaption>{kind}: {_esc(case)} — Dice {_fmt(dice[case])}"
                    "</figcaption></figure>")
    legend = "Coloured fill and outline: prediction; white outline: reference (visible where they differ)."
    note = f'<p class="note">{legend}'
    note += f' Not rendered (files not found): {_esc(", ".join(skipped))}</p>' if skipped else "</p>"
    return ("".join(figs) or _na("not available (no files found for the cases)")) + note


def _render_case(run_dir: Path, case: str, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any] | None,
                 images: Mapping[str, Path], references: Mapping[str, Path] | None) -> bytes | None:
    from medsight.evaluate.overlay import best_slice, encode_png, overlay_png
    from medsight.io import read_image

    val = run_dir / "validation"
    crow = next((r for r in rows if str(r.get("case")) == case), {})
    pred_file = val / str(crow["prediction"]) if crow.get("prediction") else None
    if pred_file is None or not pred_file.is_file():  # pooled validation: predictions may stay in fold_<k>/validation
        pred_file = None
        for folder in [val, *sorted(run_dir.glob("fold_*/validation"))]:
            pred_file = _lookup(case_index(folder), case) if folder.is_dir() else None
            if pred_file is not None:
                break
    image_file = _lookup(images, case)
    ref_file = _lookup(references, case)
    if ref_file is None and summary and summary.get("gt_dir") and crow.get("reference"):
        cand = Path(str(summary["gt_dir"])) / str(crow["reference"])
        ref_file = cand if cand.is_file() else None
    if pred_file is None or image_file is None:
        return None
    values = {int(_num(r.get("value"))) for r in rows if math.isfinite(_num(r.get("value")))}
    binary_ok = values == {1}
    pred, _ = read_mask(pred_file, binary_ok=binary_ok)
    ref = read_mask(ref_file, binary_ok=binary_ok)[0] if ref_file is not None else None
    img = read_image(image_file).array
    if img.shape[1:] != pred.shape or (ref is not None and ref.shape != pred.shape):
        raise MedsightError(f"Expected image, prediction and reference of one shape for {case}, got "
                            f"{img.shape[1:]}, {pred.shape}, {None if ref is None else ref.shape}; check the folders")
    if pred.ndim == 3:
        z = best_slice(ref if ref is not None and ref.any() else pred)
        pred, ref, img = pred[z], None if ref is None else ref[z], img[:, z]
    picture = np.moveaxis(img[:3], 0, -1) if img.shape[0] == 3 else img[0]
    rgb = overlay_png(picture, pred, reference=ref)
    factor = max(1, _MIN_OVERLAY_SIZE // max(rgb.shape[:2]))  # small slices (hippocampus) enlarged, pixels kept sharp
    return encode_png(np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb)


# ---------------------------------------------------------------------------------------------- report
def write_report(
    run_dir: str | Path,
    *,
    images: Mapping[str, str | Path] | None = None,
    references: Mapping[str, str | Path] | None = None,
    sections: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Write ``run_dir/report.html`` (atomically) from whatever the run folder holds.

    Args:
        run_dir: the run folder (see the module docstring for the files read; all optional).
        images: case id -> image file, used to render best and worst validation cases when the run has no
            ``validation/overlays/`` (see :func:`case_index` to build it from a folder).
        references: case id -> reference label file for those overlays (default: from the
            ``gt_dir`` recorded in ``validation/summary.json``).
        sections: (title, HTML) pairs that replace the segmentation validation sections (classification runs
            bring their own metrics, curves and heat maps).

    Returns:
        The path of ``report.html``.

    Raises:
        InputNotFoundError: ``run_dir`` does not exist.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputNotFoundError(f"Expected an existing run folder, got {run_dir} which does not exist; check the path")
    from medsight import __version__

    run_summary, why = _read_json(run_dir / "summary.json")
    parts = [("Run summary", _kv_table(_flatten(run_summary)) if run_summary is not None else _na(why))]
    parts.append(("Plan", _plan_section(run_dir)))
    parts.append(("Training", _training_section(run_dir)))
    if sections is not None:
        parts.extend(sections)
    else:
        val_html, rows, val_summary = _validation_section(run_dir)
        parts.append(("Validation metrics", val_html))
        img_index = {str(k): Path(v) for k, v in images.items()} if images else None
        ref_index = {str(k): Path(v) for k, v in references.items()} if references else None
        parts.append(("Validation overlays", _overlay_section(run_dir, rows, val_summary, img_index, ref_index)))
    title = f"medsight report — {run_dir.resolve().name}"
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = "".join(f"<h2>{_esc(name)}</h2>{content}" for name, content in parts)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>"
        f"<p class=\"note\">Run folder <code>{_esc(run_dir.resolve())}</code>; generated {when} by medsight "
        f"{_esc(__version__)}.</p>{body}</body></html>\n"
    )
    out = write_text(run_dir / "report.html", page)
    log.info("report written to %s", out)
    return out


__all__ = ["CURVE_COLUMNS", "case_index", "plot_curves", "read_metrics_csv", "write_report"]
