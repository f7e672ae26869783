"""Self-configuring classification: plan -> preprocess -> train folds -> calibrate -> threshold -> predict.

Run-folder layout::

    RUN/plans.json  splits.json  config.json  preprocessed/{images.npy, index.json}
        fold_<k>/{checkpoint_best.pt, checkpoint_last.pt, metrics.csv, curves.png, calibration.json,
                  validation/predictions.csv}
        validation/{metrics.json, predictions.csv, roc.png, pr.png, reliability.png, confusion.png, heatmaps/}
        calibration.json  summary.json  report.html

Calibration is fitted on validation data only: each fold's temperature on its own validation cases, then the
decision threshold (Youden's J, or a target sensitivity) on the pooled, calibrated out-of-fold probabilities.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.core.atomic import write_text
from medsight.core.outputs import check_new_output
from medsight.core.pinned import is_pinned, read_text
from medsight.core.tables import json_safe
from medsight.data.dataset import DatasetSpec, load_case, load_dataset
from medsight.data.fingerprint import compute_fingerprint
from medsight.data.sanity import check_input
from medsight.data.splits import fold_list, load_or_create_splits
from medsight.data.validate import require_valid_dataset
from medsight.engine import distributed
from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.config import RunOptions
from medsight.engine.folds import train_folds
from medsight.engine.parallel import train_folds_in_parallel as parallel_folds
from medsight.engine.run import BEST, fold_temperatures
from medsight.engine.run import fold_dir as run_fold_dir
from medsight.engine.runtime import load_networks
from medsight.errors import MedsightError, user_error
from medsight.io import read_image
from medsight.io.cases import input_cases
from medsight.metrics import classification as cm
from medsight.metrics.auc import macro_auc
from medsight.metrics.classification import choose_threshold, fit_temperature
from medsight.report import plots
from medsight.report.card import write_model_card
from medsight.tasks.classification.plan import ClassificationPlan, load_plan, make_classification_plan
from medsight.tasks.classification.report import write_classification_report
from medsight.tasks.classification.trainer import ClassificationTrainer, predict_logits, probabilities
from medsight.tasks.classification.uncertainty import classification_review_threshold, image_uncertainty
from medsight.transforms.classification import (
    ClassificationCache,
    encode_tabular,
    fit_tabular,
    label_array,
    prepare_image,
    preprocess_classification,
)
from medsight.transforms.synthetic import check_ratio, prepare_synthetic_classification

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


def load_classification_dataset(path: str | Path) -> DatasetSpec:
    spec = load_dataset(path)
    if spec.task != "classification":
        raise user_error("a classification dataset (a CSV of image,label; a MedMNIST .npz; or one folder per class)",
                         f"a {spec.task} dataset", path, "pass --task segmentation, or point at class-labelled images")
    if not spec.cases:
        raise user_error("labelled images", "none", path, "add images to the dataset")
    return spec


def _multilabel(spec: DatasetSpec) -> bool:
    return bool(spec.extra.get("multilabel"))


def plan_classification(dataset: str | Path, out: str | Path, *, network: str | None = None, tabular: list[str] | None = None,
                        network_args: dict[str, Any] | None = None, progress: Callable[[int, int], None] | None = None
                        ) -> ClassificationPlan:
    """Fingerprint a classification dataset and write ``out/plans.json`` (``out`` is a run folder or a .json path)."""
    spec = load_classification_dataset(dataset)
    if tabular and spec.layout != "csv":
        raise user_error("a CSV dataset for --tabular columns", f"a {spec.layout} dataset", dataset, "list the columns in a CSV")
    require_valid_dataset(spec)
    fp = compute_fingerprint(spec, progress=progress)
    names = sorted(spec.labels, key=spec.labels.__getitem__)
    labels = [c.class_label for c in spec.cases if c.class_label is not None]
    plan = make_classification_plan(fp, dataset=spec.name, class_names=names, labels=labels, multilabel=_multilabel(spec),
                                    network=network, gpu=torch.cuda.is_available(),
                                    tabular=fit_tabular(list(spec.cases), list(tabular or []), dataset))
    if network_args:
        plan = plan.with_changes(network_args=dict(network_args))
    out = Path(out)
    plan.save(out if out.suffix == ".json" else out / "plans.json")
    return plan


def _strata(spec: DatasetSpec) -> list[str]:
    return [str(c.class_label) for c in spec.cases]


def train_classification(
    dataset: str | Path,
    run_dir: str | Path,
    *,
    folds: list[int] | str = "0",
    config: RunOptions | None = None,
    plan_path: str | Path | None = None,
    network: str | None = None,
    tabular: list[str] | None = None,
    init_from: str | Path | None = None,
    freeze_encoder: bool = False,
    num_folds: int = 5,
    progress: Progress | None = None,
    synthetic: str | Path | None = None,
    synthetic_ratio: float = 0.5,
    devices: Sequence[str] | None = None,
    finalize: bool = True,
) -> dict[str, Any]:
    """Train one or more folds of a classification dataset into ``run_dir``; returns the run summary.

    Args:
        dataset: a CSV (image,label[,columns]), a MedMNIST ``.npz`` or a folder with one sub-folder per class.
        run_dir: output folder; ``plans.json`` and ``splits.json`` are created or reused there.
        folds: fold indices, or ``"all"`` (train on every case, no validation). A dataset with its own
            train/val split (MedMNIST) has one fold, 0, which is that split.
        config: run-time options (epochs or time budget, seed, device, resume, patience).
        plan_path: use this plans.json instead of planning.
        network: architecture when planning (resnet18, resnet50, densenet121, smallcnn, cnnlstm, vit).
        tabular: CSV columns fused with the image features (when planning).
        init_from: a medsight checkpoint whose matching weights initialise the network (fine-tuning).
        freeze_encoder: train only the head (and tabular branch) on top of the initialised encoder.
        num_folds: folds of the cross-validation split.
        progress: callback receiving progress events.
        synthetic: a folder of synthetic cases (``medsight synthesize sample``) mixed into training batches only.
        synthetic_ratio: probability that a training sample is drawn from ``synthetic``.
        devices: train the folds side by side, one worker process per entry (:mod:`medsight.engine.parallel`).
        finalize: write config.json, then calibrate over the pooled folds and write the summary and report;
            ``False`` in the worker processes of a parallel run, which leave that to the calling process.
    """
    config = config or RunOptions()
    ranks = distributed.init(config.device)  # under torchrun: rank 0 plans and preprocesses, the others wait for it
    if not ranks.is_main:
        distributed.barrier()
    spec = load_classification_dataset(dataset)
    require_valid_dataset(spec)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    target = run / "plans.json"
    if plan_path is not None:
        plan = load_plan(plan_path)
        plan.save(target)
    elif target.is_file():
        plan = load_plan(target)
        if network and plan.network != network:
            raise user_error(f"the run's network {plan.network}", network, target, "use another --out, or delete plans.json to re-plan")
    else:
        plan = plan_classification(dataset, run, network=network, tabular=tabular)
    if freeze_encoder and not plan.freeze_encoder:
        plan = plan.with_changes(freeze_encoder=True)
        plan.save(target)
    names = sorted(spec.labels, key=spec.labels.__getitem__)
    if names != plan.class_names:
        raise user_error(f"the plan's classes {plan.class_names}", names, target, "re-plan for this dataset (delete plans.json)")

    def pp(done: int, total: int) -> None:
        if progress:
            progress({"kind": "preprocess", "done": done, "total": total})

    cache = preprocess_classification(spec, plan, run / "preprocessed", progress=pp)
    syn_cache = None
    if synthetic is not None:  # never in splits, validation, calibration or reports

        synthetic_ratio = check_ratio(synthetic_ratio)
        syn_cache = prepare_synthetic_classification(synthetic, plan, run / "preprocessed_synthetic")
    splits = load_or_create_splits(run / "splits.json", cache.ids, k=num_folds, strata=_strata(spec),
                                   predefined=spec.predefined_split)
    if finalize:  # a parallel run's workers leave the run's config.json to the calling process
        write_text(run / "config.json", json.dumps({"dataset": str(Path(dataset).resolve()), "task": "classification",
                                                    "init_from": str(init_from) if init_from else None, "train": asdict(config),
                                                    **({"synthetic": {"dir": str(synthetic), "ratio": synthetic_ratio,
                                                                      "cases": len(syn_cache.ids)}} if syn_cache else {})}, indent=2))
    if ranks.is_main:
        distributed.barrier()
    if devices:
        results = parallel_folds(train_classification, dataset, run, folds=fold_list(folds), devices=devices, progress=progress,
                                 kwargs={"config": config, "init_from": init_from, "num_folds": num_folds,
                                         "synthetic": synthetic, "synthetic_ratio": synthetic_ratio})
        return (finalize_classification(run, num_folds=len(splits)) if finalize else {}) | {"trained_now": results}

    def train_one(fold: int | str, where: Path, train_ids: list[str], val_ids: list[str]) -> dict[str, Any]:
        res = ClassificationTrainer(plan, cache, train_ids, val_ids, where, config, init_from=init_from, progress=progress,
                                    synthetic=syn_cache, synthetic_ratio=synthetic_ratio).fit()
        if val_ids and ranks.is_main:
            res["validation"] = calibrate_fold(plan, cache, where, val_ids, device=config.device)
        return res

    results = train_folds(run, folds, list(cache.ids), splits, train_one, progress=progress)
    if not ranks.is_main:  # rank 0 alone calibrates, writes the summary and the report
        return {"trained_now": results, "rank": ranks.rank}
    if not finalize:
        return {"trained_now": results}
    summary = finalize_classification(run, num_folds=len(splits))
    summary["trained_now"] = results
    return summary


def _load_models(checkpoints: list[Path], device: torch.device) -> list[torch.nn.Module]:

    return [model_from_checkpoint(load_checkpoint(c)).to(device) for c in checkpoints]


def _tta_axes(plan: ClassificationPlan) -> tuple[int, ...]:
    return tuple(a for a in plan.augment.mirror_axes if a < plan.dims)


def calibrate_fold(plan: ClassificationPlan, cache: ClassificationCache, fold_dir: Path, val_ids: list[str], *,
                   device: str | None = None) -> dict[str, Any]:
    """Validation logits of the fold's best checkpoint (with flip TTA), its temperature, and its predictions."""

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = _load_models([fold_dir / BEST], dev)[0]
    rows = cache.rows(val_ids)
    logits = predict_logits(model, cache.images[rows], cache.tabular[rows] if cache.tabular.size else None, device=dev,
                            mirror_axes=_tta_axes(plan))
    y = cache.labels[rows]
    temperature = fit_temperature(logits, y, multilabel=plan.multilabel)
    write_text(fold_dir / "calibration.json", json.dumps({"temperature": temperature, "cases": len(val_ids)}, indent=2))
    probs = probabilities(logits, plan.multilabel, temperature)
    write_text(fold_dir / "validation" / "predictions.csv",
               predictions_csv(val_ids, probs, plan, labels=y, thresholds=None, logits=logits))

    return {"auc": macro_auc(y, probs, plan.multilabel), "temperature": temperature, "cases": len(val_ids)}


