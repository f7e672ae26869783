"""One fold of a segmentation plan on the shared :class:`~medsight.engine.trainer.Trainer`: foreground-oversampled
patches, Dice + cross-entropy with deep supervision, whole-case sliding-window validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss

from medsight.engine.config import RunOptions
from medsight.engine.trainer import Trainer
from medsight.metrics.segmentation import dice_per_label
from medsight.tasks.segmentation.plan import Plan
from medsight.tasks.segmentation.predictor import Predictor
from medsight.transforms.cache import CaseCache
from medsight.transforms.sampler import PatchSampler


def network_args(plan: Plan) -> dict[str, Any]:
    """Constructor arguments of the planned network (stored in checkpoints)."""
    net = plan.network
    return {"spatial_dims": plan.dims, "in_channels": len(plan.channel_names), "out_channels": plan.num_classes,
            "kernels": net.kernels, "strides": net.strides, "filters": net.filters,
            "deep_supervision": net.deep_supervision, "deep_supr_num": net.deep_supr_num}


class SegmentationLoss(torch.nn.Module):
    """Dice + cross-entropy (MONAI ``DiceCELoss``), summed over deep-supervision outputs with halving weights."""

    def __init__(self) -> None:
        super().__init__()
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True,
                               smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        outs = outputs if isinstance(outputs, list) else [outputs]
        weights = torch.tensor([0.5**i for i in range(len(outs))])
        weights = weights / weights.sum()
        return sum(w * self.loss(o, target) for w, o in zip(weights.tolist(), outs))  # type: ignore[return-value]


def dice_ce_from_probabilities(probs: torch.Tensor, ref: torch.Tensor, foreground: list[int]) -> float:
    """The training loss on a whole case: cross-entropy + (1 - mean soft Dice over foreground labels).

    Args:
        probs: ``(K, *spatial)`` class probabilities.
        ref: ``(*spatial)`` integer labels.
        foreground: label values scored by the Dice term.
    """
    ce = torch.nn.functional.nll_loss(torch.log(probs.clamp_min(1e-8))[None], ref[None])
    dices = []
    for v in foreground:
        p, y = probs[v], (ref == v).float()
        dices.append((2 * (p * y).sum() + 1e-5) / (p.sum() + y.sum() + 1e-5))
    return float(ce + 1 - torch.stack(dices).mean()) if dices else float(ce)


class SegmentationTrainer(Trainer):
    """Trains one fold of a segmentation plan: foreground-oversampled patches, Dice+CE with deep supervision,
    whole-case sliding-window validation (mean foreground Dice selects the best checkpoint)."""

    def __init__(self, plan: Plan, cache: CaseCache, train_ids: list[str], val_ids: list[str], fold_dir: str | Path,
                 config: RunOptions, *, progress: Callable[[dict[str, Any]], None] | None = None,
                 synthetic_ids: list[str] | None = None, synthetic_ratio: float = 0.0) -> None:
        self.plan, self.cache = plan, cache
        self.synthetic_ids, self.synthetic_ratio = list(synthetic_ids or []), synthetic_ratio  # training batches only
        self.loss_fn = SegmentationLoss()
        super().__init__(fold_dir, config, train_ids=train_ids, val_ids=val_ids, architecture=plan.network.name,
                         init_args=network_args(plan), plan_dict=plan.to_dict(), training=plan.training, progress=progress)

    def build_sampler(self) -> PatchSampler:
        return PatchSampler(self.cache, self.train_ids, tuple(self.plan.patch_size), self.plan.batch_size, augment=self.plan.augment,
                            foreground_fraction=self.plan.training.foreground_fraction, seed=self.config.seed,
                            synthetic_ids=self.synthetic_ids, synthetic_ratio=self.synthetic_ratio,
                            device=self.device)

    def compute_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        image, label = batch
        return self.loss_fn(self.model(image), label)

    def validate(self) -> dict[str, float]:
        """Whole-case sliding-window validation on (up to ``val_max_cases``) validation cases: loss and mean fg Dice."""

        ids = self.val_ids[: self.plan.training.val_max_cases]
        pred = Predictor(plan=self.plan, models=[self.model], device=self.device, tta=False, overlap=0.25)
        fg = [v for v in self.plan.labels.values() if v != 0]
        dices, losses = [], []
        for cid in ids:
            probs = pred.probabilities(self.cache.images[cid])
            ref = np.asarray(self.cache.labels[cid])
            losses.append(dice_ce_from_probabilities(probs, torch.as_tensor(ref.astype(np.int64)), fg))
            dices.append(dice_per_label(probs.argmax(0).numpy(), ref, fg))
        arr = np.asarray(dices, dtype=float)
        per_label = np.nanmean(np.where(np.isnan(arr), 1.0, arr), axis=0)
        return {"val_loss": float(np.mean(losses)), "val_dice": float(np.mean(per_label))}
