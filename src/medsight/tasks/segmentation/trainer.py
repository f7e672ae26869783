"""One fold of a segmentation plan on the shared :class:`~medsight.engine.trainer.Trainer`: foreground-oversampled
patches, Dice + cross-entropy with deep supervision (marginal over partial labels, :mod:`.loss`), whole-case
sliding-window validation, and fine-tuning from a checkpoint (``--init-from``, :func:`init_from_checkpoint`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.engine.config import RunOptions
from medsight.engine.run import LAST
from medsight.engine.trainer import Trainer
from medsight.metrics.segmentation import dice_per_label
from medsight.tasks.segmentation.finetune import encoder_parameters, init_from_checkpoint
from medsight.tasks.segmentation.loss import SegmentationLoss, whole_case_loss
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


class SegmentationTrainer(Trainer):
    """Trains one fold of a segmentation plan: foreground-oversampled patches, Dice+CE with deep supervision,
    whole-case sliding-window validation (mean foreground Dice selects the best checkpoint)."""

    cpu_auto_bf16 = True  # checked on three datasets and two seeds: docs/benchmarks.md

    def __init__(self, plan: Plan, cache: CaseCache, train_ids: list[str], val_ids: list[str], fold_dir: str | Path,
                 config: RunOptions, *, progress: Callable[[dict[str, Any]], None] | None = None,
                 synthetic_ids: list[str] | None = None, synthetic_ratio: float = 0.0) -> None:
        self.plan, self.cache = plan, cache
        self.synthetic_ids, self.synthetic_ratio = list(synthetic_ids or []), synthetic_ratio  # training batches only
        self.loss_fn = SegmentationLoss()
        self.init_report: dict[str, Any] = {}  # what --init-from loaded (set by build_model)
        super().__init__(fold_dir, config, train_ids=train_ids, val_ids=val_ids, architecture=plan.network.name,
                         init_args=network_args(plan), plan_dict=plan.to_dict(), training=plan.training, progress=progress)

    def build_model(self) -> torch.nn.Module:
        """The planned network; with ``--init-from``, initialised from that checkpoint's matching weights."""
        model = super().build_model()
        if self.config.init_from and not (self.config.resume and (self.fold_dir / LAST).is_file()):
            self.init_report = init_from_checkpoint(model, self.config.init_from, architecture=self.architecture,
                                                    labels=self.plan.labels)
        return model

    def build_sampler(self) -> PatchSampler:
        absent = {c: v for c, v in self.plan.absent_labels.items() if c in set(self.train_ids)}
        return PatchSampler(self.cache, self.train_ids, tuple(self.plan.patch_size), self.plan.batch_size, augment=self.plan.augment,
                            foreground_fraction=self.plan.training.foreground_fraction, seed=self.config.seed,
                            synthetic_ids=self.synthetic_ids, synthetic_ratio=self.synthetic_ratio,
                            device=self.device, absent=absent or None, num_classes=self.plan.num_classes)

    def before_epoch(self) -> None:
        """With ``--freeze-encoder-epochs N``: the encoder's weights stay fixed for the first N epochs."""
        frozen = self.config.freeze_encoder_epochs
        if frozen:
            for p in encoder_parameters(self.model, self.architecture):
                p.requires_grad_(self.epoch >= frozen)

    def compute_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        image, label, *rest = batch
        return self.loss_fn(self.model(image), label, rest[0] if rest else None)

    def validate(self) -> dict[str, float]:
        """Whole-case sliding-window validation on (up to ``val_max_cases``) validation cases: loss and mean fg Dice.

        A label not annotated in a case (partial labels) is not scored there; a label empty in both reference and
        prediction scores 1; the mean is over labels of the per-label means over the cases that annotate them."""

        ids = self.val_ids[: self.plan.training.val_max_cases]
        pred = _validation_predictor(self.plan, self.model, self.device)
        fg = [v for v in self.plan.labels.values() if v != 0]
        dices, losses = [], []
        for cid in ids:
            probs = pred.probabilities(self.cache.images[cid])
            ref = np.asarray(self.cache.labels[cid])
            absent = self.plan.absent_of(cid)
            losses.append(whole_case_loss(probs, torch.as_tensor(ref.astype(np.int64)), fg, absent))
            row = dice_per_label(probs.argmax(0).numpy(), ref, fg)
            dices.append([math.nan if v in absent else (1.0 if math.isnan(d) else d) for v, d in zip(fg, row)])
        arr = np.asarray(dices, dtype=float)
        scored = np.isfinite(arr).any(axis=0)
        per_label = [float(np.nanmean(arr[:, j])) for j in range(arr.shape[1]) if scored[j]]
        return {"val_loss": float(np.mean(losses)), "val_dice": float(np.mean(per_label)) if per_label else math.nan}

    def estimate_validation_seconds(self) -> float:
        """One validation case (the first) predicted and timed, scaled by the voxels of all the validated cases."""
        ids = self.val_ids[: self.plan.training.val_max_cases]
        if not ids:
            return 0.0
        image = self.cache.images[ids[0]]
        t0 = time.perf_counter()
        _validation_predictor(self.plan, self.model, self.device).probabilities(image)
        voxels = sum(math.prod(self.cache.images[c].shape[1:]) for c in ids)
        return (time.perf_counter() - t0) * voxels / max(math.prod(image.shape[1:]), 1)


def _validation_predictor(plan: Plan, model: torch.nn.Module, device: torch.device) -> Predictor:
    """The in-training validation's sliding window (no TTA, overlap 0.25); :meth:`SegmentationTrainer.validate` is
    also run on a stand-in object by the multi-task trainer, so this is not a method."""
    return Predictor(plan=plan, models=[model], device=device, tta=False, overlap=0.25)


__all__ = ["SegmentationLoss", "SegmentationTrainer", "network_args"]