def decide_thresholds(plan: ClassificationPlan, probs: np.ndarray, y: np.ndarray) -> list[float] | None:
    """Decision thresholds chosen on validation data: binary -> [t]; multi-label -> one per class; else None."""

    method = "sensitivity" if plan.target_sensitivity else "youden"
    kw = {"method": method, "target_sensitivity": plan.target_sensitivity} if plan.target_sensitivity else {"method": method}
    if plan.multilabel:
        return [choose_threshold(y[:, c] > 0.5, probs[:, c], **kw) for c in range(plan.num_classes)]  # type: ignore[arg-type]
    if plan.num_classes == 2:
        return [choose_threshold(y == 1, probs[:, 1], **kw)]  # type: ignore[arg-type]
    return None


def finalize_classification(run: Path, *, num_folds: int) -> dict[str, Any]:
    """Pool out-of-fold validation predictions: thresholds, metrics with CIs, plots, summary and report."""

    plan = load_plan(run / "plans.json")
    done = [k for k in range(num_folds) if (run_fold_dir(run, k) / "validation" / "predictions.csv").is_file()]
    summary: dict[str, Any] = {"dataset": plan.dataset, "task": "classification", "folds_with_validation": done,
                               "num_folds": num_folds, "plan": str(run / "plans.json"), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    temps = {k: t for k, t in sorted(fold_temperatures(run).items(), key=lambda kv: int(kv[0])) if k.isdigit()}
    calibration: dict[str, Any] = {"temperature": temps, "thresholds": None, "method": plan.threshold_method}
    if done:
        ids, probs, y = [], [], []
        for k in done:
            i, p, t = read_predictions(run_fold_dir(run, k) / "validation" / "predictions.csv", plan)
            ids += i
            probs.append(p)
            y.append(t)
        P, Y = np.concatenate(probs), np.concatenate(y)
        thresholds = decide_thresholds(plan, P, Y)
        calibration.update(thresholds=thresholds, decided_on=f"{len(ids)} out-of-fold validation cases")
        metrics = write_evaluation(run / "validation", ids, P, Y, plan, thresholds)
        summary["cross_validation"] = {k: metrics.get(k) for k in ("n", "auc", "accuracy", "balanced_accuracy", "f1",
                                                                    "sensitivity", "specificity", "ece", "ci95")}
        summary["thresholds"] = thresholds
    write_text(run / "calibration.json", json.dumps(json_safe(calibration), indent=2))
    write_text(run / "summary.json", json.dumps(json_safe(summary), indent=2))

    write_classification_report(run, plan)

    write_model_card(run, plan)  # MODEL_CARD.md + model_card.json: data, validation with CIs, limits, weights' SHA-256
    return summary


# ---------------------------------------------------------------------------------------------- tables
def predicted_names(probs: np.ndarray, plan: ClassificationPlan, thresholds: list[float] | None) -> list[str]:
    names = plan.class_names
    if plan.multilabel:
        t = thresholds or [0.5] * len(names)
        return [";".join(n for n, p, th in zip(names, row, t) if p >= th) for row in probs]
    if len(names) == 2:
        cut = thresholds[0] if thresholds else 0.5
        return [names[int(p >= cut)] for p in probs[:, 1]]
    return [names[i] for i in probs.argmax(1)]


def _label_text(y: Any, plan: ClassificationPlan) -> str:
    if plan.multilabel:
        return ";".join(n for n, v in zip(plan.class_names, np.asarray(y).ravel()) if v > 0.5)
    return plan.class_names[int(y)]


def predictions_csv(files: list[str], probs: np.ndarray, plan: ClassificationPlan, *, labels: np.ndarray | None,
                    thresholds: list[float] | None, logits: np.ndarray | None = None,
                    uncertainty: np.ndarray | None = None, review_above: float | None = None) -> str:
    """``file, prob_<class>..., pred[, label][, logit_<class>...][, uncertainty, review]`` as CSV text.

    ``review`` is ``uncertainty > review_above`` (empty when the run has no threshold).
    """
    buf = io.StringIO()
    w = csv.writer(buf)
    header = ["file", *[f"prob_{n}" for n in plan.class_names], "pred"]
    if labels is not None:
        header.append("label")
    if logits is not None:
        header += [f"logit_{n}" for n in plan.class_names]
    if uncertainty is not None:
        header += ["uncertainty", "review"]
    w.writerow(header)
    preds = predicted_names(probs, plan, thresholds)
    for i, f in enumerate(files):
        row = [f, *[f"{p:.6f}" for p in probs[i]], preds[i]]
        if labels is not None:
            row.append(_label_text(labels[i], plan))
        if logits is not None:
            row += [f"{v:.6f}" for v in logits[i]]
        if uncertainty is not None:
            row += [f"{uncertainty[i]:.6f}", "" if review_above is None else str(bool(uncertainty[i] > review_above)).lower()]
        w.writerow(row)
    return buf.getvalue()


def read_predictions(path: Path, plan: ClassificationPlan) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(files, probabilities, labels) from a predictions.csv that has a ``label`` column."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "label" not in rows[0]:
        raise user_error("a predictions.csv with a label column", "none", path, "predict on labelled data")
    probs = np.asarray([[float(r[f"prob_{n}"]) for n in plan.class_names] for r in rows], dtype=float)
    if plan.multilabel:
        y = np.asarray([[float(n in r["label"].split(";")) for n in plan.class_names] for r in rows], dtype=np.float32)
    else:
        idx = plan.labels
        y = np.asarray([idx[r["label"]] for r in rows], dtype=np.int64)
    return [r["file"] for r in rows], probs, y


def write_evaluation(out: Path, files: list[str], probs: np.ndarray, y: np.ndarray, plan: ClassificationPlan,
                     thresholds: list[float] | None, *, uncertainty: np.ndarray | None = None,
                     review_above: float | None = None) -> dict[str, Any]:
    """metrics.json (with bootstrap CIs), predictions.csv and ROC / PR / reliability / confusion plots in ``out``."""

    out.mkdir(parents=True, exist_ok=True)
    metrics = cm.classification_metrics(y, probs, plan.class_names, multilabel=plan.multilabel, thresholds=thresholds)
    write_text(out / "metrics.json", json.dumps(json_safe(metrics), indent=2))
    write_text(out / "predictions.csv", predictions_csv(files, probs, plan, labels=y, thresholds=thresholds,
                                                        uncertainty=uncertainty, review_above=review_above))
    try:
        plots.plot_roc(y, probs, plan.class_names, out / "roc.png", multilabel=plan.multilabel)
        plots.plot_precision_recall(y, probs, plan.class_names, out / "pr.png", multilabel=plan.multilabel)
        plots.plot_reliability(y, probs, out / "reliability.png", multilabel=plan.multilabel)
        matrix = metrics.get("confusion_matrix")
        if isinstance(matrix, list):
            plots.plot_confusion(np.asarray(matrix), plan.class_names, out / "confusion.png")
    except (ValueError, OSError) as exc:  # a plot must never cost the metrics
        log.warning("could not draw the evaluation plots in %s: %s", out, exc)
    return metrics


# ---------------------------------------------------------------------------------------------- predict
class ClassificationPredictor:
    """The run's fold networks with their temperatures and the validated thresholds."""

    def __init__(self, run_dir: str | Path, *, folds: list[int] | None = None, device: str | None = None, tta: bool = True,
                 engine: str = "torch") -> None:

        run = Path(run_dir)  # a run folder, or an export of one (medsight export)
        plan = load_plan(run / "plans.json")
        self.plan = plan
        self.device = torch.device("cpu" if engine == "onnx" else device or ("cuda" if torch.cuda.is_available() else "cpu"))
        ckpts, self.models = load_networks(run, folds=folds, engine=engine, device=self.device)
        cal_file = run / "calibration.json"  # the hashed bytes during a checked prediction (core.pinned)
        cal = json.loads(read_text(cal_file)) if is_pinned(cal_file) or cal_file.is_file() else {}
        temps = cal.get("temperature") or {}
        self.temperatures = [float(temps.get(c.parent.name.split("_", 1)[1], 1.0)) for c in ckpts]
        self.thresholds: list[float] | None = cal.get("thresholds")
        self.mirror_axes = _tta_axes(plan) if tta else ()
        self.checkpoints = ckpts

    def probabilities(self, images: np.ndarray, tabular: np.ndarray | None = None) -> np.ndarray:
        """Calibrated class probabilities ``(N, K)`` averaged over folds, for preprocessed images."""
        total = None
        for model, t in zip(self.models, self.temperatures):
            logits = predict_logits(model, images, tabular, device=self.device, mirror_axes=self.mirror_axes)
            p = probabilities(logits, self.plan.multilabel, t)
            total = p if total is None else total + p
        assert total is not None
        return total / len(self.models)


def _labelled_inputs(inp: Path, split: str | None) -> DatasetSpec | None:
    """A labelled dataset as input (CSV, NPZ, folder per class) or None for plain files."""
    if inp.is_file() and inp.suffix.lower() in (".npz", ".csv"):
        spec = load_dataset(inp)
        if spec.layout == "npz":
            chosen = split or ("test" if spec.test_cases else None)
            pool = {"test": spec.test_cases}.get(chosen or "", ())
            if chosen == "test":
                cases = pool
            elif chosen:
                cases = tuple(c for c in spec.cases if c.npz is not None and c.npz[1] == chosen)
            else:
                cases = spec.cases
            if not cases:
                raise user_error("cases in the chosen split", f"none for split {chosen!r}", inp, "use --split train, val or test")
            spec = replace(spec, cases=tuple(cases))
        return spec
    if inp.is_dir():
        try:
            spec = load_dataset(inp)
        except MedsightError:
            return None
        return spec if spec.task == "classification" else None
    return None


def predict_classification(run_dir: str | Path, input_path: str | Path, output: str | Path, *, split: str | None = None,
                           folds: list[int] | None = None, device: str | None = None, tta: bool = True, series_uid: str | None = None,
                           progress: Callable[[int, int], None] | None = None, engine: str = "torch",
                           strict: bool = False, overwrite: bool = False, uncertainty: bool = False) -> list[Path]:
    """Classify a file, a folder of images, a DICOM series, or a labelled dataset (CSV / NPZ split / class folders).

    Writes ``OUTPUT/predictions.csv`` (``file``, ``prob_<class>``..., ``pred``; ``label`` when known) and, for
    labelled input, ``metrics.json`` and plots scored with the thresholds chosen on validation data.
    ``run_dir`` may be an export; ``engine`` (``torch`` or ``onnx``) and ``strict`` as in
    :func:`medsight.tasks.segmentation.pipeline.predict`. ``uncertainty`` adds the columns ``uncertainty`` (normalised
    entropy of the fold-mean probability) and ``review`` (above the threshold chosen on the run's validation
    predictions, :mod:`medsight.tasks.classification.uncertainty`).
    """

    inp = Path(input_path)
    if not inp.exists():
        raise user_error("an existing input file or folder", "nothing", inp, "check the path")
    pred = ClassificationPredictor(run_dir, folds=folds, device=device, tta=tta, engine=engine)
    plan = pred.plan
    out = Path(output)
    for name in ("predictions.csv", "metrics.json"):
        check_new_output(out / name, [inp], overwrite=overwrite)
    spec = _labelled_inputs(inp, split)
    names: list[str] = []
    arrays, tab, labels = [], [], []
    if spec is not None:
        for i, ref in enumerate(spec.cases):
            case = load_case(spec, ref)
            check_input(case.image, plan, where=ref.case_id if ref.npz is not None else ref.images[0], strict=strict)
            arrays.append(prepare_image(case.image, plan))
            tab.append(encode_tabular(dict(ref.columns), plan.tabular))
            labels.append(case.label)
            names.append(ref.case_id if ref.npz is not None else str(ref.images[0]))
            if progress:
                progress(i + 1, len(spec.cases))
    else:

        if plan.tabular:
            raise user_error("a CSV with the tabular columns " + ", ".join(plan.tabular.get("columns", [])), "plain images", inp,
                             "predict on a CSV that has those columns")
        cases = input_cases(inp, len(plan.channel_names))
        for i, (_cid, files) in enumerate(cases):
            parts = [read_image(f, series_uid=series_uid) for f in files]
            image = parts[0] if len(parts) == 1 else parts[0].with_array(np.concatenate([p.array for p in parts]))
            check_input(image, plan, where=files[0], strict=strict)
            arrays.append(prepare_image(image, plan))
            names.append(str(files[0]))
            if progress:
                progress(i + 1, len(cases))
    images = np.stack(arrays)
    tabular = np.stack(tab) if tab and plan.tabular else None
    probs = pred.probabilities(images, tabular)
    unc = image_uncertainty(probs, plan.multilabel) if uncertainty else None
    review_above = classification_review_threshold(Path(run_dir), plan) if uncertainty else None
    if uncertainty and review_above is None:
        log.warning("%s has no pooled validation predictions: uncertainty is written without a review flag", run_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if spec is not None and all(lab is not None for lab in labels):

        y = label_array(labels, plan.num_classes, plan.multilabel)
        metrics = write_evaluation(out, names, probs, y, plan, pred.thresholds, uncertainty=unc, review_above=review_above)
        written += [out / "metrics.json"]
        log.info("scored %d labelled cases: AUC %s, accuracy %s", len(names), metrics.get("auc"), metrics.get("accuracy"))
    else:
        write_text(out / "predictions.csv", predictions_csv(names, probs, plan, labels=None, thresholds=pred.thresholds,
                                                            uncertainty=unc, review_above=review_above))
    written.insert(0, out / "predictions.csv")
    return written
