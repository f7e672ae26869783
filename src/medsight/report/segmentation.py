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

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.tables import csv_float
from medsight.data.dataset import read_mask
from medsight.engine.run import fold_paths
from medsight.errors import MedsightError
from medsight.io import read_image
from medsight.metrics.summary import read_per_case
from medsight.report.html import case_index, esc, fmt, img, lookup, na, read_json, stat_cell, table
from medsight.report.overlay import best_slice, encode_png, overlay_png
from medsight.report.run import write_report

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


def _overlay_section(run_dir: Path, rows: list[dict[str, Any]], summary: dict[str, Any] | None,
                     images: Mapping[str, Path] | None, references: Mapping[str, Path] | None) -> str:
    folder = run_dir / "validation" / "overlays"
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if pngs:
        figs = [f"<figure>{img(p.read_bytes(), alt=p.stem)}<figcaption>{esc(p.stem)}</figcaption></figure>"
                for p in pngs[:_MAX_OVERLAYS]]
        more = f'<p class="note">{len(pngs) - _MAX_OVERLAYS} more in validation/overlays/</p>' if len(pngs) > _MAX_OVERLAYS else ""
        return "".join(figs) + more
    if not rows:
        return na("not available (no overlays and no per-case metrics)")
    if not images:
        return na("not available (no validation/overlays/; pass images=... to render best and worst cases)")
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
        figs.append(f"<figure>{img(png, alt=case)}<figcaption>{kind}: {esc(case)} — Dice {fmt(dice[case])}"
                    "</figcaption></figure>")
    legend = "Coloured fill and outline: prediction; white outline: reference (visible where they differ)."
    note = f'<p class="note">{legend}'
    note += f' Not rendered (files not found): {esc(", ".join(skipped))}</p>' if skipped else "</p>"
    return ("".join(figs) or na("not available (no files found for the cases)")) + note


def _render_case(run_dir: Path, case: str, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any] | None,
                 images: Mapping[str, Path], references: Mapping[str, Path] | None) -> bytes | None:

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
        return None
    values = {int(csv_float(r.get("value"))) for r in rows if math.isfinite(csv_float(r.get("value")))}
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


def segmentation_sections(run_dir: str | Path, *, images: Mapping[str, str | Path] | None = None,
                          references: Mapping[str, str | Path] | None = None) -> list[tuple[str, str]]:
    """The validation sections of a segmentation run: metrics per label with CIs, then the worst and best cases.

    Args:
        run_dir: the run folder.
        images: case id -> image file, used to render best and worst validation cases when the run has no
            ``validation/overlays/`` (see :func:`~medsight.report.html.case_index` to build it from a folder).
        references: case id -> reference label file for those overlays (default: from the ``gt_dir`` recorded in
            ``validation/summary.json``).
    """
    run_dir = Path(run_dir)
    val_html, rows, val_summary = validation_section(run_dir)
    img_index = {str(k): Path(v) for k, v in images.items()} if images else None
    ref_index = {str(k): Path(v) for k, v in references.items()} if references else None
    return [("Validation metrics", val_html),
            ("Validation overlays", _overlay_section(run_dir, rows, val_summary, img_index, ref_index))]


def write_segmentation_report(run_dir: str | Path, *, images: Mapping[str, str | Path] | None = None,
                              references: Mapping[str, str | Path] | None = None) -> Path:
    """``RUN/report.html`` of a segmentation run (see :func:`segmentation_sections`)."""
    return write_report(run_dir, segmentation_sections(run_dir, images=images, references=references))


__all__ = ["segmentation_sections", "validation_section", "write_segmentation_report"]
