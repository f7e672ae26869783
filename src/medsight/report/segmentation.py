"""The segmentation run report: the headline (:mod:`medsight.report.headline`), the worst and best validation cases
as overlays with a legend (and their uncertainty, when the run has ``uncertainty.json`` and
``fold_K/validation/<case>_uncertainty.nii.gz``), then the frame of :mod:`medsight.report.run`, and the full
validation tables collapsed at the end.

``write_segmentation_report(run_dir)`` reads what the trainer and :func:`~medsight.evaluate.folders.evaluate_folders`
leave (every piece is optional; a missing one is reported as "not available"):

```
run_dir/plans.json                   plan: top-level fields, "configuration", "fingerprint"
run_dir/summary.json                 run summary: dataset, folds, postprocessing, timings
run_dir/fold_<k>/metrics.csv         epoch,train_loss,val_loss,val_dice,lr,seconds -> run_dir/curves.png
run_dir/validation/per_case.csv      per case and label metrics
run_dir/validation/summary.json      per label mean, SD, CI
run_dir/validation/overlays/*.png    overlays to show (else rendered from the predictions in validation/ or
                                     fold_<k>/validation/ when images are given)
run_dir/uncertainty.json             per-case uncertainty scores and review flags (optional)
```

and writes ``run_dir/report.html`` (atomically): self-contained, images embedded as base64 PNG, no JavaScript.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.display import REFERENCE_COLOUR, label_colour
from medsight.core.tables import csv_float
from medsight.data.dataset import read_mask
from medsight.engine.run import fold_paths
from medsight.errors import MedsightError
from medsight.io import read_image
from medsight.metrics.summary import read_per_case
from medsight.report.describe import label_names
from medsight.report.headline import render_headline, segmentation_headline
from medsight.report.html import (
    case_index,
    esc,
    figure,
    fmt,
    legend,
    lookup,
    na,
    read_json,
    stat_cell,
    table,
)
from medsight.report.overlay import best_slice, encode_png, overlay_png, to_display
from medsight.report.run import write_report
from medsight.report.uncertainty import by_case, read_uncertainty

log = logging.getLogger(__name__)

_SHOWN_METRICS = ("dice", "iou", "hd95", "assd", "sensitivity", "precision", "specificity", "accuracy", "auc",
                  "ref_volume", "pred_volume")
_MAX_OVERLAYS = 24
_MIN_OVERLAY_SIZE = 256
_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD", "sensitivity": "sensitivity",
          "precision": "precision", "specificity": "specificity", "accuracy": "accuracy", "auc": "AUC",
          "ref_volume": "reference volume", "pred_volume": "predicted volume"}


def validation_section(run_dir: Path) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:

    val = run_dir / "validation"
    summary, why = read_json(val / "summary.json")
    rows: list[dict[str, Any]] = []
    if (val / "per_case.csv").is_file():
        try:
            rows = read_per_case(val / "per_case.csv")
        except MedsightError as exc:
            log.warning("%s", exc)
    if summary is None and not rows:
        return na("not available (no validation/summary.json or per_case.csv)"), rows, None
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
                               *[stat_cell(stats.get(m)) for m in metrics]])
        fg = summary.get("foreground_mean")
        if isinstance(fg, dict) and len(summary["labels"]) > 1:
            table_rows.append(["mean over labels", summary.get("n_cases"), *[stat_cell(fg.get(m)) for m in metrics]])
        level = int(round(100 * float(summary.get("ci", 0.95))))
        parts.append(f'<p class="note">mean ± SD [{level} % bootstrap CI of the mean over cases, '
                     f'{esc(summary.get("bootstrap", ""))} resamples]</p>')
        parts.append(table(headers, table_rows, [False, True, *[True] * len(metrics)]))
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
            parts.append("<ul class=\"note\">" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    else:
        parts.append(na(f"summary {why}"))
    if rows:
        metric_cols = [m for m in _SHOWN_METRICS if any(m in r and math.isfinite(r[m]) for r in rows)]
        per_case = table(["case", "label", *[_NAMES[m] for m in metric_cols], "empty"],
                          [[r.get("case"), r.get("label"), *[r.get(m) for m in metric_cols], r.get("empty", "")] for r in rows],
                          [False, False, *[True] * len(metric_cols), False])
        parts.append(f"<details><summary>Per-case metrics ({len(rows)} rows)</summary>{per_case}</details>")
    return "".join(parts), rows, summary


def _case_dice(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    by_case: dict[str, list[float]] = {}
    for r in rows:
        by_case.setdefault(str(r.get("case")), []).append(csv_float(r.get("dice")))
    out = {}
    for case, values in by_case.items():
        v = np.asarray(values)
        v = v[np.isfinite(v)]
        out[case] = float(v.mean()) if v.size else math.nan
    return out


def _legend_items(rows: Sequence[Mapping[str, Any]], plans: Mapping[str, Any] | None) -> list[tuple[str, Sequence[int]]]:
    names = label_names(plans or {})
    for r in rows:
        v = csv_float(r.get("value"))
        if math.isfinite(v) and int(v) != 0:
            names.setdefault(int(v), str(r.get("label")))
    return [(f"{names[v]} (label {v})", label_colour(v)) for v in sorted(names)]


def cases_legend(rows: Sequence[Mapping[str, Any]], plans: Mapping[str, Any] | None, *, heat: bool = False) -> str:
    """The overlays' legend: each label's colour (fill and outline: prediction), the reference outline, and the
    uncertainty panel's colour scale when shown."""
    outline = [f"reference outline ({'white' if tuple(REFERENCE_COLOUR) == (255, 255, 255) else 'outline'}; "
               "visible where prediction and reference differ)"]
    text = legend(_legend_items(rows, plans), outline=outline)
    if heat:
        text += ('<p class="note">Right panel: voxel uncertainty over the image (inferno colour scale: dark = '
                 "certain, bright yellow = the most uncertain voxel of that case).</p>")
    return text


