"""The multi-task loss: per-task terms on the cases labelled for them, combined with fixed or learned weights.

Terms (each on the batch items that carry its label; absent when none does):

* segmentation: Dice + cross-entropy with deep supervision (:class:`medsight.engine.trainer.SegmentationLoss`);
* classification: (class-weighted) cross-entropy (:func:`medsight.tasks.classification.trainer.classification_loss`);
* heatmap: CenterNet focal loss against lesion-centre Gaussians (:mod:`medsight.tasks.multitask.heatmap`).

Combination: ``fixed`` sums ``w_t * L_t``; ``uncertainty`` (Kendall, Gal and Cipolla, CVPR 2018) learns one
log-variance ``s_t = log sigma_t^2`` per task and sums ``exp(-s_t) * L_t + s_t / 2`` - the form of their
classification likelihood, which fits all three terms (cross-entropies). A term whose task has no labels in the
batch is left out, weight and regulariser included.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medsight.models.multitask import MultitaskOutput
from medsight.tasks.classification.trainer import classification_loss
from medsight.tasks.multitask.heatmap import centre_focal_loss
from medsight.tasks.multitask.plan import MultitaskPlan
from medsight.tasks.segmentation.trainer import SegmentationLoss


def _select(out: torch.Tensor | list[torch.Tensor], keep: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
    return [o[keep] for o in out] if isinstance(out, list) else out[keep]


class MultitaskLoss(nn.Module):
    """Partial-label multi-task loss for a :class:`~medsight.models.multitask.MultitaskUNet`.

    Args:
        plan: the multi-task plan (tasks, weighting, fixed weights, class weights).
        device: where the class weights live.
    """

    def __init__(self, plan: MultitaskPlan, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.tasks, self.weighting = list(plan.tasks), plan.loss_weighting
        self.fixed = {t: float(plan.loss_weights.get(t, 1.0)) for t in self.tasks}
        self.segmentation = SegmentationLoss()
        self.classification = classification_loss(plan.classification_view(), device)

    def terms(self, out: MultitaskOutput, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The loss of each task over the batch items labelled for it.

        Args:
            out: the model's output.
            batch: ``image``; ``label`` ``(B, 1, *S)`` int64; ``has_mask`` ``(B,)`` bool; ``class`` ``(B,)`` int64
                (-1: none); ``heatmap`` ``(B, 1, *S)`` targets when the heat-map head trains.
        """
        has_mask, cls = batch["has_mask"], batch["class"]
        has_cls = cls >= 0
        terms: dict[str, torch.Tensor] = {}
        if out.segmentation is not None and bool(has_mask.any()):
            terms["segmentation"] = self.segmentation(_select(out.segmentation, has_mask), batch["label"][has_mask])
        if out.classification is not None and bool(has_cls.any()):
            terms["classification"] = self.classification(out.classification[has_cls].float(), cls[has_cls])
        if out.heatmap is not None and bool(has_mask.any()):
            terms["heatmap"] = centre_focal_loss(out.heatmap[has_mask], batch["heatmap"][has_mask])
        return terms

    def combine(self, terms: dict[str, torch.Tensor], log_variances: torch.Tensor | None) -> torch.Tensor:
        """One scalar from the task terms (see the module docstring)."""
        if not terms:
            raise ValueError("Expected at least one labelled item in the batch, got none; the sampler draws only labelled cases")
        if self.weighting == "uncertainty":
            if log_variances is None:
                raise ValueError("Expected a model built with learned_weights=True for uncertainty weighting")
            total = [torch.exp(-log_variances[self.tasks.index(t)]) * v + 0.5 * log_variances[self.tasks.index(t)]
                     for t, v in terms.items()]
        else:
            total = [self.fixed[t] * v for t, v in terms.items()]
        return torch.stack(total).sum()

    def forward(self, out: MultitaskOutput, batch: dict[str, Any], log_variances: torch.Tensor | None = None) -> torch.Tensor:
        return self.combine(self.terms(out, batch), log_variances)


def task_weights(log_variances: torch.Tensor | None, tasks: list[str]) -> dict[str, float]:
    """The learned weight ``exp(-s_t)`` of each task (empty without learned weights)."""
    if log_variances is None:
        return {}
    return {t: float(torch.exp(-log_variances[i]).detach()) for i, t in enumerate(tasks)}


__all__ = ["MultitaskLoss", "task_weights"]
