"""Evaluation of prediction folders against references (``medsight evaluate``), quantification and lesion detection.

* :mod:`~medsight.evaluate.folders`: :func:`evaluate_folders` (``medsight evaluate``);
* :mod:`~medsight.evaluate.lesion_folders`: lesions as scored detections, FROC (``medsight detect``, ``--lesions``);
* :mod:`~medsight.evaluate.quantify`: volumes, diameters and intensities per label and lesion (``medsight quantify``).

The metrics themselves live in :mod:`medsight.metrics`; overlays and the run report in :mod:`medsight.report`.
"""

from medsight.evaluate.folders import EvaluationResult, evaluate_folders

__all__ = ["EvaluationResult", "evaluate_folders"]
