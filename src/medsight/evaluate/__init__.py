"""Evaluation: segmentation metrics, folder evaluation, overlays and the HTML run report.

* :mod:`~medsight.evaluate.metrics`: Dice, IoU, HD95, ASSD, sensitivity, precision, volumes, pixel AUC per case
  and label; :func:`summarize` over cases; :class:`SegmentationEvaluator`.
* :mod:`~medsight.evaluate.folders`: :func:`evaluate_folders` (``medsight evaluate``).
* :mod:`~medsight.evaluate.overlay`: label overlays as RGB arrays / PNG files.
* :mod:`~medsight.evaluate.report`: :func:`write_report` (``medsight report``) and :func:`plot_curves`.

Heavy dependencies (torch/MONAI for surface distances, matplotlib for plots) load on first use.
"""

from medsight.evaluate.folders import EvaluationResult, evaluate_folders
from medsight.evaluate.metrics import (
    METRICS,
    SegmentationEvaluator,
    binary_metrics,
    case_metrics,
    confusion_counts,
    describe,
    overlap_metrics,
    roc_auc,
    summarize,
    surface_distances,
)
from medsight.evaluate.overlay import best_slice, overlay_png, save_overlay
from medsight.evaluate.report import plot_curves, write_report

__all__ = [
    "METRICS", "EvaluationResult", "SegmentationEvaluator", "best_slice", "binary_metrics", "case_metrics",
    "confusion_counts", "describe", "evaluate_folders", "overlap_metrics", "overlay_png", "plot_curves", "roc_auc",
    "save_overlay", "summarize", "surface_distances", "write_report",
]
