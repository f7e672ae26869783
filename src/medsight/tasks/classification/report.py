"""The HTML report of a classification run, answer first: the headline (AUC with its 95 % CI, per class and per
fold), Grad-CAM heat maps of the most and least confident validation cases, the cross-validated metrics with
95 % CIs and the ROC / PR / reliability / confusion plots, then training, plan and the full tables
(:func:`medsight.report.run.write_report`)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.run import BEST, fold_paths
from medsight.explain import grad_cam, montage_3d, occlusion, overlay_heatmap
from medsight.report.headline import classification_headline, render_headline
from medsight.report.html import esc, figure, fmt, na, table
from medsight.report.run import write_report
from medsight.tasks.classification.plan import ClassificationPlan

log = logging.getLogger(__name__)

_HEATMAP_CASES = 3  # most and least confident each
_FIGURES = {"roc": "ROC curve", "pr": "precision-recall curve", "reliability": "reliability diagram (calibration)",
            "confusion": "confusion matrix at the decision threshold"}
_SHOWN = ("auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "ece")


def metrics_section(vdir: Path) -> str:
    """The cross-validated metrics with their CIs, and the ROC / PR / reliability / confusion figures."""
    path = vdir / "metrics.json"
    if not path.is_file():
        return na("not available: no fold with validation cases finished yet")
    m = json.loads(path.read_text())
    ci = m.get("ci95") or {}
    rows = []
    for k in _SHOWN:
        v = m.get(k)
        if isinstance(v, dict):  # per-class values come with a macro entry
            v = v.get("macro", None)
        lo_hi = ci.get(k) if isinstance(ci, dict) else None
        interval = f"{fmt(lo_hi[0])} – {fmt(lo_hi[1])}" if isinstance(lo_hi, list) and None not in lo_hi else None
        rows.append((k.replace("_", " "), v, interval))
    parts = [f"<p class=\"note\">{esc(m.get('n'))} out-of-fold validation cases; decision thresholds "
             f"{esc(m.get('thresholds'))} chosen on them; probabilities calibrated by temperature scaling per fold. "
             "CIs: percentile bootstrap over cases, stratified by class.</p>",
             table(("metric", "value", "95 % CI"), rows, (False, True, False))]
    figs = [(n, vdir / f"{n}.png") for n in ("roc", "pr", "reliability", "confusion")]
    parts += [figure(p.read_bytes(), _FIGURES[n], alt=n) for n, p in figs if p.is_file()]
    return "".join(parts)


def _load_cache(run: Path) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    index, images = run / "preprocessed" / "index.json", run / "preprocessed" / "images.npy"
    if not (index.is_file() and images.is_file()):
        return None
    idx = json.loads(index.read_text())
    tab = np.asarray(idx.get("tabular", []), dtype=np.float32).reshape(len(idx["ids"]), -1)
    return idx["ids"], np.load(images, mmap_mode="r"), tab


def confidence_cases(run: Path, plan: ClassificationPlan) -> list[tuple[str, str, int, float, str]]:
    """(case, fold, predicted class index, confidence, kind) for the most and least confident validation cases."""
    rows = []
    for f in fold_paths(run, "validation/predictions.csv"):
        with f.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                p = np.asarray([float(r[f"prob_{n}"]) for n in plan.class_names])
                rows.append((r["file"], f.parent.parent.name, int(p.argmax()), float(p.max())))
    if not rows:
        return []
    rows.sort(key=lambda r: r[3])
    n = min(_HEATMAP_CASES, len(rows) // 2 or 1)
    most = [(*r, "most confident") for r in rows[::-1][:n]]
    least = [(*r, "least confident") for r in rows[:n] if r not in rows[::-1][:n]]
    return most + least


def heatmap_section(run: Path, plan: ClassificationPlan) -> str:
    """Grad-CAM (occlusion for networks without a spatial layer) of the chosen validation cases."""
    import torch

    cases = confidence_cases(run, plan)
    cache = _load_cache(run)
    if not cases or cache is None:
        return na("not available (no validation predictions or no preprocessed cache)")
    ids, images, tab = cache
    pos = {c: i for i, c in enumerate(ids)}
    out = run / "validation" / "heatmaps"
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, Any] = {}
    figs = []
    for cid, fold, cls, conf, kind in cases:
        if cid not in pos:
            continue
        if fold not in models:
            models[fold] = model_from_checkpoint(load_checkpoint(run / fold / BEST))
        model = models[fold]
        x = torch.from_numpy(np.array(images[pos[cid]], dtype=np.float32))[None]
        t = torch.from_numpy(tab[pos[cid]])[None] if tab.size else None
        try:
            if getattr(model, "cam_layer", None):
                heat, method = grad_cam(model, x, cls, tabular=t), "Grad-CAM"
            else:
                heat, method = occlusion(model, x, cls, tabular=t, multilabel=plan.multilabel), "occlusion"
        except Exception as exc:  # an explanation must never cost the report
            log.warning("no heat map for %s: %s", cid, exc)
            continue
        name = f"{cid.replace('/', '_')}.png"
        title = f"{cid}: {plan.class_names[cls]} p={conf:.2f} ({method})"
        vol = x[0, 0].numpy()
        if plan.dims == 2:
            overlay_heatmap(vol, heat, out / name, title=title)
        else:
            montage_3d(vol, heat, out / name, max_slices=8)
        figs.append(figure((out / name).read_bytes(), f"{kind}: {title}", alt=cid))
    if not figs:
        return na("no heat map could be computed")
    return ('<p class="note">Where the network looked for its predicted class (p: its calibrated probability); warm '
            "colours: regions that raised the score most.</p>" + "".join(figs))


_PLAN_EXTRAS = ("imbalance", "tabular columns", "early stopping", "threshold")


def plan_extras(plan: ClassificationPlan) -> list[tuple[str, str]]:
    """The plan rows a classification run adds to the report's compact plan table."""
    return [(k, v) for k, v in plan.table() if k in _PLAN_EXTRAS]


def write_classification_report(run: Path, plan: ClassificationPlan) -> Path:
    """Write ``run/report.html`` with the classification headline and sections."""
    sections = []
    try:
        sections.append(("Most and least confident validation cases (heat maps)", heatmap_section(run, plan)))
    except Exception as exc:  # noqa: BLE001 - the report is written even when explaining fails
        log.warning("heat maps skipped: %s", exc)
        sections.append(("Heat maps", na(f"not available ({exc})")))
    sections.append(("Cross-validated metrics", metrics_section(run / "validation")))
    return write_report(run, sections=sections, headline=render_headline(classification_headline(run)),
                        plan_rows=plan_extras(plan))
