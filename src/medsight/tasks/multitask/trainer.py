"""Multi-task training on the shared loop (:class:`medsight.engine.trainer.Trainer`): whole-image batches with masks
and classes where known, the partial-label multi-task loss, and validation of both tasks.

Each epoch's validation scores the fold's validation cases: mean foreground Dice (sliding window on the
preprocessed grid, over the cases with a mask) and AUC (over the cases with a class). ``val_score``, the mean of the
scores of the trained tasks, selects ``checkpoint_best.pt``. With learned weights, ``metrics.csv`` also records each
task's weight ``exp(-s_t)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.engine.config import RunOptions
from medsight.engine.trainer import Trainer
from medsight.metrics.auc import macro_auc
from medsight.models.multitask import MultitaskUNet, SegmentationView
from medsight.tasks.classification.trainer import probabilities
from medsight.tasks.multitask.losses import MultitaskLoss, task_weights
from medsight.tasks.multitask.plan import MultitaskPlan
from medsight.tasks.multitask.predict import class_logits
from medsight.tasks.multitask.sampler import MultitaskCache, MultitaskSampler
from medsight.tasks.segmentation.trainer import SegmentationTrainer, network_args

ARCHITECTURE = "multitask_dynunet"


def model_args(plan: MultitaskPlan) -> dict[str, Any]:
    """Constructor arguments of the planned multi-task network (stored in checkpoints)."""
    return {**network_args(plan), "num_classes": len(plan.class_names), "tasks": list(plan.tasks), "dropout": plan.dropout,
            "learned_weights": plan.loss_weighting == "uncertainty"}


def trainable_ids(cache: MultitaskCache, ids: list[str], tasks: list[str]) -> list[str]:
    """The cases with a label for at least one of ``tasks`` (a mask for segmentation / heat map, a class)."""
    masks = "segmentation" in tasks
    return [c for c in ids if (masks and cache.has_mask(c)) or ("classification" in tasks and cache.class_of(c) >= 0)]


class MultitaskTrainer(Trainer):
    """Trains one fold of a multi-task plan.

    Args:
        plan: the multi-task plan.
        cache: the preprocessed cases with their classes.
        train_ids, val_ids: the fold's cases (training cases without a label for a trained task are skipped).
        fold_dir: where checkpoints, ``metrics.csv`` and curves go.
        config: run-time options.
        progress: callback receiving progress events.
    """

    selection_metric = "val_score"

    def __init__(self, plan: MultitaskPlan, cache: MultitaskCache, train_ids: list[str], val_ids: list[str],
                 fold_dir: str | Path, config: RunOptions, *, progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.plan, self.cache = plan, cache
        weights = tuple(f"weight_{t}" for t in plan.tasks) if plan.loss_weighting == "uncertainty" else ()
        self.metric_columns = ("val_dice", "val_auc", "val_score", *weights)
        super().__init__(fold_dir, config, train_ids=trainable_ids(cache, train_ids, plan.tasks), val_ids=val_ids,
                         architecture=ARCHITECTURE, init_args=model_args(plan), plan_dict=plan.to_dict(),
                         training=plan.training, progress=progress)
        self.loss_fn = MultitaskLoss(plan, self.device)

    @property
    def _network(self) -> MultitaskUNet:
        if not isinstance(self.model, MultitaskUNet):  # build_model makes one from ARCHITECTURE
            raise TypeError(f"expected a MultitaskUNet, got {type(self.model).__name__}")
        return self.model

    def build_sampler(self) -> MultitaskSampler:
        sigma = self.plan.heatmap_sigma if "heatmap" in self.plan.tasks else None
        return MultitaskSampler(self.cache, self.train_ids, tuple(self.plan.patch_size), self.plan.batch_size,
                                augment=self.plan.augment, foreground_fraction=self.plan.training.foreground_fraction,
                                heatmap_sigma=sigma, seed=self.config.seed)

    def compute_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.loss_fn(self._network(batch["image"]), batch, self._network.log_variances)

    def _validate_segmentation(self, ids: list[str]) -> tuple[float, float]:
        """(mean foreground Dice, mean Dice + CE) over ``ids`` on the preprocessed grid: the segmentation trainer's
        validation, run on the segmentation output of this network."""
        from types import SimpleNamespace

        seg = SimpleNamespace(plan=self.plan.segmentation_plan(), cache=self.cache, val_ids=ids, device=self.device,
                              model=SegmentationView(self._network))
        scores = SegmentationTrainer.validate(seg)  # type: ignore[arg-type]  # reads only the attributes above
        return scores["val_dice"], scores["val_loss"]

    def _validate_classification(self, ids: list[str]) -> tuple[float, float]:
        """(AUC, cross-entropy) over ``ids``."""

        logits = np.stack([class_logits(self._network, self.cache.images[c], patch=self.plan.patch_size, device=self.device)
                           for c in ids])
        y = np.asarray([self.cache.class_of(c) for c in ids])
        loss = float(self.loss_fn.classification(torch.from_numpy(logits).to(self.device), torch.from_numpy(y).to(self.device)))
        return macro_auc(y, probabilities(logits, False), False), loss

    def validate(self) -> dict[str, float]:
        nan = float("nan")
        out: dict[str, float] = {"val_dice": nan, "val_auc": nan}
        losses = []
        masked = [c for c in self.val_ids if self.cache.has_mask(c)]
        classed = [c for c in self.val_ids if self.cache.class_of(c) >= 0]
        if "segmentation" in self.plan.tasks and masked:
            out["val_dice"], loss = self._validate_segmentation(masked)
            losses.append(loss)
        if "classification" in self.plan.tasks and classed:
            out["val_auc"], loss = self._validate_classification(classed)
            losses.append(loss)
        scores = [v for v in (out["val_dice"], out["val_auc"]) if np.isfinite(v)]
        out["val_score"] = float(np.mean(scores)) if scores else nan
        out["val_loss"] = float(np.sum(losses)) if losses else nan
        out.update({f"weight_{t}": w for t, w in task_weights(self._network.log_variances, self.plan.tasks).items()})
        return out


__all__ = ["ARCHITECTURE", "MultitaskTrainer", "model_args", "trainable_ids"]
