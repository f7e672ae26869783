"""Multi-task prediction: a mask per input (the segmentation predictor) and calibrated class probabilities.

The masks come from :class:`medsight.tasks.segmentation.predictor.Predictor` run on the networks' segmentation outputs (sliding
window, mirror TTA, fold mean, back to the input's geometry, the run's postprocessing); the class probabilities from
the encoder and classification head on the whole preprocessed image (padded to the plan's input size, left-right
flip TTA, each fold's temperature, mean over folds, the run's decision threshold). With a heat-map head, the
lesion centres (local maxima above 0.5) are listed too.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.core.atomic import write_text
from medsight.core.case import Case
from medsight.core.image import Image
from medsight.core.outputs import check_new_output
from medsight.core.pinned import is_pinned, read_text
from medsight.core.tables import json_safe
from medsight.data.dataset import load_case
from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.run import checkpoints, fold_name
from medsight.errors import MedsightError, user_error
from medsight.io import read_image, write_image
from medsight.io.cases import input_cases, output_suffix, write_probabilities
from medsight.metrics.summary import SegmentationEvaluator, rows_to_csv
from medsight.models.multitask import ClassificationView, MultitaskUNet, SegmentationView
from medsight.tasks.classification.pipeline import predictions_csv, write_evaluation
from medsight.tasks.classification.trainer import predict_logits, probabilities
from medsight.tasks.multitask.data import load_multitask_dataset
from medsight.tasks.multitask.heatmap import find_peaks
from medsight.tasks.multitask.plan import MultitaskPlan
from medsight.tasks.segmentation.predictor import Predictor
from medsight.transforms.cache import preprocess_case

log = logging.getLogger(__name__)


def pad_to(arr: np.ndarray, multiple: Sequence[int], minimum: Sequence[int] = ()) -> tuple[np.ndarray, tuple[int, ...]]:
    """Zero-pad ``(C, *S)`` symmetrically to at least ``minimum`` and a multiple of ``multiple`` per axis.

    Returns:
        The padded array and the padding added before each spatial axis.
    """
    shape = np.asarray(arr.shape[1:])
    low = np.maximum(shape, np.asarray(minimum, dtype=int)) if len(minimum) else shape
    target = (np.ceil(low / np.asarray(multiple)) * np.asarray(multiple)).astype(int)
    before = (target - shape) // 2
    pad = [(0, 0), *[(int(b), int(t - s - b)) for b, t, s in zip(before, target, shape)]]
    return np.pad(np.asarray(arr, dtype=np.float32), pad), tuple(int(b) for b in before)


def class_logits(model: MultitaskUNet, image: np.ndarray, *, patch: Sequence[int], device: torch.device | str = "cpu",
                 mirror_axes: tuple[int, ...] = ()) -> np.ndarray:
    """Class logits ``(K,)`` of one preprocessed image ``(C, *S)`` (padded to ``patch``; averaged over flips)."""

    x, _ = pad_to(image, model.stride, patch)
    return predict_logits(ClassificationView(model), x[None], None, device=device, mirror_axes=mirror_axes)[0]


@dataclass
class MultitaskPrediction:
    """One case's outputs: the label map in the input's geometry, per-fold logits ``(folds, K)``, calibrated
    probabilities ``(K,)``, the probabilities of every label (when asked for) and lesion centres (``(index, score)`` in
    input voxels). Outputs of heads the run did not train are ``None``."""

    labels: Image | None
    logits: np.ndarray | None
    probabilities: np.ndarray | None
    label_probabilities: np.ndarray | None = None
    lesions: list[tuple[tuple[float, ...], float]] = field(default_factory=list)


@dataclass
class MultitaskPredictor:
    """The trained folds of a multi-task run, with their temperatures and the validated decision threshold."""

    plan: MultitaskPlan
    models: list[MultitaskUNet]
    device: torch.device
    tta: bool = True
    temperatures: list[float] = field(default_factory=list)
    thresholds: list[float] | None = None

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | Path], *, plan: MultitaskPlan | None = None, device: str | None = None,
                         tta: bool = True, temperatures: list[float] | None = None,
                         thresholds: list[float] | None = None) -> MultitaskPredictor:

        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        states = [load_checkpoint(p) for p in paths]
        if plan is None:
            if (states[0].get("plan") or {}).get("task") != "multitask":
                raise user_error("a multi-task checkpoint", f"task {(states[0].get('plan') or {}).get('task')!r}", paths[0],
                                 "use 'medsight predict' with this run's own task")
            plan = MultitaskPlan.from_dict(states[0]["plan"], where=paths[0])
        models = []
        for p, s in zip(paths, states):
            m = model_from_checkpoint(s).to(dev)
            if not isinstance(m, MultitaskUNet):
                raise user_error("a multi-task network", s["architecture"], p, "use a checkpoint of 'medsight train --task multitask'")
            models.append(m)
        return cls(plan=plan, models=models, device=dev, tta=tta, temperatures=temperatures or [1.0] * len(models),
                   thresholds=thresholds)

    @classmethod
    def from_run(cls, run_dir: str | Path, *, folds: Sequence[int] | None = None, device: str | None = None,
                 tta: bool = True) -> MultitaskPredictor:
        """The run's ``fold_*/checkpoint_best.pt`` with ``plans.json`` (postprocessing) and ``calibration.json``."""
        run = Path(run_dir)
        plan = MultitaskPlan.load(run / "plans.json")
        ckpts = list(checkpoints(run, folds=folds, fallback_last=False).values())
        cal_file = run / "calibration.json"  # the hashed bytes during a checked prediction (core.pinned)
        cal = json.loads(read_text(cal_file)) if is_pinned(cal_file) or cal_file.is_file() else {}
        temps = cal.get("temperature") or {}
        return cls.from_checkpoints(ckpts, plan=plan, device=device, tta=tta,
                                    temperatures=[float(temps.get(fold_name(c), 1.0)) for c in ckpts],
                                    thresholds=cal.get("thresholds"))

    # ------------------------------------------------------------------------------------------ parts
    def segmenter(self) -> Predictor:
        return Predictor(plan=self.plan.segmentation_plan(), models=[SegmentationView(m) for m in self.models],
                         device=self.device, tta=self.tta)

    def logits(self, image: np.ndarray) -> np.ndarray:
        """Uncalibrated class logits ``(folds, K)`` of one preprocessed image ``(C, *S)``."""
        axes = tuple(a for a in self.plan.augment.mirror_axes if a < self.plan.dims) if self.tta else ()
        return np.stack([class_logits(m, image, patch=self.plan.patch_size, device=self.device, mirror_axes=axes)
                         for m in self.models])

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities ``(K,)``: each fold's logits divided by its temperature, softmax, mean over folds."""

        return np.mean([probabilities(lg[None], False, t)[0] for lg, t in zip(logits, self.temperatures)], axis=0)

    @torch.no_grad()
    def lesions(self, image: np.ndarray, props: dict[str, Any]) -> list[tuple[tuple[float, ...], float]]:
        """Lesion centres ``(index in the input's voxels, score)`` from the heat-map head (mean over folds)."""

        x, before = pad_to(image, self.models[0].stride, self.plan.patch_size)
        t = torch.from_numpy(x)[None].to(self.device)
        heat = []
        for m in self.models:
            m.eval()
            out = m(t).heatmap
            if out is not None:
                heat.append(torch.sigmoid(out.float())[0, 0].cpu().numpy())
        if not heat:
            return []
        region = tuple(slice(b, b + s) for b, s in zip(before, image.shape[1:]))
        scale = np.asarray(props["cropped_shape"], dtype=float) / np.asarray(image.shape[1:], dtype=float)
        start = np.asarray([a for a, _ in props["bbox"]], dtype=float)
        return [(tuple(float(v) for v in np.round(start + (np.asarray(ix) + 0.5) * scale - 0.5, 2)), score)
                for ix, score in find_peaks(np.mean(heat, axis=0)[region])]

    def predict_case(self, case: Case, *, with_probabilities: bool = False) -> MultitaskPrediction:
        """Mask, class probabilities and lesion centres of one case (its labels, if any, are ignored)."""
        tasks = self.plan.tasks
        labels, label_probs = (self.segmenter().predict_case(case, with_probabilities=with_probabilities)
                               if "segmentation" in tasks else (None, None))
        pre = preprocess_case(case, self.plan)
        logits = self.logits(pre.image) if "classification" in tasks else None
        lesions = self.lesions(pre.image, pre.properties) if "heatmap" in tasks else []
        return MultitaskPrediction(labels=labels, logits=logits, probabilities=None if logits is None else self.calibrated(logits),
                                   label_probabilities=label_probs, lesions=lesions)


