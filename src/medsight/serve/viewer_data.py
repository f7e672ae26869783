"""Load the volumes the viewer shows for a job or a run's validation case.

=================  ==========================================================================================
name               what
=================  ==========================================================================================
``image``          the input image (intensities as stored: HU for CT)
``labels``         the predicted label map (job output, or the fold's validation prediction)
``reference``      the reference label map (uploaded with the job, or the dataset's label file)
``probabilities``  per-label probabilities ``(K, *spatial)`` on the input's grid
``uncertainty``    voxel uncertainty of a validation case (normalised predictive entropy, 0 certain .. 1 uniform)
``heatmap``        Grad-CAM (classification) or label saliency (segmentation) on the network's input grid
``heatmap_image``  the image as the network saw it, on that grid (the heat map's background)
=================  ==========================================================================================
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medsight.core.image import Image
from medsight.io import read_image
from medsight.serve.inference import heatmap_arrays, network_spacing, read_label_map
from medsight.serve.jobs import Job
from medsight.serve.runs import RunCase
from medsight.serve.volumes import Volume, fraction_volume, image_volume, label_volume

#: volume name -> attribute of :class:`~medsight.serve.runs.RunCase` holding its file
CASE_VOLUMES = {"image": "image", "labels": "prediction", "reference": "reference", "probabilities": "probabilities",
                "uncertainty": "uncertainty"}


def _label_names(run: Path) -> dict[str, int]:
    data = json.loads((run / "plans.json").read_text(encoding="utf-8"))
    return {str(k): int(v) for k, v in (data.get("labels") or {}).items()}


def _probabilities(npz_path: Path, like: Image, names: dict[str, int]) -> Volume:
    with np.load(npz_path) as data:
        probs = np.asarray(data["probabilities"], dtype=np.float32)
    ordered = [n for n, _ in sorted(names.items(), key=lambda kv: kv[1])]
    return fraction_volume(probs, like, kind="probabilities", names=ordered[: probs.shape[0]])


def job_volume(job: Job, name: str) -> Volume:
    """Load volume ``name`` of a finished job (see the module table)."""
    names = _label_names(job.run_path)
    outputs = job.result.outputs if job.result else {}
    if name == "image":
        return image_volume(read_image(job.input_path))
    if name == "reference" and job.reference_path is not None:
        return label_volume(read_label_map(job.reference_path, names), names)
    if name == "labels":
        return label_volume(read_label_map(outputs["labels"], names), names)
    if name == "probabilities":
        return _probabilities(outputs["probabilities"], read_image(outputs["labels"]), names)
    net_image, heat = heatmap_arrays(outputs["heatmap"])
    source = read_image(job.input_path)
    spacing = network_spacing(job.run_path, source.spacing, source.shape, heat.shape)
    grid = Image(net_image, spacing=spacing)
    if name == "heatmap":
        return fraction_volume(heat[None], grid, kind="heatmap", grid="network")
    return image_volume(grid, grid="network")


def case_volume(case: RunCase, name: str, run: Path) -> Volume:
    """Load volume ``name`` of a run's validation case (see :data:`CASE_VOLUMES`)."""
    names = _label_names(run)
    if name == "image" and case.image is not None:
        return image_volume(read_image(case.image))
    if name == "reference" and case.reference is not None:
        return label_volume(read_label_map(case.reference, names), names)
    if name == "probabilities" and case.probabilities is not None:
        return _probabilities(case.probabilities, read_image(case.prediction), names)
    if name == "uncertainty" and case.uncertainty is not None:
        umap = read_image(case.uncertainty)
        return fraction_volume(umap.array[:1], umap, kind="uncertainty")
    return label_volume(read_label_map(case.prediction, names), names)


__all__ = ["CASE_VOLUMES", "case_volume", "job_volume"]
