"""The multi-task plan: the segmentation plan (same fingerprint rules, same DynUNet) plus classes and loss weighting.

Rules on top of the segmentation planner (:mod:`medsight.tasks.segmentation.plan`):

* whole images: the classification head needs the whole image, so the patch is the whole (resampled) image. When
  the median resampled image is larger than ``max_size`` voxels along its longest axis (default 256 px in 2D and
  96 voxels in 3D on a CPU; 512 / 128 with a GPU), the target spacing is coarsened by that factor; the DynUNet
  topology then follows from the smaller grid by the segmentation rules;
* batch size: as many whole images as the segmentation voxel budget allows (2-16); an epoch is one pass over the
  training cases; no foreground oversampling (the sampler centres the whole image);
* augmentation as for classification (rotation +-15 degrees, scaling 0.85-1.15, left-right mirroring in 2D and all
  axes in 3D, intensity), since unrealistic geometry hurts the classification more than the segmentation;
* classes: weighted by inverse square-root frequency when the largest class is more than 1.5x the smallest;
* losses: ``"uncertainty"`` (default) learns one weight per task (Kendall et al. 2018); ``"fixed"`` uses
  ``loss_weights``. A case contributes only the terms it has labels for (partial supervision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.fingerprint import Fingerprint
from medsight.engine.run import plan_task, read_plan_json
from medsight.errors import did_you_mean, user_error
from medsight.models.multitask import check_tasks
from medsight.tasks.classification.plan import ClassificationPlan
from medsight.tasks.segmentation.plan import DEFAULT_VOXEL_BUDGET, Plan, make_plan, target_spacing_of
from medsight.transforms.config import AugmentConfig

WEIGHTINGS = ("uncertainty", "fixed")
#: Longest side of the network input (voxels) by dimensionality: (CPU, GPU).
MAX_SIZE = {2: (256, 512), 3: (96, 128)}
MAX_BATCH = 16


@dataclass(frozen=True)
class MultitaskPlan(Plan):
    """A segmentation :class:`~medsight.tasks.segmentation.plan.Plan` plus the classification and loss settings.

    Attributes (beyond the segmentation plan's):
        class_names: image classes, in index order.
        class_counts: cases per class in the planned dataset.
        class_weights: cross-entropy weights (empty: unweighted).
        tasks: heads to train, a subset of ``segmentation``, ``classification``, ``heatmap`` (lesion centres).
        loss_weighting: ``uncertainty`` (learned, Kendall et al. 2018) or ``fixed``.
        loss_weights: per-task weights for ``fixed`` (ignored by ``uncertainty``).
        heatmap_sigma: SD (network voxels) of the Gaussian drawn at each lesion (connected component) centre.
        dropout: dropout before the classification Linear.
        max_size: longest side of the network input the plan was made for (voxels).
        label_from_name: pattern taking the class from file names (None: labels.csv or dataset.json).
        supervision: cases with both labels, only a mask, only a class.
        threshold_method, target_sensitivity: decision threshold rule, as for classification.
    """

    class_names: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    class_weights: list[float] = field(default_factory=list)
    tasks: list[str] = field(default_factory=lambda: ["segmentation", "classification"])
    loss_weighting: str = "uncertainty"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"segmentation": 1.0, "classification": 1.0, "heatmap": 1.0})
    heatmap_sigma: float = 2.0
    dropout: float = 0.2
    max_size: int = 256
    label_from_name: str | None = None
    supervision: dict[str, int] = field(default_factory=dict)
    threshold_method: str = "youden"
    target_sensitivity: float | None = None
    task: str = "multitask"

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str | Path = "plans.json") -> MultitaskPlan:
        plan = super().from_dict(d, where=where)
        if not isinstance(plan, MultitaskPlan):  # pragma: no cover - cls is MultitaskPlan here
            raise TypeError(type(plan).__name__)
        plan.validate(where)
        return plan

    @classmethod
    def load(cls, path: str | Path) -> MultitaskPlan:

        return cls.from_dict(read_plan_json(path), where=Path(path))

    def with_changes(self, **changes: Any) -> MultitaskPlan:
        return replace(self, **changes)

    def validate(self, where: str | Path | None = None) -> None:
        """Raise a MedsightError for settings that cannot train."""
        check_tasks(self.tasks, where)
        if self.loss_weighting not in WEIGHTINGS:

            raise did_you_mean(self.loss_weighting, WEIGHTINGS, "loss_weighting")
        if len(self.class_names) < 2:
            raise user_error("at least two class_names", self.class_names, where, "re-plan with 'medsight plan DATASET --task multitask'")
        bad = {t: w for t, w in self.loss_weights.items() if not (isinstance(w, (int, float)) and w >= 0)}
        if bad or (self.loss_weighting == "fixed" and not any(self.loss_weights.get(t, 0) > 0 for t in self.tasks)):
            raise user_error("non-negative loss_weights with one > 0 for a task in 'tasks'", self.loss_weights, where,
                             'write e.g. "loss_weights": {"segmentation": 1.0, "classification": 0.5}')

    def segmentation_plan(self) -> Plan:
        """The plain segmentation plan (for preprocessing and the sliding-window predictor)."""
        return Plan(**{f.name: getattr(self, f.name) for f in fields(Plan)})

    def classification_view(self) -> ClassificationPlan:
        """The classification settings as a :class:`ClassificationPlan` (for the calibration, threshold, metrics and
        ``predictions.csv`` code of the classification task)."""
        return ClassificationPlan(
            dataset=self.dataset, dims=self.dims, channel_names=self.channel_names, modalities=self.modalities,
            class_names=self.class_names, multilabel=False, input_size=self.patch_size, resize=False,
            target_spacing=self.target_spacing, normalization=self.normalization, network=self.network.name, network_args={},
            batch_size=self.batch_size, class_counts=self.class_counts,
            imbalance="weighted_loss" if self.class_weights else "none", class_weights=self.class_weights,
            training=self.training, augment=self.augment, threshold_method=self.threshold_method,
            target_sensitivity=self.target_sensitivity)

    def table(self) -> list[tuple[str, str]]:
        counts = ", ".join(f"{n}: {c}" for n, c in zip(self.class_names, self.class_counts))
        weights = ("learned (uncertainty, Kendall et al. 2018)" if self.loss_weighting == "uncertainty"
                   else "fixed " + ", ".join(f"{t} {self.loss_weights.get(t, 0):g}" for t in self.tasks))
        return [*super().table(), ("tasks", ", ".join(self.tasks)), ("classes", counts),
                ("supervision", ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in self.supervision.items())),
                ("loss weights", weights), ("input", f"whole image (longest side <= {self.max_size})")]


def _class_weights(counts: list[int]) -> list[float]:
    present = [c for c in counts if c > 0]
    if len(present) < 2 or max(present) <= 1.5 * min(present):
        return []
    return [round(math.sqrt(max(counts) / max(c, 1)), 4) for c in counts]


def default_max_size(dims: int, gpu: bool) -> int:
    return MAX_SIZE[dims][int(gpu)]


def make_multitask_plan(fp: Fingerprint, *, dataset: str, labels: dict[str, int], class_names: list[str],
                        class_counts: list[int], binary_masks: bool = False, base_filters: int = 16,
                        max_size: int | None = None, gpu: bool = False, tasks: list[str] | None = None,
                        loss_weighting: str = "uncertainty", label_from_name: str | None = None,
                        supervision: dict[str, int] | None = None) -> MultitaskPlan:
    """Derive a multi-task plan from a fingerprint (see the module docstring for the rules).

    Args:
        fp: the dataset fingerprint (cases without a mask count for geometry and intensities).
        dataset: dataset name.
        labels: segmentation label name -> value, background included.
        class_names: image classes; ``class_counts`` the cases of each.
        binary_masks: raster masks stored as {0, 255}.
        base_filters: DynUNet width of the first stage.
        max_size: longest side of the network input (voxels); default :data:`MAX_SIZE`.
        gpu: plan for a GPU (larger default ``max_size``).
        tasks: heads to train (default segmentation and classification).
        loss_weighting: ``uncertainty`` or ``fixed``.
        label_from_name: the file-name pattern the classes came from, if any.
        supervision: counts of cases with both labels / only a mask / only a class.
    """
    d = fp.dims
    cap = int(max_size or default_max_size(d, gpu))
    if cap < 8:
        raise user_error("a maximum input size of at least 8 voxels", cap, None, "pass e.g. --max-size 128")
    target = target_spacing_of(fp)
    sp, shapes = np.asarray(fp.spacings, dtype=float), np.asarray(fp.shapes, dtype=float)
    median = np.median(shapes * sp / target, axis=0)
    factor = max(1.0, float(median.max()) / cap)
    # the dataset as it looks on a grid `factor` times coarser: same physical extent, fewer voxels
    coarse = replace(fp, spacings=(sp * factor).tolist(), shapes=(shapes / factor).tolist())
    whole = np.maximum(np.ceil(median / factor), 8)
    seg = make_plan(coarse, dataset=dataset, labels=labels, binary_masks=binary_masks, base_filters=base_filters,
                    voxel_budget=int(2 * np.prod(whole)) + 1,
                    strided_first_stage=False)  # not measured for the multi-task losses yet
    voxels = int(np.prod(seg.patch_size))
    batch = int(max(2, min(MAX_BATCH, DEFAULT_VOXEL_BUDGET[d] // voxels)))
    n = sum(class_counts) if class_counts else fp.num_cases
    training = replace(seg.training, iterations_per_epoch=max(1, math.ceil(max(n, fp.num_cases) / batch)),
                       foreground_fraction=0.0, val_max_cases=10**9)
    augment = AugmentConfig(p_rotate=0.3, rotate_deg=15.0, p_scale=0.3, scale_range=(0.85, 1.15), p_elastic=0.0,
                            mirror_axes=(d - 1,) if d == 2 else tuple(range(d)), p_brightness=0.2, p_contrast=0.2,
                            p_gamma=0.2, p_noise=0.1, p_blur=0.1)
    base = seg.to_dict()
    for key in ("training", "augment", "batch_size", "fingerprint", "task", "normalization", "network"):
        base.pop(key)
    plan = MultitaskPlan(
        **base, normalization=seg.normalization, network=seg.network, batch_size=batch, training=training, augment=augment,
        fingerprint={"summary": {**fp.summary(), "class_counts": dict(zip(class_names, class_counts))},
                     "median_spacing": [float(x) for x in fp.median_spacing], "coarsened_by": round(factor, 4)},
        class_names=list(class_names), class_counts=list(class_counts), class_weights=_class_weights(list(class_counts)),
        tasks=check_tasks(tasks or ["segmentation", "classification"]), loss_weighting=loss_weighting,
        heatmap_sigma=round(max(1.5, min(seg.patch_size) / 32), 2), max_size=cap, label_from_name=label_from_name,
        supervision=dict(supervision or {}))
    plan.validate()
    return plan


__all__ = ["MAX_SIZE", "WEIGHTINGS", "MultitaskPlan", "default_max_size", "make_multitask_plan"]


def load_multitask_plan(path: str | Path) -> MultitaskPlan:
    """The ``plans.json`` of a multi-task run; a plan of another task is one clear error."""
    data = read_plan_json(path)
    if plan_task(data) != "multitask":
        raise user_error("a multi-task plans.json", f"a {plan_task(data)} plan", path, "use another --out for this task")
    return MultitaskPlan.from_dict(data, where=path)
