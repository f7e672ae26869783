"""Evaluate a folder of predictions against a folder of references, as ``medsight evaluate`` does.

Files are paired by name: the same stem without its format suffix (``case_001.nii.gz`` <-> ``case_001.nii.gz``),
or, when most stems differ, the leading token before ``_`` (DRIVE: ``21_test.png`` <-> ``21_manual1.gif``),
with the same rule as dataset folders (:func:`medsight.data.dataset.match_files`). A reference without a
prediction is scored as an empty prediction (Dice 0, as nnU-Net does), flagged ``missing`` and warned about.

Outputs (written atomically into ``out_dir``): ``per_case.csv`` (one row per case and label, see
:mod:`medsight.metrics.segmentation` for columns and conventions) and ``summary.json`` (per-label mean, SD,
median and bootstrap 95 % CI, plus the pairing facts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_text
from medsight.core.outputs import check_new_outputs
from medsight.core.tables import json_safe
from medsight.data.dataset import file_stem, image_files, match_files, read_label_map, read_mask
from medsight.errors import InputNotFoundError, MedsightError, user_error
from medsight.io.cases import UNCERTAINTY_SUFFIX
from medsight.metrics.summary import SegmentationEvaluator, rows_to_csv

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate_folders` found.

    Attributes:
        rows: one dict per case and label (columns :data:`CSV_COLUMNS`).
        summary: the :func:`~medsight.metrics.summary.summarize` dict plus pairing facts
            (``missing``, ``unmatched_predictions``, ``match_rule``, ``warnings``, folders).
        labels: label name -> value that were scored.
        per_case_csv: where ``per_case.csv`` was written.
        summary_json: where ``summary.json`` was written.
        missing: reference files that had no prediction (scored as empty predictions).
        unmatched: prediction files that had no reference (not scored).
        match_rule: how files were paired (``"same file stem"`` or ``"leading token before '_'"``).
        warnings: problems worth a look (missing predictions, unmatched files), also logged and in the summary.
    """

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    labels: dict[str, int]
    per_case_csv: Path
    summary_json: Path
    missing: tuple[str, ...] = ()
    unmatched: tuple[str, ...] = ()
    match_rule: str = ""
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------- reading
def existing_folder(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"Expected an existing {what} folder, got {p} which does not exist; check the path")
    if not p.is_dir():
        raise user_error(f"a {what} folder", "a file", p, "pass the folder that holds the files")
    return p


def _infer_labels(gt_files: Sequence[Path]) -> dict[str, int]:
    values: set[int] = set()
    for f in gt_files:
        arr, _ = read_mask(f, binary_ok=True)
        values.update(int(v) for v in np.unique(arr))
    fg = sorted(v for v in values if v != 0)
    if not fg:
        raise user_error("some foreground in the reference label maps", "only background (0) in every file",
                         gt_files[0].parent, "check the reference folder, or pass --labels name=value")
    if fg == [1]:
        return {"foreground": 1}
    return {f"label_{v}": v for v in fg}


