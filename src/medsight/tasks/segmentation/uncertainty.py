"""Which segmentations to trust: the run's review threshold, chosen on the validation folds, and the files around it.

After cross-validation (:func:`medsight.tasks.segmentation.pipeline.finalize_run`, or ``medsight uncertainty RUN`` on
an existing run) every fold's validation probabilities (``fold_K/validation/<case>_probabilities.npz``, the mean over
mirror flips of that fold's network, float16) give a voxel uncertainty map
(:func:`medsight.metrics.uncertainty.normalised_entropy`), saved as ``fold_K/validation/<case>_uncertainty.nii.gz``
(float32 in ``[0, 1]``, the case's geometry) for the report's overlays, and a case score
(:func:`medsight.metrics.uncertainty.case_score` with the postprocessed label map). The pooled validation Dice
(``validation/per_case.csv``; a fold's own table for cases not pooled yet) defines the failed cases: mean foreground Dice below ``dice_below`` (default
0.9 x the median validation Dice). ``RUN/uncertainty.json`` holds the threshold, Spearman's correlation of score and
Dice, the AUROC of the score for the failed cases, and every case; ``medsight predict --uncertainty`` applies the
threshold to new cases (``review = score > threshold``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_text
from medsight.core.image import Image
from medsight.core.tables import csv_cell, json_safe
from medsight.engine.run import fold_paths
from medsight.errors import user_error
from medsight.io import full_suffix, read_image, strip_suffix, write_image
from medsight.io.cases import UNCERTAINTY_SUFFIX
from medsight.metrics.summary import read_per_case
from medsight.metrics.uncertainty import (
    CASE_SCORE,
    MEASURE,
    case_score,
    failure_auroc,
    normalised_entropy,
    review_threshold,
    spearman,
)
from medsight.tasks.segmentation.plan import Plan
from medsight.transforms.postprocess import postprocess_labels

log = logging.getLogger(__name__)

UNCERTAINTY_JSON = "uncertainty.json"
UNCERTAINTY_CSV = "uncertainty.csv"
MAP_SUFFIX = UNCERTAINTY_SUFFIX
RELATIVE_LEVEL = 0.9  # default goal: flag the cases whose Dice is below 0.9 x the median validation Dice
_RASTER = (".png", ".tif", ".tiff", ".bmp")


def map_path(label_path: Path) -> Path:
    """Where the uncertainty map of a label map file goes: ``<case>_uncertainty`` with the same suffix."""
    return label_path.parent / f"{strip_suffix(label_path)}{MAP_SUFFIX}{full_suffix(label_path)}"


def write_uncertainty_map(uncertainty: Image, path: Path) -> Path:
    """Atomically write a ``[0, 1]`` map: float32 for NIfTI/NRRD/MHA, 8-bit ``round(255 u)`` for PNG/TIFF/BMP."""
    if full_suffix(path) in _RASTER:
        scaled = np.rint(np.clip(uncertainty.array, 0.0, 1.0) * 255.0).astype(np.uint8)
        return write_image(uncertainty.with_array(scaled), path)
    return write_image(uncertainty.with_array(uncertainty.array.astype(np.float32)), path)


def read_threshold(run: Path) -> float | None:
    """The review threshold of a run (``RUN/uncertainty.json``), or ``None`` when the run has none (yet)."""
    path = Path(run) / UNCERTAINTY_JSON
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("threshold")
    except (OSError, ValueError) as exc:
        raise user_error("a readable uncertainty.json", f"a read error ({exc})", path,
                         "recompute it with 'medsight uncertainty RUN'") from exc
    return float(value) if isinstance(value, (int, float)) else None


def uncertainty_csv(rows: Sequence[tuple[str, float, float | None]]) -> str:
    """``case, score, threshold, review`` rows (review empty when the run has no threshold)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "score", "threshold", "review"])
    for cid, score, threshold in rows:
        w.writerow([cid, csv_cell(float(score)), csv_cell(threshold),
                    "" if threshold is None else csv_cell(bool(score > threshold))])
    return buf.getvalue()


def _mean_dice(path: Path) -> dict[str, float]:
    per: dict[str, list[float]] = {}
    for row in read_per_case(path):
        d = row.get("dice")
        if isinstance(d, float) and math.isfinite(d):
            per.setdefault(str(row["case"]), []).append(d)
    return {c: float(np.mean(v)) for c, v in per.items()}


