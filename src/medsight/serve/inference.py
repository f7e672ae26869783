"""What one prediction job does, with medsight's own library functions.

Segmentation: :func:`medsight.tasks.segmentation.pipeline.predict` writes the label map in the input's format (NIfTI for a
DICOM series, plus a DICOM-SEG), the probabilities (``<case>_probabilities.npz``), and this module adds
``quantification.csv`` (volume, diameter, intensities per label and lesion). Classification:
:func:`medsight.tasks.classification.pipeline.predict_classification` writes ``predictions.csv``. With ``explain``, the
heat map of the task's ``explain`` (Grad-CAM, or label saliency for segmentation) is added under
``explain/``; it lives on the network's input grid, together with the image the network saw.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import write_text
from medsight.engine.checkpoint import load_checkpoint
from medsight.engine.run import checkpoints, run_task
from medsight.errors import MedsightError, user_error
from medsight.evaluate.quantify import COLUMNS, csv_text, quantify
from medsight.io import read_image, strip_suffix
from medsight.tasks import task_of_run
from medsight.tasks.classification.pipeline import predict_classification
from medsight.tasks.segmentation.pipeline import predict
from medsight.tasks.segmentation.plan import Plan

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


def run_job(run: Path, inp: Path, out: Path, *, tta: bool, explain: bool, device: str | None) -> JobResult:
    """Predict ``inp`` (a file or a DICOM series folder) with the run; write everything under ``out``."""
    task = run_task(run)
    job = JOBS.get(task)
    if job is None:
        raise user_error(f"a run of a task the server predicts ({', '.join(JOBS)})", f"a {task} run", run,
                         "serve a run trained with --task segmentation or classification")
    out.mkdir(parents=True, exist_ok=True)
    result = job(run, inp, out, tta=tta, device=device)
    if explain:
        result.outputs.update(_explain(run, inp, out / "explain", device=device))
    return result


def _segment(run: Path, inp: Path, out: Path, *, tta: bool, device: str | None) -> JobResult:

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


def _explain(run: Path, inp: Path, out: Path, *, device: str | None) -> dict[str, Path]:
    """The task's own heat map of the first trained fold (Grad-CAM, occlusion for networks without a feature map,
    label saliency for segmentation)."""

    task = task_of_run(run)
    ckpt = next(iter(checkpoints(run, fallback_last=False).values()))
    state = load_checkpoint(ckpt)
    if task.explain is None:
        raise user_error("a run whose task has heat maps", f"a {task.name} run", run, "predict without explain")
    try:
        written = task.explain(state, ckpt, inp, out, {"method": "gradcam", "device": device})
    except MedsightError:  # a classifier without a spatial feature map: occlusion instead
        written = task.explain(state, ckpt, inp, out, {"method": "occlusion", "device": device})
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


#: The tasks the server predicts, with what one job of each writes and returns.
JOBS: dict[str, Callable[..., JobResult]] = {"segmentation": _segment, "classification": _classify}

__all__ = ["JOBS", "JobResult", "heatmap_arrays", "network_spacing", "read_label_map", "run_job"]
