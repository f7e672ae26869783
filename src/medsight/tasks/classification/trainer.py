"""Classification on the shared training loop: whole-image batches, weighted loss or balanced sampling, AUC."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsight.engine.checkpoint import load_checkpoint
from medsight.engine.config import RunOptions
from medsight.engine.trainer import Trainer
from medsight.errors import user_error
from medsight.metrics.auc import macro_auc
from medsight.tasks.classification.plan import ClassificationPlan
from medsight.transforms.augment import augment_images, draw_params
from medsight.transforms.classification import ClassificationCache, tabular_width
from medsight.transforms.config import AugmentConfig

log = logging.getLogger(__name__)


class ClassificationSampler:
    """Draws augmented batches ``(image, target, tabular)`` of whole preprocessed images.

    Args:
        cache: the preprocessed cases.
        rows: cache rows to draw from (the fold's training cases).
        batch_size: samples per batch.
        augment: augmentation settings; ``None`` disables augmentation.
        balanced: draw each class equally often (single-label), instead of in proportion to its frequency.
        seed: seed of the sampler's own generators.
        synthetic: preprocessed synthetic cases that training batches may also draw (``--synthetic``).
        synthetic_ratio: probability that a sample of a batch comes from ``synthetic``.
    """

    def __init__(self, cache: ClassificationCache, rows: np.ndarray, batch_size: int, *, augment: AugmentConfig | None,
                 balanced: bool = False, seed: int = 0, synthetic: ClassificationCache | None = None,
                 synthetic_ratio: float = 0.0) -> None:
        self.cache, self.rows, self.batch_size, self.augment = cache, np.asarray(rows), batch_size, augment
        self.synthetic = synthetic if synthetic is not None and len(synthetic.ids) else None
        self.synthetic_ratio = synthetic_ratio if self.synthetic is not None else 0.0
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.weights: np.ndarray | None = None
        if balanced and cache.labels.ndim == 1:
            y = cache.labels[self.rows]
            counts = np.bincount(y)
            self.weights = 1.0 / counts[y]
            self.weights /= self.weights.sum()

    def state_dict(self) -> dict[str, Any]:
        return {"numpy": self.rng.bit_generator.state, "torch": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["numpy"]
        self.gen.set_state(state["torch"])

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_syn = int((self.rng.random(self.batch_size) < self.synthetic_ratio).sum()) if self.synthetic_ratio else 0
        n_real = self.batch_size - n_syn
        pick = np.sort(self.rng.choice(self.rows, size=n_real, replace=len(self.rows) < n_real or self.weights is not None,
                                       p=self.weights))
        image = torch.from_numpy(np.asarray(self.cache.images[pick], dtype=np.float32))
        target = torch.from_numpy(self.cache.labels[pick])
        tab = torch.from_numpy(self.cache.tabular[pick]) if self.cache.tabular.size else torch.zeros(len(pick), 0)
        if n_syn and self.synthetic is not None:  # synthetic cases: training batches only
            syn = np.sort(self.rng.choice(len(self.synthetic.ids), size=n_syn, replace=len(self.synthetic.ids) < n_syn))
            image = torch.cat([image, torch.from_numpy(np.asarray(self.synthetic.images[syn], dtype=np.float32))])
            target = torch.cat([target, torch.from_numpy(self.synthetic.labels[syn])])
            tab = torch.cat([tab, torch.zeros(n_syn, tab.shape[1])])
        if self.augment is not None:
            params = draw_params(image.shape[0], tuple(image.shape[2:]), self.augment, self.gen)
            image = augment_images(image, params, self.gen)
        return image, target, tab


def classification_loss(plan: ClassificationPlan, device: torch.device | str = "cpu") -> nn.Module:
    """Cross-entropy (single-label) or binary cross-entropy per class (multi-label), weighted as planned."""
    w = torch.tensor(plan.class_weights, dtype=torch.float32, device=device) if plan.imbalance == "weighted_loss" and plan.class_weights else None
    if plan.multilabel:
        return nn.BCEWithLogitsLoss(pos_weight=w)
    return nn.CrossEntropyLoss(weight=w)


def model_args(plan: ClassificationPlan) -> dict[str, Any]:
    """Constructor arguments of the planned classifier (stored in checkpoints)."""
    return {"spatial_dims": plan.dims, "in_channels": len(plan.channel_names), "num_classes": plan.num_classes,
            "input_size": list(plan.input_size), "tabular_features": tabular_width(plan.tabular), **plan.network_args}


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, tabular: np.ndarray | None, *, device: torch.device | str = "cpu",
                   batch_size: int = 64, mirror_axes: tuple[int, ...] = ()) -> np.ndarray:
    """Logits ``(N, K)`` of preprocessed images ``(N, C, *size)``; with ``mirror_axes``, averaged over those flips."""
    model.eval()
    out = []
    for a in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[a:a + batch_size], dtype=np.float32)).to(device)
        tab = torch.from_numpy(np.asarray(tabular[a:a + batch_size], dtype=np.float32)).to(device) \
            if tabular is not None and tabular.size else None
        logits = model(x, tab) if tab is not None else model(x)
        for ax in mirror_axes:
            flipped = torch.flip(x, dims=(2 + ax,))
            logits = logits + (model(flipped, tab) if tab is not None else model(flipped))
        out.append((logits / (1 + len(mirror_axes))).float().cpu().numpy())
    k = getattr(model, "num_classes", None)
    return np.concatenate(out) if out else np.zeros((0, k or 0), np.float32)


def probabilities(logits: np.ndarray, multilabel: bool, temperature: float = 1.0) -> np.ndarray:
    t = torch.from_numpy(np.asarray(logits, dtype=np.float64)) / temperature
    return (torch.sigmoid(t) if multilabel else torch.softmax(t, dim=1)).numpy()


class ClassificationTrainer(Trainer):
    """Trains one fold of a classification plan; the validation AUC selects the best checkpoint and stops early."""

    metric_columns = ("val_auc", "val_accuracy")
    selection_metric = "val_auc"

    def __init__(self, plan: ClassificationPlan, cache: ClassificationCache, train_ids: list[str], val_ids: list[str],
                 fold_dir: str | Path, config: RunOptions, *, init_from: str | Path | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None, synthetic: ClassificationCache | None = None,
                 synthetic_ratio: float = 0.0) -> None:
        self.plan, self.cache, self.init_from = plan, cache, init_from
        self.synthetic, self.synthetic_ratio = synthetic, synthetic_ratio  # training batches only
        if config.patience is None:
            from dataclasses import replace

            config = replace(config, patience=plan.patience)
        super().__init__(fold_dir, config, train_ids=train_ids, val_ids=val_ids, architecture=plan.network,
                         init_args=model_args(plan), plan_dict=plan.to_dict(), training=plan.training, progress=progress)
        self.loss_fn = classification_loss(plan, self.device)

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if self.init_from is not None:

            state = load_checkpoint(self.init_from)
            loader = getattr(model, "load_pretrained", None)
            if loader is None:
                raise user_error("a classifier that can load pre-trained weights", self.architecture, self.init_from,
                                 "choose a registered classification network")
            skipped = loader(state["state_dict"])
            log.info("initialised from %s (%d tensors not matching kept their fresh values)", self.init_from, len(skipped))
        if self.plan.freeze_encoder:
            freeze = getattr(model, "freeze_encoder", None)
            if freeze is not None:
                freeze()
        return model

    def build_sampler(self) -> ClassificationSampler:
        return ClassificationSampler(self.cache, self.cache.rows(self.train_ids), self.plan.batch_size, augment=self.plan.augment,
                                     balanced=self.plan.imbalance == "sampler", seed=self.config.seed,
                                     synthetic=self.synthetic, synthetic_ratio=self.synthetic_ratio)

    def compute_loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        image, target, tab = batch
        logits = self.model(image, tab) if tab.shape[1] else self.model(image)
        return self.loss_fn(logits, target)

    def validation_logits(self, mirror_axes: tuple[int, ...] = ()) -> np.ndarray:
        rows = self.cache.rows(self.val_ids)
        return predict_logits(self.model, self.cache.images[rows], self.cache.tabular[rows] if self.cache.tabular.size else None,
                              device=self.device, batch_size=max(self.plan.batch_size, 32), mirror_axes=mirror_axes)

    def validate(self) -> dict[str, float]:
        rows = self.cache.rows(self.val_ids)
        logits = self.validation_logits()
        y = self.cache.labels[rows]
        loss = float(self.loss_fn(torch.from_numpy(logits).to(self.device), torch.from_numpy(y).to(self.device)))
        probs = probabilities(logits, self.plan.multilabel)
        auc = macro_auc(y, probs, self.plan.multilabel)
        if self.plan.multilabel:
            acc = float(((probs >= 0.5) == (y > 0.5)).mean())
        else:
            acc = float((probs.argmax(1) == y).mean())
        return {"val_loss": loss, "val_auc": auc, "val_accuracy": acc}
