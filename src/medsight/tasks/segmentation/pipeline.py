"""Self-configuring segmentation: plan -> preprocess -> train folds -> validate -> postprocess -> predict.

Run-folder layout::

    RUN/plans.json  splits.json  config.json  preprocessed/
        fold_<k>/{checkpoint_best.pt, checkpoint_last.pt, metrics.csv, curves.png, validation/}
        validation/ (pooled per-case metrics after all folds)  summary.json  report.html
        uncertainty.json (review threshold and its validation, :mod:`medsight.tasks.segmentation.uncertainty`)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.core.atomic import write_text
from medsight.core.case import Case
from medsight.core.outputs import check_new_output
from medsight.core.tables import json_safe
from medsight.data.dataset import DatasetSpec, load_case, load_dataset
from medsight.data.fingerprint import compute_fingerprint
from medsight.data.sanity import check_input
from medsight.data.splits import fold_list, load_or_create_splits
from medsight.data.validate import require_valid_dataset
from medsight.engine import distributed
from medsight.engine.config import RunOptions
from medsight.engine.folds import train_folds
from medsight.engine.parallel import train_folds_in_parallel as parallel_folds
from medsight.engine.run import BEST, fold_dir, run_dataset_json
from medsight.errors import MedsightError, user_error
from medsight.io import full_suffix, read_image, strip_suffix, write_image
from medsight.io.cases import input_cases, output_suffix, write_probabilities
from medsight.io.dicom_seg import dataset_colours, require_series_input, write_dicom_seg
from medsight.io.rtstruct import require_rtstruct_input, write_rtstruct
from medsight.metrics.summary import SegmentationEvaluator, rows_to_csv
from medsight.report.card import write_model_card
from medsight.report.segmentation import write_segmentation_report
from medsight.tasks.segmentation.plan import Plan, make_plan
from medsight.tasks.segmentation.predictor import Predictor, segmentation_predictor
from medsight.tasks.segmentation.trainer import SegmentationTrainer
from medsight.tasks.segmentation.uncertainty import (
    MAP_SUFFIX,
    UNCERTAINTY_CSV,
    map_path,
    read_threshold,
    run_uncertainty,
    uncertainty_csv,
    write_uncertainty_map,
)
from medsight.transforms.cache import CaseCache, preprocess_dataset
from medsight.transforms.postprocess import decide_component_rules, postprocess_labels
from medsight.transforms.synthetic import check_ratio, prepare_synthetic_segmentation

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


def load_segmentation_dataset(path: str | Path) -> DatasetSpec:
    spec = load_dataset(path)
    if spec.task != "segmentation":
        raise user_error("a segmentation dataset (images with label maps)", f"a {spec.task} dataset", path,
                         "pass --task classification, or point at images with masks")
    labelled = [c for c in spec.cases if c.label is not None and c.label.exists()]
    if not labelled:
        raise user_error("label maps beside the images", "no label files", path, "add a labels/ (or masks/) folder with matching names")
    if len(labelled) != len(spec.cases):
        missing = next(c for c in spec.cases if c.label is None or not c.label.exists())
        raise user_error("a label map for every training image", f"{len(spec.cases) - len(labelled)} image(s) without one, "
                         f"first {missing.images[0]}", path, "add the missing label(s), or move unlabelled images out of "
                         "the training folder (e.g. into imagesTs) and predict them after training")
    return spec


def default_base_filters() -> int:
    """32 (nnU-Net) with a GPU; 16 on a CPU so a model trains in minutes rather than days."""
    return 32 if torch.cuda.is_available() else 16


def plan_dataset(dataset: str | Path, out: str | Path, *, base_filters: int | None = None, voxel_budget: int | None = None,
                 min_batch: int | None = None, strided_first_stage: bool | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Plan:
    """Fingerprint a dataset and write ``out/plans.json`` (``out`` is a run folder or a .json path).
    ``strided_first_stage``: as :func:`make_plan` (``None``: its default for the dimensionality)."""
    spec = load_segmentation_dataset(dataset)
    require_valid_dataset(spec)
    fp = compute_fingerprint(spec, progress=progress)
    plan = make_plan(fp, dataset=spec.name, labels=spec.labels, binary_masks=spec.binary_masks, voxel_budget=voxel_budget,
                     base_filters=base_filters or default_base_filters(), min_batch=min_batch or 2,
                     strided_first_stage=strided_first_stage)
    out = Path(out)
    plan.save(out if out.suffix == ".json" else out / "plans.json")
    return plan


def _ensure_plan(spec_path: str | Path, run: Path, *, plan_path: Path | None, base_filters: int | None) -> Plan:
    target = run / "plans.json"
    if plan_path is not None:
        plan = Plan.load(plan_path)
        plan.save(target)
        return plan
    if target.is_file():
        return Plan.load(target)
    return plan_dataset(spec_path, run, base_filters=base_filters)


def train(
    dataset: str | Path,
    run_dir: str | Path,
    *,
    folds: list[int] | str = "0",
    config: RunOptions | None = None,
    plan_path: str | Path | None = None,
    base_filters: int | None = None,
    num_folds: int = 5,
    progress: Progress | None = None,
    synthetic: str | Path | None = None,
    synthetic_ratio: float = 0.5,
    devices: Sequence[str] | None = None,
    finalize: bool = True,
) -> dict[str, Any]:
    """Train one or more folds of a segmentation dataset into ``run_dir``.

    Args:
        dataset: folder, dataset.json, etc. (see :func:`medsight.data.dataset.load_dataset`).
        run_dir: output folder; ``plans.json`` and ``splits.json`` are created or reused there.
        folds: fold indices, or ``"all"`` to train on every case without validation (nnU-Net's fold ``all``).
        config: run-time options (epochs or time budget, seed, device, resume).
        plan_path: use this plans.json instead of planning.
        base_filters: network width when planning (default 32 on GPU, 16 on CPU).
        num_folds: folds of the cross-validation split.
        progress: callback receiving progress events (``kind`` = ``preprocess``/``step``/``epoch``/``fold``).
        synthetic: a folder of synthetic cases (``medsight synthesize sample``) mixed into training batches only.
        synthetic_ratio: probability that a training sample is drawn from ``synthetic``.
        devices: train the folds side by side, one worker process per entry (``["cuda:0", "cuda:1"]``, or ``cpu``
            repeated to share the CPU's cores), see :mod:`medsight.engine.parallel`; default: one after another here.
        finalize: write config.json, then pool the folds, decide postprocessing and write the summary and report
            afterwards; ``False`` in the worker processes of a parallel run, which leave that to the calling process.

    Returns:
        The run summary (also written to ``run_dir/summary.json``).
    """
    config = config or RunOptions()
    ranks = distributed.init(config.device)  # under torchrun: rank 0 plans and preprocesses, the others wait for it
    if not ranks.is_main:
        distributed.barrier()
    spec = load_segmentation_dataset(dataset)
    require_valid_dataset(spec)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    plan = _ensure_plan(dataset, run, plan_path=Path(plan_path) if plan_path else None, base_filters=base_filters)
    if set(plan.labels.values()) != set(spec.labels.values()):
        raise user_error(f"dataset labels {plan.labels}", spec.labels, run / "plans.json", "re-plan for this dataset (delete plans.json)")

    def pp(done: int, total: int) -> None:
        if progress:
            progress({"kind": "preprocess", "done": done, "total": total})

    ids = preprocess_dataset(spec, plan, run / "preprocessed", progress=pp)
    splits = load_or_create_splits(run / "splits.json", ids, k=num_folds)
    syn_ids: list[str] = []
    if synthetic is not None:  # preprocessed beside the real cases; never in splits, validation or reports

        synthetic_ratio = check_ratio(synthetic_ratio)
        syn_ids = prepare_synthetic_segmentation(synthetic, plan, run / "preprocessed", real_ids=ids)
    if finalize:  # a parallel run's workers leave the run's config.json to the calling process
        write_text(run / "config.json", json.dumps({"dataset": str(Path(dataset).resolve()), "train": asdict(config),
                                                    **({"synthetic": {"dir": str(synthetic), "ratio": synthetic_ratio,
                                                                      "cases": len(syn_ids)}} if syn_ids else {})}, indent=2))
    if ranks.is_main:
        distributed.barrier()
    if devices:
        results = parallel_folds(train, dataset, run, folds=fold_list(folds), devices=devices, progress=progress,
                                 kwargs={"config": config, "base_filters": base_filters, "num_folds": num_folds,
                                         "synthetic": synthetic, "synthetic_ratio": synthetic_ratio})
        return (finalize_run(spec, run, num_folds=len(splits)) if finalize else {}) | {"trained_now": results}
    cache = CaseCache(run / "preprocessed", ids + syn_ids)

    def train_one(fold: int | str, where: Path, train_ids: list[str], val_ids: list[str]) -> dict[str, Any]:
        res = SegmentationTrainer(plan, cache, train_ids, val_ids, where, config, progress=progress,
                                  synthetic_ids=syn_ids, synthetic_ratio=synthetic_ratio).fit()
        if val_ids and ranks.is_main:
            res["validation"] = validate_fold(spec, run, where, val_ids, device=config.device)
        return res

    results = train_folds(run, folds, ids, splits, train_one, progress=progress)
    if not ranks.is_main:  # rank 0 alone validates, writes the summary and the report
        return {"trained_now": results, "rank": ranks.rank}
    if not finalize:
        return {"trained_now": results}
    summary = finalize_run(spec, run, num_folds=len(splits))
    summary["trained_now"] = results
    return summary


def validate_fold(spec: DatasetSpec, run: Path, fold_dir: Path, val_ids: list[str], *, device: str | None = None,
                  tta: bool = True) -> dict[str, Any]:
    """Predict the fold's validation cases at native geometry (with mirror TTA), save probabilities, score them."""

    pred = Predictor.from_checkpoints([fold_dir / BEST], device=device, tta=tta)
    out = fold_dir / "validation"
    out.mkdir(parents=True, exist_ok=True)
    ev = SegmentationEvaluator(pred.plan.labels, absent=pred.plan.absent_labels)  # partial labels: not scored
    for cid in val_ids:
        case = load_case(spec, spec.case(cid))
        labels, probs = pred.predict_case(case)
        write_image(labels, out / f"{cid}.nii.gz")
        if probs is not None:
            write_probabilities(out / f"{cid}_probabilities.npz", probs)
        ref = case.label_array
        if ref is None:
            raise user_error("a label map for validation case", cid, spec.root, "check the dataset's label files")
        ev.add(cid, labels.array[0], ref, spacing=case.image.spacing,
               roi=case.mask.array[0] if case.mask is not None else None)
    write_text(out / "per_case.csv", rows_to_csv(ev.rows))
    summary = ev.summary()
    write_text(out / "summary.json", json.dumps(json_safe(summary), indent=2))
    return {"mean_dice": mean_dice_of(summary), "cases": len(val_ids)}


def mean_dice_of(summary: dict[str, Any]) -> float | None:
    """The mean over foreground labels of each label's mean Dice, from a :func:`medsight.metrics.summary.summarize`
    result (its ``foreground_mean``)."""
    value = (summary.get("foreground_mean") or {}).get("dice")
    return value.get("mean") if isinstance(value, dict) else value


def finalize_run(spec: DatasetSpec, run: Path, *, num_folds: int) -> dict[str, Any]:
    """When every fold has validation predictions: pool them, decide postprocessing, write summary and report."""

    plan = Plan.load(run / "plans.json")
    done = [k for k in range(num_folds) if (fold_dir(run, k) / "validation" / "summary.json").is_file()]
    summary: dict[str, Any] = {"dataset": spec.name, "folds_with_validation": done, "num_folds": num_folds,
                               "plan": str(run / "plans.json"), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if done:
        fg = [v for v in plan.labels.values() if v != 0]
        pooled = SegmentationEvaluator(plan.labels, absent=plan.absent_labels)  # partial labels: not scored
        cases = []
        for k in done:
            for f in sorted((fold_dir(run, k) / "validation").glob("*.nii.gz")):
                if not f.name.endswith(f"{MAP_SUFFIX}.nii.gz"):  # uncertainty maps lie beside the label maps
                    cases.append((strip_suffix(f), f))
        preds = {}
        for cid, f in cases:
            case = load_case(spec, spec.case(cid))
            ref = case.label_array
            if ref is None:
                raise user_error("a label map for validation case", cid, spec.root, "check the dataset's label files")
            pred = read_image(f).array[0]
            preds[cid] = (pred, ref, case.image.spacing, case.mask.array[0] if case.mask is not None else None)
        decision = decide_component_rules(((p, r) for p, r, _, _ in preds.values()), fg,
                                          allowed=plan.postprocessing.get("allowed", True), decided=len(done) == num_folds,
                                          absent=[plan.absent_labels.get(cid, []) for cid in preds])
        plan = plan.with_changes(postprocessing=decision)
        plan.save(run / "plans.json")
        for cid, (pred, ref, spacing, roi) in preds.items():
            pooled.add(cid, postprocess_labels(pred, decision), ref, spacing=spacing, roi=roi)
        vdir = run / "validation"
        write_text(vdir / "per_case.csv", rows_to_csv(pooled.rows))
        pooled_summary = pooled.summary()
        write_text(vdir / "summary.json", json.dumps(json_safe(pooled_summary), indent=2))
        summary["postprocessing"] = decision
        summary["cross_validation"] = {
            "cases": len(preds),
            "mean_dice": mean_dice_of(pooled_summary),
            "per_label_dice": {name: lab["metrics"]["dice"]["mean"] for name, lab in pooled_summary.get("labels", {}).items()},
        }
        try:  # review threshold, Spearman and AUROC on these validation cases: uncertainty.json
            unc = run_uncertainty(run)
            summary["uncertainty"] = {k: unc[k] for k in ("threshold", "spearman", "auroc", "n_failed", "flagged")} | {
                "dice_below": unc["goal"]["dice_below"]}
        except MedsightError as exc:  # e.g. folds validated before probabilities were saved: the rest still stands
            log.warning("no uncertainty threshold for %s: %s", run, exc)
    write_text(run / "summary.json", json.dumps(json_safe(summary), indent=2))

    images = {c.case_id: c.images[0] for c in spec.cases}
    refs = {c.case_id: c.label for c in spec.cases if c.label is not None}
    write_segmentation_report(run, images=images, references=refs)

    write_model_card(run, plan)  # MODEL_CARD.md + model_card.json: data, validation with CIs, limits, weights' SHA-256
    return summary


def predict(run_dir: str | Path, input_path: str | Path, output: str | Path, *, tta: bool = True, folds: list[int] | None = None,
            device: str | None = None, save_probabilities: bool = False, series_uid: str | None = None,
            progress: Callable[[int, int], None] | None = None, dicom_seg: bool = False, engine: str = "torch",
            strict: bool = False, rtstruct: bool = False, overwrite: bool = False, uncertainty: bool = False) -> list[Path]:
    """Segment a file, a folder of images or a DICOM series with the run's folds; returns the written files.

    Label maps are written in the input's geometry and format (NIfTI in -> NIfTI out, PNG in -> PNG out, DICOM ->
    NIfTI). Binary raster predictions are written as 0/255 so they are visible; others as label values.
    ``dicom_seg``: for a DICOM series input, also write ``<case>_seg.dcm`` (DICOM-SEG, :mod:`medsight.io.dicom_seg`).
    ``rtstruct``: also write ``<case>_rtstruct.dcm`` (RT Structure Set, :mod:`medsight.io.rtstruct`).
    ``uncertainty``: also write ``<case>_uncertainty<suffix>`` (the voxel uncertainty, normalised predictive entropy,
    float32 in NIfTI / 0-255 in PNG or TIFF) beside each label map, and ``uncertainty.csv`` (case, score, the run's
    threshold, review = score > threshold) in the output folder (:mod:`medsight.tasks.segmentation.uncertainty`).
    An output that is one of the inputs is refused; existing outputs are replaced only with ``overwrite``.
    ``run_dir`` may also be an export (``medsight export``); ``engine`` ``torch`` or ``onnx`` (onnxruntime) runs the
    same preprocessing, sliding window, TTA and postprocessing. Each input is checked against the training fingerprint
    first (:func:`medsight.data.sanity.check_input`: a warning, or a refusal with ``strict``).
    """

    inp = Path(input_path)
    if not inp.exists():
        raise user_error("an existing input file or folder", "nothing", inp, "check the path")
    predictor = segmentation_predictor(run_dir, folds=folds, device=device, tta=tta, engine=engine)
    plan = predictor.plan
    cases = input_cases(inp, len(plan.channel_names))
    out = Path(output)
    single_file_out = inp.is_file() and full_suffix(out) != ""
    written: list[Path] = []
    threshold = read_threshold(Path(run_dir)) if uncertainty else None
    if uncertainty and threshold is None:
        log.warning("%s has no uncertainty.json: scores are written without a review flag "
                    "(run 'medsight uncertainty %s' to choose the threshold)", run_dir, run_dir)
    scored: list[tuple[str, float, float | None]] = []
    csv_path = (out.parent if single_file_out else out) / UNCERTAINTY_CSV
    if uncertainty:
        check_new_output(csv_path, [f for _, fs in cases for f in fs], overwrite=overwrite)
    for i, (cid, files) in enumerate(cases):
        parts = [read_image(f, series_uid=series_uid) for f in files]
        image = parts[0] if len(parts) == 1 else parts[0].with_array(np.concatenate([p.array for p in parts]))
        if image.num_channels != len(plan.channel_names):
            raise user_error(f"{len(plan.channel_names)} channel(s) as in training ({', '.join(plan.channel_names)})",
                             f"{image.num_channels}", files[0], "give images with the training channels")
        if image.ndim != plan.dims:
            raise user_error(f"a {plan.dims}D image as in training", f"a {image.ndim}D image", files[0], "use the matching model")
        check_input(image, plan, where=files[0], strict=strict)
        if dicom_seg:
            require_series_input(image, files[0])
        if rtstruct:
            require_rtstruct_input(image, files[0])
        suffix = output_suffix(files, image.source.format)
        target = out if single_file_out else out / f"{cid}{suffix}"
        stem = target.parent / strip_suffix(target)
        for path in (target, *([Path(f"{stem}_seg.dcm")] if dicom_seg else []),
                     *([Path(f"{stem}_rtstruct.dcm")] if rtstruct else []),
                     *([target.parent / f"{cid}_probabilities.npz"] if save_probabilities else []),
                     *([map_path(target)] if uncertainty else [])):
            check_new_output(path, files, overwrite=overwrite)
        result = predictor.predict(Case(case_id=cid, image=image), with_probabilities=save_probabilities,
                                   with_uncertainty=uncertainty)
        labels, probs = result.labels, result.probabilities
        if suffix in (".png", ".tif", ".tiff", ".bmp") and plan.binary_masks:
            labels = labels.with_array((labels.array > 0).astype(np.uint8) * 255)
        write_image(labels, target)
        written.append(target)
        if result.uncertainty is not None and result.score is not None:
            written.append(write_uncertainty_map(result.uncertainty, map_path(target)))
            scored.append((cid, result.score, threshold))
        if dicom_seg or rtstruct:
            colours = dataset_colours(run_dataset_json(run_dir), plan.labels)
            uid = image.source.series_uid or None
        if dicom_seg:
            written.append(write_dicom_seg(labels, files[0], f"{stem}_seg.dcm", label_names=plan.labels, colours=colours,
                                           series_uid=uid))
        if rtstruct:
            written.append(write_rtstruct(labels, files[0], f"{stem}_rtstruct.dcm", label_names=plan.labels,
                                          colours=colours, series_uid=uid))
        if probs is not None:
            write_probabilities(target.parent / f"{cid}_probabilities.npz", probs)
        if progress:
            progress(i + 1, len(cases))
    if uncertainty:
        write_text(csv_path, uncertainty_csv(scored))
        written.append(csv_path)
    return written