def _overlay_section(run_dir: Path, rows: list[dict[str, Any]], summary: dict[str, Any] | None,
                     images: Mapping[str, Path] | None, references: Mapping[str, Path] | None) -> str:
    folder = run_dir / "validation" / "overlays"
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    plans = read_json(run_dir / "plans.json")[0]
    if pngs:
        figs = [figure(p.read_bytes(), p.stem) for p in pngs[:_MAX_OVERLAYS]]
        more = f'<p class="note">{len(pngs) - _MAX_OVERLAYS} more in validation/overlays/</p>' if len(pngs) > _MAX_OVERLAYS else ""
        return cases_legend(rows, plans) + "".join(figs) + more
    if not rows:
        return na("not available (no overlays and no per-case metrics)")
    if not images:
        return na("not available (no validation/overlays/; pass images=... to render best and worst cases)")
    missing = {str(r.get("case")) for r in rows if r.get("missing") is True}
    dice = {c: d for c, d in _case_dice(rows).items() if math.isfinite(d) and c not in missing}
    chosen = choose_cases(dice)
    uncertain = by_case(read_uncertainty(run_dir)[0])
    figs, skipped, heat_shown = [], [], False
    for kind, case in chosen:
        try:
            png, heat = _render_case(run_dir, case, rows, summary, images, references)
        except (MedsightError, OSError) as exc:
            log.warning("overlay of %s not rendered: %s", case, exc)
            png, heat = None, False
        if png is None:
            skipped.append(case)
            continue
        heat_shown |= heat
        caption = f"{kind}: {esc(case)} — Dice {fmt(dice[case])}"
        u = uncertain.get(case)
        if u is not None:
            caption += f"; fold {esc(u['fold'])}; uncertainty {fmt(u['score'])}"
            caption += ' <span class="flag">flagged for review</span>' if u["review"] else " (not flagged)"
        figs.append(figure(png, caption, alt=case, caption_html=True))
    note = ('<p class="note">The slice with the most reference (else predicted) foreground of each case; worst first.'
            + (f" Not rendered (files not found): {esc(', '.join(skipped))}" if skipped else "") + "</p>")
    return (cases_legend(rows, plans, heat=heat_shown)
            + ("".join(figs) or na("not available (no files found for the cases)")) + note)


def choose_cases(dice: Mapping[str, float], per_side: int = 3) -> list[tuple[str, str]]:
    """("worst" | "best", case) of the cases to show, worst first: the ``per_side`` lowest and highest Dice; with
    ``2 * per_side`` cases or fewer, all of them (the higher-Dice half, rounded up, called best)."""
    ranked = sorted(dice, key=lambda c: (dice[c], c))
    if len(ranked) <= 2 * per_side:
        n_worst = len(ranked) // 2
        return [("worst" if i < n_worst else "best", c) for i, c in enumerate(ranked)]
    return [("worst", c) for c in ranked[:per_side]] + [("best", c) for c in ranked[-per_side:]]


def _uncertainty_map(run_dir: Path, case: str) -> Path | None:
    """``fold_K/validation/<case>_uncertainty.nii.gz`` of the case, when a fold wrote one."""
    for folder in fold_paths(run_dir, "validation"):
        path = folder / f"{case}_uncertainty.nii.gz"
        if path.is_file():
            return path
    return None


