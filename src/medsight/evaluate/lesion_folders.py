"""Lesion detection and lesion-level evaluation over folders, as ``medsight detect`` and
``medsight evaluate --lesions`` run them (rules in :mod:`medsight.metrics.lesions`).

Probability files are ``<case>.npz`` or ``<case>_probabilities.npz`` holding ``probabilities``: ``(K, *spatial)``
with channel ``v`` the probability of label value ``v``, or ``(*spatial)`` for the foreground.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import atomic_path, write_text
from medsight.core.image import Image
from medsight.core.outputs import check_new_output, check_new_outputs
from medsight.core.tables import json_safe
from medsight.data.dataset import file_stem, image_files, match_files, read_mask
from medsight.errors import user_error
from medsight.evaluate.folders import existing_folder, read_probabilities
from medsight.evaluate.quantify import csv_text
from medsight.metrics.lesions import CaseMatch, Detection, FrocResult, detect_lesions, froc, match_case

log = logging.getLogger(__name__)

DETECTION_COLUMNS = ("case", "lesion", "score", "voxels", "size_mm3", "centre_x_mm", "centre_y_mm", "centre_z_mm",
                     "status", "reference_lesion")
FROC_COLUMNS = ("threshold", "sensitivity", "fp_per_case")


def label_probability(prob: np.ndarray, value: int | None, shape: tuple[int, ...]) -> np.ndarray:
    """``(*spatial)`` probability of label ``value`` (``None``: any foreground) from ``(K, *spatial)`` or
    ``(*spatial)`` probabilities."""
    if prob.shape == shape:
        return prob
    if prob.shape[1:] != shape:
        raise user_error(f"probabilities of shape (K, *{shape})", f"shape {prob.shape}", None,
                         "save the probabilities on the label map's grid")
    if value is None:
        return 1.0 - prob[0]
    if not 0 <= value < prob.shape[0]:
        raise user_error(f"a probability channel for label {value}", f"{prob.shape[0]} channels", None,
                         "pass --lesion-label with a value the model predicts")
    return prob[value]


def _probability_files(folder: Path | None) -> dict[str, Path]:
    if folder is None:
        return {}
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise user_error("<case>.npz probability files", "none", folder, "write them with medsight predict --save-probabilities")
    return {file_stem(f).removesuffix("_probabilities"): f for f in files}


def _case_detections(pred_file: Path, prob_file: Path | None, *, value: int | None, threshold: float | None,
                     min_volume: float) -> tuple[Image, list[Detection], np.ndarray]:

    arr, image = read_mask(pred_file, binary_ok=value in (None, 1))
    mask = arr > 0 if value is None else arr == value
    prob = None
    if prob_file is not None:
        prob = label_probability(read_probabilities(prob_file, mask.shape), value, mask.shape)
    detections, det_map = detect_lesions(mask, spacing=image.spacing, probability=prob, threshold=threshold,
                                         min_volume=min_volume)
    return image, detections, det_map


def _rows(case: str, image: Image, detections: list[Detection], match: CaseMatch | None) -> list[dict[str, Any]]:
    status = {i: (s, r) for i, _, s, r in match.statuses} if match else {}
    rows = []
    for d in detections:
        pos = image.affine @ np.array([*d.centre_index, 1.0])
        st, ref = status.get(d.index, ("", None))
        rows.append({"case": case, "lesion": d.index, "score": d.score, "voxels": d.voxels, "size_mm3": d.size,
                     "centre_x_mm": float(pos[0]), "centre_y_mm": float(pos[1]),
                     "centre_z_mm": float(pos[2]) if image.ndim == 3 else None, "status": st,
                     "reference_lesion": ref})
    return rows


def detect_folder(pred: str | Path, out_csv: str | Path, *, prob_dir: str | Path | None = None,
                  value: int | None = None, threshold: float | None = None, min_volume: float = 0.0,
                  overwrite: bool = False) -> Path:
    """Write one CSV row per detected lesion of every label map in ``pred`` (a folder or one file); an existing
    ``out_csv`` is replaced only with ``overwrite``, an input never."""
    p = Path(pred)
    files = image_files(p) if p.is_dir() else [p]
    if not files:
        raise user_error("label maps (.nii.gz, .png, ...)", "none", p, "point at the prediction folder")
    check_new_output(out_csv, files, overwrite=overwrite)
    probs = _probability_files(Path(prob_dir) if prob_dir is not None else None)
    rows: list[dict[str, Any]] = []
    for f in files:
        case = file_stem(f)
        image, detections, _ = _case_detections(f, probs.get(case), value=value, threshold=threshold,
                                                min_volume=min_volume)
        rows += _rows(case, image, detections, None)
    return write_text(out_csv, csv_text(rows, DETECTION_COLUMNS[:-2]))


@dataclass(frozen=True)
class LesionEvaluation:
    """What :func:`evaluate_lesion_folders` wrote and found."""

    froc: FrocResult
    detections_csv: Path
    froc_csv: Path
    summary_json: Path
    froc_png: Path


def evaluate_lesion_folders(pred_dir: str | Path, gt_dir: str | Path, *, prob_dir: str | Path | None = None,
                            out_dir: str | Path | None = None, value: int | None = None,
                            threshold: float | None = None, min_volume: float = 0.0,
                            overwrite: bool = False) -> LesionEvaluation:
    """Lesion-level evaluation: detections of every prediction matched to the reference lesions; FROC and CPM.

    Writes ``lesion_detections.csv`` (every detection with its status), ``froc.csv``, ``lesion_summary.json``
    (sensitivity, FP per case, CPM, sensitivity at each CPM rate, the matching rule) and ``froc.png``.
    A reference without a prediction counts as a case with no detections. Existing outputs are replaced only with
    ``overwrite``; an input file never.
    """

    pred_path, gt_path = existing_folder(pred_dir, "prediction"), existing_folder(gt_dir, "reference")
    gt_files, pred_files = image_files(gt_path), image_files(pred_path)
    if not gt_files:
        raise user_error("reference label files", "none", gt_path, "point at the label folder")
    out = Path(out_dir) if out_dir is not None else pred_path
    check_new_outputs([out / n for n in ("lesion_detections.csv", "froc.csv", "lesion_summary.json", "froc.png")],
                      [*gt_files, *pred_files], overwrite=overwrite)
    pairs, _ = match_files(gt_files, pred_files, None, None)
    probs = _probability_files(Path(prob_dir) if prob_dir is not None else None)
    matches: list[CaseMatch] = []
    rows: list[dict[str, Any]] = []
    for gt in gt_files:
        stem = file_stem(gt)
        ref_arr, _ = read_mask(gt, binary_ok=value in (None, 1))
        reference = ref_arr > 0 if value is None else ref_arr == value
        pf = pairs.get(stem)
        if pf is None:
            log.warning("no prediction for %s: counted as a case without detections", gt.name)
            matches.append(match_case(stem, [], np.zeros(reference.shape, np.int32), reference))
            continue
        case = file_stem(pf)
        image, detections, det_map = _case_detections(pf, probs.get(case), value=value, threshold=threshold,
                                                      min_volume=min_volume)
        match = match_case(case, detections, det_map, reference)
        matches.append(match)
        rows += _rows(case, image, detections, match)
    result = froc(matches)
    det_csv = write_text(out / "lesion_detections.csv", csv_text(rows, DETECTION_COLUMNS))
    curve = [{"threshold": t, "sensitivity": s, "fp_per_case": f}
             for t, s, f in zip(result.thresholds, result.sensitivity, result.fp_per_case)]
    froc_csv = write_text(out / "froc.csv", csv_text(curve, FROC_COLUMNS))
    summary = {**result.as_dict(), "duplicates": sum(m.duplicates for m in matches),
               "label": value if value is not None else "any foreground", "min_volume_mm3": min_volume,
               "threshold": threshold,
               "matching_rule": "a detection hits a reference lesion when they share a voxel; by decreasing score "
                                "each detection is a TP for the unhit reference it overlaps most, a duplicate "
                                "(ignored) if all it overlaps are hit, else a FP"}
    summary_json = write_text(out / "lesion_summary.json", json.dumps(json_safe(summary), indent=2) + "\n")
    png = plot_froc(result, out / "froc.png")
    return LesionEvaluation(result, det_csv, froc_csv, summary_json, png)


def plot_froc(result: FrocResult, path: str | Path) -> Path:
    """FROC curve (log FP-per-case axis, CPM rates marked) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    fp = np.asarray(result.fp_per_case)
    ax.step(np.maximum(fp, 1e-3), result.sensitivity, where="post", label=f"FROC (CPM {result.cpm:.3f})")
    ax.plot(result.rates, result.sensitivity_at, "o", label="CPM points")
    ax.set_xscale("log")
    ax.set_xlim(1 / 16, 16)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per case")
    ax.set_ylabel("sensitivity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


__all__ = ["DETECTION_COLUMNS", "LesionEvaluation", "detect_folder", "evaluate_lesion_folders", "label_probability",
           "plot_froc"]