def _case_dice(run: Path) -> dict[str, float]:
    """Mean foreground Dice per validation case: the pooled (postprocessed) table, else the folds' own tables."""
    dice: dict[str, float] = {}
    for path in fold_paths(run, "validation/per_case.csv"):
        dice |= _mean_dice(path)
    pooled = run / "validation" / "per_case.csv"
    if pooled.is_file():
        dice |= _mean_dice(pooled)
    if not dice:
        raise user_error("validation results (validation/per_case.csv or fold_K/validation/per_case.csv)", "none", run,
                         "train folds with validation first ('medsight train --fold cv')")
    return dice


def run_uncertainty(run: str | Path, *, dice_below: float | None = None, relative: float = RELATIVE_LEVEL,
                    sensitivity: float | None = None, write_maps: bool = True) -> dict[str, Any]:
    """Score every validation case of a run, choose the review threshold, write ``RUN/uncertainty.json``.

    Args:
        run: a run folder after cross-validation (``fold_K/validation/*_probabilities.npz``, ``validation/per_case.csv``).
        dice_below: failed = mean foreground Dice below this; default ``relative`` x the median validation Dice.
        relative: the fraction of the median used when ``dice_below`` is not given.
        sensitivity: choose the threshold that flags at least this fraction of the failed cases (default: Youden's J).
        write_maps: also write ``fold_K/validation/<case>_uncertainty.nii.gz``.

    Returns:
        The content of ``uncertainty.json``.
    """
    run = Path(run)
    plan = Plan.load(run / "plans.json")
    dice = _case_dice(run)
    cases: list[dict[str, Any]] = []
    for vdir in fold_paths(run, "validation"):
        fold = vdir.parent.name.split("_", 1)[-1]
        for npz in sorted(vdir.glob("*_probabilities.npz")):
            cid = npz.name[: -len("_probabilities.npz")]
            label_file = vdir / f"{cid}.nii.gz"
            if cid not in dice or not label_file.is_file():
                log.info("uncertainty: %s has no pooled validation Dice or label map; left out", cid)
                continue
            with np.load(npz) as z:
                umap = normalised_entropy(z["probabilities"])
            label_img = read_image(label_file)
            labels = label_img.array[0]
            if umap.shape != labels.shape:
                raise user_error(f"probabilities on the label map's grid {labels.shape}", f"{umap.shape}", npz,
                                 "re-run validation for this fold")
            labels = postprocess_labels(labels, plan.postprocessing)
            if write_maps:
                write_uncertainty_map(label_img.with_array(umap[None]), vdir / f"{cid}{MAP_SUFFIX}.nii.gz")
            cases.append({"case": cid, "fold": fold, "score": case_score(umap, labels), "dice": dice[cid]})
    if not cases:
        raise user_error("validation probabilities (fold_K/validation/<case>_probabilities.npz)", "none", run,
                         "train folds with validation first ('medsight train --fold cv')")
    scores = np.asarray([c["score"] for c in cases])
    dices = np.asarray([c["dice"] for c in cases])
    rule = "given" if dice_below is not None else f"{relative:g} x median validation Dice"
    level = float(dice_below) if dice_below is not None else float(relative * np.median(dices))
    failed = dices < level
    threshold = review_threshold(scores, failed, sensitivity=sensitivity)
    for c in cases:
        c["review"] = bool(c["score"] > threshold)
    flagged = scores > threshold
    result = {
        "measure": MEASURE,
        "case_score": CASE_SCORE,
        "goal": {"dice_below": level, "rule": rule, "sensitivity": sensitivity},
        "threshold": threshold,
        "spearman": spearman(scores, dices),
        "auroc": failure_auroc(scores, failed),
        "n_failed": int(failed.sum()),
        "n_cases": len(cases),
        "flagged": int(flagged.sum()),
        "failed_flagged": int((flagged & failed).sum()),
        "cases": cases,
    }
    write_text(run / UNCERTAINTY_JSON, json.dumps(json_safe(result), indent=2))
    return result


__all__ = ["MAP_SUFFIX", "RELATIVE_LEVEL", "UNCERTAINTY_CSV", "UNCERTAINTY_JSON", "map_path", "read_threshold",
           "run_uncertainty", "uncertainty_csv", "write_uncertainty_map"]
