"""The HTML report of a multi-task run: both metric sets, training curves (with learned task weights), and Grad-CAM
of the classification head beside the predicted mask for the most and least confident validation cases.

The figures are drawn on the network's grid (the preprocessed image in ``RUN/preprocessed``): left the predicted
mask (coloured) with the reference outline (white), right the Grad-CAM of the predicted class at the encoder's
bottleneck, the layer the classification head pools; for volumes the slice with the most predicted foreground.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.run import BEST
from medsight.explain.gradcam import grad_cam
from medsight.explain.render import draw_heatmap, robust_window, save_figure
from medsight.models.multitask import ClassificationView, SegmentationView
from medsight.report.headline import classification_headline, render_headline, segmentation_headline
from medsight.report.html import figure, na
from medsight.report.overlay import best_slice, overlay_png
from medsight.report.run import write_report
from medsight.report.segmentation import cases_legend, segmentation_full_tables
from medsight.tasks.classification.report import confidence_cases, metrics_section
from medsight.tasks.multitask.plan import MultitaskPlan, load_multitask_plan
from medsight.tasks.multitask.predict import pad_to

log = logging.getLogger(__name__)

def gradcam_beside_mask(model: Any, plan: MultitaskPlan, image: np.ndarray, reference: np.ndarray | None,
                        target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(image, predicted mask, Grad-CAM, reference) of one preprocessed case ``(C, *S)`` on the network grid (2D
    slices: for volumes the slice with the most predicted foreground)."""
    import torch

    x_np, before = pad_to(image, model.stride, plan.patch_size)
    x = torch.from_numpy(x_np)[None]
    region = tuple(slice(b, b + s) for b, s in zip(before, image.shape[1:]))
    model.eval()
    with torch.no_grad():
        seg = SegmentationView(model)(x)[0].argmax(0).numpy()[region] if "segmentation" in model.tasks else None
    mask = seg if seg is not None else np.zeros(image.shape[1:], dtype=np.int64)  # a classification-only run
    heat = grad_cam(ClassificationView(model), x, target)[region]
    img = np.asarray(image[0], dtype=np.float32)
    if img.ndim == 3:
        z = best_slice(mask if mask.any() or reference is None else reference)
        img, mask, heat, reference = img[z], mask[z], heat[z], None if reference is None else reference[z]
    return img, mask, heat, reference


def _figure(img: np.ndarray, mask: np.ndarray, heat: np.ndarray, ref: np.ndarray | None, out_png: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.3))
    left, right = fig.subplots(1, 2)
    left.imshow(overlay_png(img, mask, reference=ref), interpolation="nearest")
    left.set_axis_off()
    left.set_title("predicted mask" + (" (white: reference)" if ref is not None else ""), fontsize=9)
    mapped = draw_heatmap(right, img, heat, robust_window(img), 0.45)
    right.set_title("Grad-CAM of the classification head", fontsize=9)
    fig.colorbar(mapped, ax=right, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out_png)


def gradcam_section(run: Path, plan: MultitaskPlan) -> str:
    """Figures of the chosen validation cases (from the preprocessed cache and the folds' best checkpoints)."""

    cases = confidence_cases(run, plan.classification_view())
    cache = run / "preprocessed"
    if not cases or not cache.is_dir():
        return na("not available (no classified validation cases or no preprocessed cache)")
    out = run / "validation" / "gradcam"
    models: dict[str, Any] = {}
    figs = []
    for cid, fold, cls, conf, kind in cases:
        if not (cache / f"{cid}.npy").is_file():
            continue
        if fold not in models:
            models[fold] = model_from_checkpoint(load_checkpoint(run / fold / BEST))
        ref_file = cache / f"{cid}_seg.npy"
        ref = np.load(ref_file) if ref_file.is_file() else None
        try:
            parts = gradcam_beside_mask(models[fold], plan, np.load(cache / f"{cid}.npy"), ref, cls)
        except Exception as exc:  # noqa: BLE001 - an explanation must never cost the report
            log.warning("no Grad-CAM for %s: %s", cid, exc)
            continue
        title = f"{cid}: {plan.class_names[cls]} p={conf:.2f}"
        png = _figure(*parts, out / f"{cid.replace('/', '_')}.png", title)
        figs.append(figure(png.read_bytes(), f"{kind}: {title}", alt=cid))
    return "".join(figs) or na("no Grad-CAM could be computed")


def write_multitask_report(run: str | Path) -> Path:
    """Write ``run/report.html``: one headline for both tasks (Dice and AUC with their CIs), the Grad-CAM figures,
    the classification metrics, then training, plan and the full tables."""

    run = Path(run)
    plan = load_multitask_plan(run / "plans.json")
    seg = segmentation_headline(run, task=f"{plan.dims}D segmentation")
    cls = classification_headline(run, task="classification")
    sections = []
    try:
        legend = cases_legend([], plan.to_dict())
        sections.append(("Grad-CAM of the classification head beside the predicted mask",
                         legend + gradcam_section(run, plan)))
    except Exception as exc:  # noqa: BLE001 - the report is written even when explaining fails
        log.warning("Grad-CAM figures skipped: %s", exc)
        sections.append(("Grad-CAM", na(f"not available ({exc})")))
    sections.append(("Classification: cross-validated metrics", metrics_section(run / "validation")))
    return write_report(run, sections=sections, headline=render_headline(seg, cls),
                        full=segmentation_full_tables(run))


__all__ = ["gradcam_beside_mask", "gradcam_section", "write_multitask_report"]