def read_probabilities(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "probabilities" not in z.files:
                raise user_error("an NPZ with a 'probabilities' array", f"keys {sorted(z.files)}", path,
                                 "save the probabilities as np.savez(path, probabilities=array)")
            prob = np.asarray(z["probabilities"])
    except (OSError, ValueError) as exc:
        if isinstance(exc, MedsightError):
            raise
        raise user_error("a readable .npz file", f"a read error ({exc})", path, "rewrite the file") from exc
    if prob.shape != shape and prob.shape[1:] != shape:
        raise user_error(f"probabilities of shape (C, *{shape})", f"shape {prob.shape}", path,
                         "save the probabilities on the reference grid")
    if prob.dtype.kind != "f":
        raise user_error("float probabilities", f"dtype {prob.dtype}", path, "save float16/float32 probabilities")
    return prob.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- main
def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    labels: Mapping[str, int] | None = None,
    roi_dir: str | Path | None = None,
    prob_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    distances: bool = True,
    bootstrap: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
) -> EvaluationResult:
    """Score every reference label map against its prediction and write ``per_case.csv`` + ``summary.json``.

    Args:
        pred_dir: predicted label maps (NIfTI, NRRD, MHA, PNG, ...), values = label values; raster masks
            stored as 0/255 are read as 0/1 for binary tasks.
        gt_dir: reference label maps; their spacing is used (raster files hold none: distances are then
            in pixels and areas in pixel counts).
        labels: label name -> value to score; default: every non-zero value found in the references (an extra
            reading pass; ``{"foreground": 1}`` for binary masks, else ``label_<v>``).
        roi_dir: optional region-of-interest masks (DRIVE field of view), paired with the references by name;
            metrics are computed inside them.
        prob_dir: optional ``<case>.npz`` (or ``<case>_probabilities.npz``) files holding ``probabilities`` ``(C, *spatial)`` (channel i =
            label value i) or ``(*spatial)`` (foreground), paired with the predictions by name; gives ``auc``.
        out_dir: where to write the outputs (default ``pred_dir``).
        distances: compute HD95/ASSD (the slow part).
        bootstrap: bootstrap resamples for the CIs (0: none).
        seed: seed of the bootstrap.
        overwrite: replace an existing ``per_case.csv`` / ``summary.json`` (an input file is never written over).

    Returns:
        The :class:`EvaluationResult`.

    Raises:
        MedsightError: missing or empty folders, unreadable files, shape mismatches (naming the file).
    """
    pred_dir = existing_folder(pred_dir, "prediction")
    gt_dir = existing_folder(gt_dir, "reference")
    out = Path(out_dir) if out_dir is not None else pred_dir
    gt_files = image_files(gt_dir)
    if not gt_files:
        raise user_error("reference label files (.nii.gz, .png, .gif, ...)", "none", gt_dir, "point at the label folder")
    pred_files = [f for f in image_files(pred_dir) if not file_stem(f).endswith(UNCERTAINTY_SUFFIX)]  # maps, not labels
    if not pred_files:
        raise user_error("prediction files (.nii.gz, .png, ...)", "none", pred_dir,
                         "point at the folder the predictions were written to")
    check_new_outputs([out / "per_case.csv", out / "summary.json"], [*gt_files, *pred_files], overwrite=overwrite)
    pairs, rule = match_files(gt_files, pred_files, None, None)
    used: dict[Path, str] = {}
    for gt_stem, paired in pairs.items():
        if paired in used:
            raise user_error("one reference per prediction",
                             f"{used[paired]} and {gt_stem} both pairing with {paired.name}", gt_dir,
                             "give the files unique names")
        used[paired] = gt_stem
    by_gt = {file_stem(f): f for f in gt_files}
    missing = tuple(by_gt[s].name for s in by_gt if s not in pairs)
    unmatched = tuple(f.name for f in pred_files if f not in used)
    notes: list[str] = []
    if missing:
        notes.append(f"{len(missing)} reference(s) without a prediction, scored as empty predictions: "
                     f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        log.warning("%s", notes[-1])
    if unmatched:
        notes.append(f"{len(unmatched)} prediction(s) without a reference, not scored: "
                     f"{', '.join(unmatched[:10])}{' ...' if len(unmatched) > 10 else ''}")
        log.warning("%s", notes[-1])

    rois: dict[str, Path] = {}
    if roi_dir is not None:
        roi_path = existing_folder(roi_dir, "region-of-interest")
        rois, _ = match_files(gt_files, image_files(roi_path), None, None)
        if not rois:
            raise user_error("mask files named like the references", "no matching names", roi_path,
                             "name them <case>.png or <number>_<anything>.gif")
    probs: dict[str, Path] = {}
    if prob_dir is not None:
        prob_path = existing_folder(prob_dir, "probability")
        npz = sorted(f for f in prob_path.iterdir() if f.is_file() and f.name.lower().endswith(".npz"))
        if not npz:
            raise user_error("<case>.npz probability files", "none", prob_path, "write them with np.savez(probabilities=...)")
        # "<case>.npz" or medsight predict's "<case>_probabilities.npz"
        by_stem = {file_stem(f).removesuffix("_probabilities"): f for f in npz}
        probs = {file_stem(u): by_stem[file_stem(u)] for u in used if file_stem(u) in by_stem}
        if not probs:
            probs, _ = match_files(list(used), npz, None, None)

    if labels is None:
        labels = _infer_labels(gt_files)
        log.info("labels inferred from the references: %s", labels)
    evaluator = SegmentationEvaluator(labels, distances=distances)
    binary_ok = set(evaluator.labels.values()) == {1}
    n_prob_missing = 0
    for gt_stem, gt_file in by_gt.items():
        ref, ref_img = read_mask(gt_file, binary_ok=binary_ok)
        pf = pairs.get(gt_stem)
        pred = None
        if pf is not None:
            pred, pred_img = read_mask(pf, binary_ok=binary_ok)
            if pred.shape != ref.shape:
                raise user_error(f"a prediction of the reference's shape {ref.shape} ({gt_file.name})",
                                 f"shape {pred.shape}", pf, "predict on the reference grid (medsight predict does)")
            if not (ref_img.is_raster or pred_img.is_raster) and not np.allclose(
                    pred_img.spacing, ref_img.spacing, rtol=1e-3, atol=1e-4):
                log.warning("%s: spacing %s differs from the reference's %s; using the reference's",
                            pf.name, pred_img.spacing, ref_img.spacing)
        roi = None
        if roi_dir is not None:
            rf = rois.get(gt_stem)
            if rf is None:
                raise user_error(f"a region-of-interest mask for {gt_file.name}", "none", roi_dir,
                                 "add the mask, or drop --roi-dir")
            roi_img = read_label_map(rf, binary=True)
            if roi_img.shape != ref.shape:
                raise user_error(f"a mask of the reference's shape {ref.shape}", f"shape {roi_img.shape}", rf,
                                 "use the mask that belongs to this image")
            roi = roi_img.array[0].astype(bool)
        prob = None
        if pf is not None and prob_dir is not None:
            npz_file = probs.get(file_stem(pf))
            if npz_file is None:
                n_prob_missing += 1
            else:
                prob = read_probabilities(npz_file, ref.shape)
        spacing = None if ref_img.is_raster else ref_img.spacing
        case_id = file_stem(pf) if pf is not None else gt_stem
        evaluator.add(case_id, pred, ref, spacing=spacing, prob=prob, roi=roi,
                      extra={"prediction": pf.name if pf is not None else "", "reference": gt_file.name})
    if n_prob_missing:
        notes.append(f"{n_prob_missing} prediction(s) without a probability file: no AUC for them")
        log.warning("%s", notes[-1])

    rows = evaluator.rows
    summary = evaluator.summary(bootstrap=bootstrap, seed=seed)
    summary.update(
        pred_dir=str(pred_dir), gt_dir=str(gt_dir),
        roi_dir=str(roi_dir) if roi_dir is not None else None, prob_dir=str(prob_dir) if prob_dir is not None else None,
        match_rule=rule, missing=list(missing), unmatched_predictions=list(unmatched), warnings=notes,
    )
    per_case_csv = write_text(out / "per_case.csv", rows_to_csv(rows))
    summary_json = write_text(out / "summary.json", json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
    log.info("evaluated %d case(s): %s, %s", len(evaluator), per_case_csv, summary_json)
    return EvaluationResult(rows=rows, summary=summary, labels=dict(evaluator.labels), per_case_csv=per_case_csv,
                            summary_json=summary_json, missing=missing, unmatched=unmatched, match_rule=rule,
                            warnings=tuple(notes))


__all__ = ["EvaluationResult", "evaluate_folders"]
