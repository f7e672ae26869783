"""The training loop, shared by every task: one fold, resumable, within an epoch count or a wall-time budget.

:class:`Trainer` is the task-independent loop; :class:`SegmentationTrainer` binds it to patches, Dice+CE and
sliding-window validation; ``medsight.tasks.classification`` binds it to whole images and AUC.

Writes into ``fold_dir``: ``checkpoint_last.pt`` (every epoch), ``checkpoint_best.pt`` (best validation score),
``metrics.csv`` (one row per epoch) and ``curves.png``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss

from medsight.errors import MedsightError, user_error
from medsight.io.atomic import write_text
from medsight.plan.planner import Plan, TrainingConfig
from medsight.preprocess.cache import CaseCache
from medsight.train.checkpoint import load_checkpoint, save_checkpoint
from medsight.train.distributed import broadcast as distributed_broadcast
from medsight.train.sampler import PatchSampler, Prefetcher
from medsight.train.schedule import lr_at

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class TrainConfig:
    """Run-time options of one training (the plan holds the data-derived ones).

    Attributes:
        epochs: number of epochs when no time budget is given (defaults to the plan's).
        time_budget_s: train until this wall time (seconds) and schedule the learning rate over it.
        iterations_per_epoch: optimiser steps per epoch (defaults to the plan's).
        seed: seed for weights, sampling and augmentation.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: CUDA when present.
        resume: continue from ``checkpoint_last.pt`` when it exists.
        val_every: validate every N epochs (the last epoch is always validated).
        deterministic: ask PyTorch for deterministic kernels.
        num_threads: CPU threads for PyTorch (default: PyTorch's choice).
        patience: stop when the selection metric has not improved for this many epochs (early stopping).
        precision: ``auto`` (float16 autocast with loss scaling on a GPU, float32 on a CPU), ``fp32``, ``bf16``
            (bfloat16 autocast on either; 1.5x faster training steps on this project's CPUs, see
            ``benchmarks/step_options.py``) or ``fp16`` (GPU only).
    """

    epochs: int | None = None
    time_budget_s: float | None = None
    iterations_per_epoch: int | None = None
    seed: int = 0
    device: str | None = None
    resume: bool = False
    val_every: int = 1
    deterministic: bool = False
    num_threads: int | None = None
    patience: int | None = None
    precision: str = "auto"


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a training precision on ``device`` (``None``: plain float32)."""
    if precision not in PRECISIONS:
        raise user_error(f"a precision in {', '.join(PRECISIONS)}", precision, None, "fix --precision")
    if precision == "fp16" and device.type != "cuda":
        raise user_error("a GPU for --precision fp16", device, None, "use --precision bf16 on a CPU")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


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


def dice_per_label(pred: np.ndarray, ref: np.ndarray, labels: list[int]) -> list[float]:
    """Dice of each label value (NaN when both are empty)."""
    out = []
    for v in labels:
        p, r = pred == v, ref == v
        denom = p.sum() + r.sum()
        out.append(float(2 * (p & r).sum() / denom) if denom else float("nan"))
    return out


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


class Trainer:
    """The task-independent training loop: optimiser, learning-rate schedule, AMP, gradient clipping, time budget,
    early stopping, checkpoints (last and best), exact resume, ``metrics.csv`` and curves.

    A task subclasses it and implements :meth:`build_model`, :meth:`build_sampler`, :meth:`compute_loss` and
    :meth:`validate`; it sets the attributes it needs *before* calling ``super().__init__``.

    Class attributes:
        metric_columns: validation metrics written to ``metrics.csv`` (beside ``val_loss``).
        selection_metric: the one (higher is better) that picks ``checkpoint_best.pt`` and drives early stopping.
    """

    metric_columns: tuple[str, ...] = ("val_dice",)
    selection_metric = "val_dice"

    def __init__(self, fold_dir: str | Path, config: TrainConfig, *, train_ids: list[str], val_ids: list[str],
                 architecture: str, init_args: dict[str, Any], plan_dict: dict[str, Any], training: TrainingConfig,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        if not train_ids:
            raise MedsightError("Expected at least one training case, got none; check the split")
        from medsight.train import distributed

        self.dist = distributed.init(config.device)
        if self.dist.rank:  # every rank samples its own patches; DDP copies rank 0's initial weights to all
            config = replace(config, seed=config.seed + 1000 * self.dist.rank)
        self.config, self.training = config, training
        self.train_ids, self.val_ids = list(train_ids), list(val_ids)
        self.fold_dir = Path(fold_dir)
        if self.dist.is_main:
            self.fold_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress if self.dist.is_main else None
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.dist.enabled and device == "cuda":
            device = f"cuda:{self.dist.local_rank}"
        self.device = torch.device(device)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        seed_everything(config.seed, config.deterministic)
        self.architecture, self.init_args, self.plan_dict = architecture, init_args, plan_dict
        self.model = self.build_model().to(self.device)
        self._ddp: torch.nn.Module | None = None
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(self.model, device_ids=ids)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if training.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=training.learning_rate, momentum=0.99,
                                                                    nesterov=True, weight_decay=training.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=training.learning_rate, weight_decay=training.weight_decay)
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.sampler = self.build_sampler()
        self._sampler_state: dict[str, Any] | None = None
        self.epoch = 0
        self.elapsed = 0.0
        self.best = -math.inf
        self.best_epoch = 0
        self.history: list[dict[str, float]] = []
        self.epochs = config.epochs or training.epochs
        self.iters = config.iterations_per_epoch or training.iterations_per_epoch
        self.stopped_early = False
        if config.resume and (self.fold_dir / "checkpoint_last.pt").is_file():
            self._resume(self.fold_dir / "checkpoint_last.pt")

    # ------------------------------------------------------------------------------------------ task hooks
    def build_model(self) -> torch.nn.Module:
        from medsight.models import create_model

        return create_model(self.architecture, **self.init_args)

    def build_sampler(self) -> Any:
        """An object with ``next_batch()``, ``state_dict()`` and ``load_state_dict()`` (see :class:`PatchSampler`)."""
        raise NotImplementedError

    def compute_loss(self, batch: Any) -> torch.Tensor:
        """The loss of one batch already on the device (called under autocast)."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """``val_loss`` and every name in :attr:`metric_columns` (NaN where not computed)."""
        raise NotImplementedError

    def to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        return batch

    # ------------------------------------------------------------------------------------------ state
    def _extra_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "elapsed": self.elapsed, "best": self.best,
            "best_epoch": self.best_epoch, "history": self.history,
            "sampler": self._sampler_state or self.sampler.state_dict(), "torch_rng": torch.get_rng_state(),
            "train_ids": self.train_ids, "val_ids": self.val_ids, "config": asdict(self.config),
            "selection_metric": self.selection_metric,
        }

    def _resume(self, path: Path) -> None:
        if self.dist.is_main:  # a killed run may have left temporary files of its atomic writes behind
            from medsight.io.atomic import remove_stale_temporaries

            for stale in remove_stale_temporaries(self.fold_dir):
                log.info("removed %s, left by an interrupted write", stale.name)
        state = load_checkpoint(path)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.elapsed, self.best = int(state["epoch"]), float(state["elapsed"]), float(state["best"])
        self.best_epoch = int(state.get("best_epoch", self.epoch))
        self.history = list(state["history"])
        if self.dist.rank:  # the checkpoint holds rank 0's sampler: the others draw fresh patches from a new seed
            self.config = replace(self.config, seed=self.config.seed + 7919 * self.epoch)
            self.sampler = self.build_sampler()
        else:
            self.sampler.load_state_dict(state["sampler"])
            torch.set_rng_state(state["torch_rng"])
        log.info("resumed %s at epoch %d (%.0f s trained)", path, self.epoch, self.elapsed)

    def save(self, name: str, *, resumable: bool = True) -> Path:
        """Write a checkpoint; ``resumable=False`` leaves out the optimiser state (a third of the size for AdamW
        weights + moments), as for ``checkpoint_best.pt``, which is only used for prediction. Only rank 0 writes."""
        if not self.dist.is_main:
            return self.fold_dir / name
        extra = self._extra_state()
        if not resumable:
            extra.pop("optimizer")
        return save_checkpoint(self.fold_dir / name, model=self.model, architecture=self.architecture,
                               init_args=self.init_args, plan=self.plan_dict, extra=extra)

    # ------------------------------------------------------------------------------------------ loop
    def _progress_fraction(self, epoch_float: float) -> float:
        """Training progress in [0, 1] by epochs (with a time budget, progress is measured in seconds instead)."""
        return epoch_float / max(self.epochs, 1)

    def _done(self, epoch_seconds: float) -> bool:
        if self.stopped_early:
            return True
        if self.config.time_budget_s:
            return self.elapsed + 0.25 * epoch_seconds >= self.config.time_budget_s
        return self.epoch >= self.epochs

    def train_epoch(self, batches: Prefetcher) -> float:
        """One epoch; under DDP :attr:`model` is the synchronising wrapper while it runs (hooks stay unchanged)."""
        module = self.model
        if self._ddp is not None:
            self.model = self._ddp
        try:
            return self._train_epoch(batches)
        finally:
            self.model = module

    def _train_epoch(self, batches: Prefetcher) -> float:
        self.model.train()
        losses = []
        tc = self.training
        t0 = time.perf_counter()
        budget = self.config.time_budget_s
        for it in range(self.iters):
            used = self.elapsed + time.perf_counter() - t0
            if budget and it > 0 and self._agree(used >= budget):
                break  # the budget ends inside this epoch: stop here and validate
            frac = used / budget if budget else self._progress_fraction(self.epoch + it / self.iters)
            lr = lr_at(frac, base=tc.learning_rate, schedule=tc.schedule, warmup=tc.warmup_fraction)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            batch = self.to_device(next(batches))
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss = self.compute_loss(batch)
            if not torch.isfinite(loss):
                raise MedsightError(f"Expected a finite training loss, got {loss.item()} at epoch {self.epoch}; "
                                    "lower the learning rate in plans.json or check the images for extreme values")
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 12.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            losses.append(float(loss.detach()))
            if self.progress:
                self.progress({"kind": "step", "epoch": self.epoch, "iteration": it + 1, "iterations": self.iters,
                               "loss": float(np.mean(losses[-20:])), "lr": lr})
        return float(np.mean(losses))

    def fit(self) -> dict[str, Any]:
        """Train until the epoch count, the time budget or early stopping ends it; returns a summary."""
        batches = Prefetcher(self.sampler)
        epoch_seconds = 0.0
        patience = self.config.patience
        try:
            while not self._done(epoch_seconds):
                t0 = time.perf_counter()
                train_loss = self.train_epoch(batches)
                self.epoch += 1
                spent = time.perf_counter() - t0
                last = self._done(spent) if not self.config.time_budget_s else \
                    self.elapsed + spent + 0.25 * spent >= self.config.time_budget_s
                val: dict[str, float] = {"val_loss": float("nan"), **{c: float("nan") for c in self.metric_columns}}
                if self.val_ids and self.dist.is_main and (self.epoch % self.config.val_every == 0 or last):
                    self.model.eval()
                    with torch.no_grad():
                        val.update(self.validate())
                epoch_seconds = time.perf_counter() - t0
                self.elapsed += epoch_seconds
                lr = self.optimizer.param_groups[0]["lr"]
                row = {"epoch": self.epoch, "train_loss": train_loss, **val, "lr": lr, "seconds": round(self.elapsed, 2)}
                self.history.append(row)
                # save the sampler as it was right after the last batch used, not after the prefetched ones
                self._sampler_state = batches.last_state
                score = val.get(self.selection_metric, float("nan"))
                if not math.isnan(score) and score > self.best:
                    self.best, self.best_epoch = score, self.epoch
                    self.save("checkpoint_best.pt", resumable=False)
                if patience and self.val_ids and self.epoch - self.best_epoch >= patience:
                    self.stopped_early = True
                    log.info("early stop at epoch %d: %s has not improved for %d epochs (best %.4f at epoch %d)",
                             self.epoch, self.selection_metric, patience, self.best, self.best_epoch)
                self.save("checkpoint_last.pt")
                if self.dist.is_main:
                    self._write_metrics()
                if self.progress:
                    self.progress({"kind": "epoch", **row, "best": self.best, "metric": self.selection_metric})
                if self.dist.enabled:  # rank 0 validated and timed: every rank takes its decisions
                    self.elapsed, self.stopped_early, self.best, self.best_epoch, epoch_seconds = distributed_broadcast(
                        (self.elapsed, self.stopped_early, self.best, self.best_epoch, epoch_seconds))
        finally:
            batches.close()
        if not self.val_ids or not (self.fold_dir / "checkpoint_best.pt").exists():
            self.save("checkpoint_best.pt", resumable=False)  # without validation the best model is the final one
        return {"epochs": self.epoch, "seconds": self.elapsed, f"best_{self.selection_metric}": self.best,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early, "history": self.history}

    def _agree(self, flag: bool) -> bool:
        """``flag`` as rank 0 sees it, on every rank (so all ranks run the same number of steps)."""
        return bool(distributed_broadcast(flag)) if self.dist.enabled else flag

    def _write_metrics(self) -> None:
        columns = ("epoch", "train_loss", "val_loss", *self.metric_columns, "lr", "seconds")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for row in self.history:
            w.writerow({k: (f"{row[k]:.6g}" if isinstance(row.get(k), float) else row.get(k, "")) for k in columns})
        write_text(self.fold_dir / "metrics.csv", buf.getvalue())
        from medsight.evaluate.report import plot_curves

        plot_curves([self.fold_dir / "metrics.csv"], self.fold_dir / "curves.png")


class SegmentationTrainer(Trainer):
    """Trains one fold of a segmentation plan: foreground-oversampled patches, Dice+CE with deep supervision,
    whole-case sliding-window validation (mean foreground Dice selects the best checkpoint)."""

    def __init__(self, plan: Plan, cache: CaseCache, train_ids: list[str], val_ids: list[str], fold_dir: str | Path,
                 config: TrainConfig, *, progress: Callable[[dict[str, Any]], None] | None = None,
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
        from medsight.infer.predictor import Predictor

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