def heat_rgb(picture: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """An uncertainty map over a grey image: inferno colours, more opaque where less certain; ``(H, W, 3)`` uint8."""
    from matplotlib import colormaps

    grey = to_display(picture).astype(np.float32)
    u = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    top = float(u.max())
    u = np.clip(u / top, 0.0, 1.0) if top > 0 else np.zeros_like(u)
    colour = colormaps["inferno"](u)[..., :3].astype(np.float32) * 255.0
    a = (0.25 + 0.65 * u)[..., None]
    return np.clip(np.rint((1 - a) * grey + a * colour), 0, 255).astype(np.uint8)


def _render_case(run_dir: Path, case: str, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any] | None,
                 images: Mapping[str, Path], references: Mapping[str, Path] | None) -> tuple[bytes | None, bool]:
    """PNG of the case's overlay (beside its uncertainty map when there is one) and whether the map is shown."""

    val = run_dir / "validation"
    crow = next((r for r in rows if str(r.get("case")) == case), {})
    pred_file = val / str(crow["prediction"]) if crow.get("prediction") else None
    if pred_file is None or not pred_file.is_file():  # pooled validation: predictions may stay in fold_<k>/validation
        pred_file = None
        for folder in [val, *fold_paths(run_dir, "validation")]:
            pred_file = lookup(case_index(folder), case) if folder.is_dir() else None
            if pred_file is not None:
                break
    image_file = lookup(images, case)
    ref_file = lookup(references, case)
    if ref_file is None and summary and summary.get("gt_dir") and crow.get("reference"):
        cand = Path(str(summary["gt_dir"])) / str(crow["reference"])
        ref_file = cand if cand.is_file() else None
    if pred_file is None or image_file is None:
        return None, False
    values = {int(csv_float(r.get("value"))) for r in rows if math.isfinite(csv_float(r.get("value")))}
    binary_ok = values == {1}
    pred, _ = read_mask(pred_file, binary_ok=binary_ok)
    ref = read_mask(ref_file, binary_ok=binary_ok)[0] if ref_file is not None else None
    img = read_image(image_file).array
    if img.shape[1:] != pred.shape or (ref is not None and ref.shape != pred.shape):
        raise MedsightError(f"Expected image, prediction and reference of one shape for {case}, got "
                            f"{img.shape[1:]}, {pred.shape}, {None if ref is None else ref.shape}; check the folders")
    heat_file = _uncertainty_map(run_dir, case)
    heat = read_image(heat_file).array[0] if heat_file is not None else None
    if heat is not None and heat.shape != pred.shape:
        log.warning("uncertainty map of %s has shape %s, not the prediction's %s: not shown", case, heat.shape, pred.shape)
        heat = None
    if pred.ndim == 3:
        z = best_slice(ref if ref is not None and ref.any() else pred)
        pred, ref, img = pred[z], None if ref is None else ref[z], img[:, z]
        heat = None if heat is None else heat[z]
    picture = np.moveaxis(img[:3], 0, -1) if img.shape[0] == 3 else img[0]
    rgb = overlay_png(picture, pred, reference=ref)
    factor = max(1, _MIN_OVERLAY_SIZE // max(rgb.shape[:2]))  # small slices (hippocampus) enlarged, pixels kept sharp
    if heat is not None:
        gap = np.full((rgb.shape[0], max(2, rgb.shape[1] // 40), 3), 255, dtype=np.uint8)
        rgb = np.concatenate([rgb, gap, heat_rgb(picture if picture.ndim == 2 else picture.mean(-1), heat)], axis=1)
    return encode_png(np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb), heat is not None


def segmentation_sections(run_dir: str | Path, *, images: Mapping[str, str | Path] | None = None,
                          references: Mapping[str, str | Path] | None = None) -> list[tuple[str, str]]:
    """The task sections of a segmentation report: the worst and best validation cases (overlays with a legend, their
    uncertainty when the run has it).

    Args:
        run_dir: the run folder.
        images: case id -> image file, used to render best and worst validation cases when the run has no
            ``validation/overlays/`` (see :func:`~medsight.report.html.case_index` to build it from a folder).
        references: case id -> reference label file for those overlays (default: from the ``gt_dir`` recorded in
            ``validation/summary.json``).
    """
    run_dir = Path(run_dir)
    _, rows, val_summary = validation_section(run_dir)
    img_index = {str(k): Path(v) for k, v in images.items()} if images else None
    ref_index = {str(k): Path(v) for k, v in references.items()} if references else None
    return [("Worst and best validation cases", _overlay_section(run_dir, rows, val_summary, img_index, ref_index))]


def segmentation_full_tables(run_dir: str | Path) -> list[tuple[str, str]]:
    """(summary, HTML) of the full validation tables: every metric per label with CIs, and per case."""
    return [("Validation metrics: every metric per label and per case", validation_section(Path(run_dir))[0])]


def write_segmentation_report(run_dir: str | Path, *, images: Mapping[str, str | Path] | None = None,
                              references: Mapping[str, str | Path] | None = None) -> Path:
    """``RUN/report.html`` of a segmentation run: the headline, the worst and best cases, then what
    :func:`~medsight.report.run.write_report` adds (uncertainty, training, plan), then the full tables."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return write_report(run_dir)  # raises the one-line error
    return write_report(run_dir, segmentation_sections(run_dir, images=images, references=references),
                        headline=render_headline(segmentation_headline(run_dir)),
                        full=segmentation_full_tables(run_dir))


__all__ = ["cases_legend", "choose_cases", "heat_rgb", "segmentation_full_tables", "segmentation_sections", "validation_section",
           "write_segmentation_report"]