# ---------------------------------------------------------------------------------------------- files
def lesions_csv(rows: list[tuple[str, tuple[float, ...], float]]) -> str:
    """``file, index (z y x or y x, input voxels), score`` as CSV text."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "index", "score"])
    for name, index, score in rows:
        w.writerow([name, " ".join(f"{v:g}" for v in index), f"{score:.4f}"])
    return buf.getvalue()


def _mask_file(prediction: Image, plan: MultitaskPlan, files: list[Path], out: Path, cid: str, *,
               overwrite: bool) -> Path:
    suffix = output_suffix(files, prediction.source.format)
    labels = prediction
    if suffix in (".png", ".tif", ".tiff", ".bmp") and plan.binary_masks:
        labels = prediction.with_array((prediction.array > 0).astype(np.uint8) * 255)
    return write_image(labels, check_new_output(out / f"{cid}{suffix}", files, overwrite=overwrite))


def _inputs(inp: Path, plan: MultitaskPlan) -> tuple[Any, list[tuple[str, list[Path]]]]:
    """(labelled multi-task dataset or None, [(case id, files)])."""

    if inp.is_dir():
        try:
            data = load_multitask_dataset(inp, label_from_name=plan.label_from_name)
            return data, [(r.case_id, list(r.images)) for r in data.spec.cases]
        except MedsightError as exc:
            log.debug("%s is not a labelled multi-task dataset (%s); predicting its files", inp, exc)
    return None, input_cases(inp, len(plan.channel_names))


def predict_multitask(run_dir: str | Path, input_path: str | Path, output: str | Path, *, folds: list[int] | None = None,
                      device: str | None = None, tta: bool = True, series_uid: str | None = None,
                      save_probabilities: bool = False, progress: Callable[[int, int], None] | None = None,
                      overwrite: bool = False) -> list[Path]:
    """Predict a file, a folder of images, a DICOM series or a labelled multi-task dataset into the folder ``output``.

    Writes ``<case><suffix>`` masks in the input's format and geometry, ``predictions.csv`` (``file, prob_<class>...,
    pred[, label]``), ``lesions.csv`` with a heat-map head, and for a labelled dataset ``metrics.json`` (with plots)
    and the segmentation ``per_case.csv`` / ``summary.json``.
    """

    inp = Path(input_path)
    if not inp.exists():
        raise user_error("an existing input file or folder", "nothing", inp, "check the path")
    pred = MultitaskPredictor.from_run(run_dir, folds=folds, device=device, tta=tta)
    plan = pred.plan
    data, cases = _inputs(inp, plan)
    out = Path(output)
    check_new_output(out / "predictions.csv", [inp], overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names, probs, y, lesion_rows = [], [], [], []
    evaluator = None
    if data is not None:

        evaluator = SegmentationEvaluator(plan.labels)
    for i, (cid, files) in enumerate(cases):
        case = load_case(data.spec, data.spec.case(cid)) if data is not None else _read_case(cid, files, plan, series_uid)
        res = pred.predict_case(case, with_probabilities=save_probabilities)
        name = str(files[0])
        if res.labels is not None:
            written.append(_mask_file(res.labels, plan, files, out, cid, overwrite=overwrite))
            if evaluator is not None and case.label_array is not None:
                evaluator.add(cid, res.labels.array[0], case.label_array, spacing=case.image.spacing)
        if res.label_probabilities is not None:
            written.append(write_probabilities(out / f"{cid}_probabilities.npz", res.label_probabilities))
        if res.probabilities is not None:
            names.append(name)
            probs.append(res.probabilities)
            y.append(data.classes.get(cid, -1) if data is not None else -1)
        lesion_rows += [(name, ix, s) for ix, s in res.lesions]
        if progress:
            progress(i + 1, len(cases))
    if evaluator is not None and len(evaluator):

        write_text(out / "per_case.csv", rows_to_csv(evaluator.rows))
        written.append(write_text(out / "summary.json", json.dumps(json_safe(evaluator.summary()), indent=2)))
    if probs:
        written[:0] = _write_classes(out, names, np.stack(probs), np.asarray(y), plan, pred.thresholds)
    if "heatmap" in plan.tasks:
        written.append(write_text(out / "lesions.csv", lesions_csv(lesion_rows)))
    return written


def _write_classes(out: Path, names: list[str], probs: np.ndarray, y: np.ndarray, plan: MultitaskPlan,
                   thresholds: list[float] | None) -> list[Path]:
    """``predictions.csv``; with known classes (``y >= 0``) also ``metrics.json`` and plots of those cases."""

    view = plan.classification_view()
    known = y >= 0
    written = [out / "predictions.csv"]
    if known.any():  # metrics.json, plots and predictions.csv (with a label column) of the labelled cases
        write_evaluation(out, [n for n, k in zip(names, known) if k], probs[known], y[known], view, thresholds)
        written.append(out / "metrics.json")
    if not known.all():  # every case, without labels
        write_text(out / "predictions.csv", predictions_csv(names, probs, view, labels=None, thresholds=thresholds))
    return written


def _read_case(cid: str, files: list[Path], plan: MultitaskPlan, series_uid: str | None) -> Case:

    parts = [read_image(f, series_uid=series_uid) for f in files]
    image = parts[0] if len(parts) == 1 else parts[0].with_array(np.concatenate([p.array for p in parts]))
    if image.num_channels != len(plan.channel_names):
        raise user_error(f"{len(plan.channel_names)} channel(s) as in training", image.num_channels, files[0],
                         "give images with the training channels")
    if image.ndim != plan.dims:
        raise user_error(f"a {plan.dims}D image as in training", f"a {image.ndim}D image", files[0], "use the matching model")
    return Case(case_id=cid, image=image)


__all__ = ["MultitaskPrediction", "MultitaskPredictor", "class_logits", "pad_to", "predict_multitask"]
