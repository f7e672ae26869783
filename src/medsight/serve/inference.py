"""What one prediction job does, with medsight's own library functions.

Segmentation: :func:`medsight.tasks.segmentation.predict` writes the label map in the input's format (NIfTI for a
DICOM series, plus a DICOM-SEG), the probabilities (``<case>_probabilities.npz``), and this module adds
``quantification.csv`` (volume, diameter, intensities per label and lesion). Classification:
:func:`medsight.tasks.classification.predict_classification` writes ``predictions.csv``. With ``explain``, the
heat map of :mod:`medsight.explain.apply` (Grad-CAM, or label saliency for segmentation) is added under
``explain/``; it lives on the network's input grid, together with the image the network saw.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import MedsightError, user_error
from medsight.io import read_image, strip_suffix

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    """Files a job wrote (role -> path: ``labels``, ``probabilities``, ``quantification``, ``dicom_seg``,
    ``predictions``, ``heatmap``, ``heatmap_png``), the case id, a classification's probabilities, warnings."""

    task: str
    case_id: str
    outputs: dict[str, Path] = field(default_factory=dict)
    classification: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


def run_task_of(run: Path) -> str:
    """``segmentation``, ``classification`` or another task, from the run's ``plans.json``."""
    try:
        data = json.loads((run / "plans.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise user_error("a readable plans.json", type(exc).__name__, run / "plans.json", "re-run 'medsight plan'") from exc
    return str(data.get("task") or "segmentation")


def run_job(run: Path, inp: Path, out: Path, *, tta: bool, explain: bool, device: str | None) -> JobResult:
    """Predict ``inp`` (a file or a DICOM series folder) with the run; write everything under ``out``."""
    task = run_task_of(run)
    out.mkdir(parents=True, exist_ok=True)
    if task == "segmentation":
        result = _segment(run, inp, out, tta=tta, device=device)
    elif task == "classification":
        result = _classify(run, inp, out, tta=tta, device=device)
    else:
        raise user_error("a segmentation or classification run", f"a {task} run", run,
                         "serve a run trained with --task segmentation or classification")
    if explain:
        result.outputs.update(_explain(run, inp, out / "explain", task=task, device=device))
    return result


def _segment(run: Path, inp: Path, out: Path, *, tta: bool, device: str | None) -> JobResult:
    from medsight.evaluate.quantify import COLUMNS, csv_text, quantify
    from medsight.io.atomic import write_text
    from medsight.plan.planner import Plan
    from medsight.tasks.segmentation import predict

    written = predict(run, inp, out, tta=tta, device=device, save_probabilities=True, dicom_seg=inp.is_dir())
    labels_file = written[0]
    cid = strip_suffix(labels_file)
    result = JobResult(task="segmentation", case_id=cid, outputs={"labels": labels_file})
    seg = [w for w in written if w.name.endswith("_seg.dcm")]
    if seg:
        result.outputs["dicom_seg"] = seg[0]
    probs = out / f"{cid}_probabilities.npz"
    if probs.is_file():
        result.outputs["probabilities"] = probs
    plan = Plan.load(run / "plans.json")
    image = read_image(inp)
    labels = read_label_map(labels_file, plan.labels)
    try:
        rows = quantify(image.with_array(image.array[:1]), labels, label_names=plan.labels)
    except Exception as exc:  # noqa: BLE001 - an extra: the label map is written; say what is missing and why
        log.warning("quantification skipped: %s", type(exc).__name__)
        result.warnings.append(f"quantification.csv not written: {type(exc).__name__} while measuring the lesions")
        return result
    result.outputs["quantification"] = write_text(out / "quantification.csv", csv_text(rows, COLUMNS))
    return result


def read_label_map(path: Path, names: dict[str, int]) -> Any:
    """A predicted label map with label values (binary raster masks are written as 0/255: mapped back to 0/1)."""
    labels = read_image(path)
    values = set(names.values())
    if 255 not in values and labels.array.max(initial=0) == 255:
        labels = labels.with_array((labels.array > 0).astype(np.uint8))
    return labels


def _classify(run: Path, inp: Path, out: Path, *, tta: bool, device: str | None) -> JobResult:
    from medsight.tasks.classification import predict_classification

    written = predict_classification(run, inp, out, tta=tta, device=device)
    table = written[0]
    folder = str(inp.parent) + "/"  # name inputs relative to their folder, not by server paths
    table.write_text(table.read_text(encoding="utf-8").replace(folder, ""), encoding="utf-8")
    with table.open(newline="", encoding="utf-8") as fh:
        row = next(csv.DictReader(fh), None)
    if row is None:
        raise user_error("one prediction row", "an empty predictions.csv", table, "check the input image")
    probs = {k.removeprefix("prob_"): float(v) for k, v in row.items() if k.startswith("prob_")}
    return JobResult(task="classification", case_id=strip_suffix(inp) if inp.is_file() else inp.name,
                     outputs={"predictions": table},
                     classification={"probabilities": probs, "prediction": row.get("pred", "")})


def _explain(run: Path, inp: Path, out: Path, *, task: str, device: str | None) -> dict[str, Path]:
    from medsight.explain.apply import explain_classification, explain_segmentation
    from medsight.train.checkpoint import load_checkpoint

    ckpts = sorted(run.glob("fold_*/checkpoint_best.pt"))
    if not ckpts:
        raise user_error("a trained fold (fold_*/checkpoint_best.pt)", "none", run, "train first")
    state = load_checkpoint(ckpts[0])
    if task == "segmentation":
        written = explain_segmentation(state, inp, out, device=device)
    else:
        cal = run / "calibration.json"
        temps = (json.loads(cal.read_text(encoding="utf-8")).get("temperature") or {}) if cal.is_file() else {}
        t = float(temps.get(ckpts[0].parent.name.removeprefix("fold_"), 1.0))
        try:
            written = explain_classification(state, inp, out, method="gradcam", device=device, temperature=t)
        except MedsightError:  # a network without a spatial feature map: occlusion instead
            written = explain_classification(state, inp, out, method="occlusion", device=device, temperature=t)
    found: dict[str, Path] = {}
    for w in written:
        found["heatmap" if w.suffix == ".npz" else "heatmap_png"] = w
    return found


def heatmap_arrays(npz_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(network input image ``(C, *grid)``, heat map ``(*grid)`` in [0, 1]) of an explain ``_heatmap.npz``."""
    with np.load(npz_path) as data:
        key = next((k for k in ("gradcam", "saliency", "occlusion") if k in data.files), None)
        if key is None or "image" not in data.files:
            raise user_error("a heat map and its image", f"arrays {data.files}", npz_path.name, "re-run the job with explain")
        return np.asarray(data["image"], dtype=np.float32), np.asarray(data[key], dtype=np.float32)


def network_spacing(run: Path, image_spacing: tuple[float, ...], image_shape: tuple[int, ...],
                    grid_shape: tuple[int, ...]) -> tuple[float, ...]:
    """Voxel size (mm) of the network's input grid: the plan's target spacing, or for resized 2D classification
    inputs the image's extent over the input size."""
    data = json.loads((run / "plans.json").read_text(encoding="utf-8"))
    if data.get("resize") and len(image_shape) == len(grid_shape):
        return tuple(float(s) * n / g for s, n, g in zip(image_spacing, image_shape, grid_shape))
    target = [float(s) for s in data.get("target_spacing") or []]
    return tuple(target) if len(target) == len(grid_shape) else (1.0,) * len(grid_shape)


__all__ = ["JobResult", "heatmap_arrays", "network_spacing", "read_label_map", "run_job", "run_task_of"]
