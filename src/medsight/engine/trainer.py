"""The training loop, shared by every task: one fold, resumable, within an epoch count or a wall-time budget.

:class:`Trainer` is the task-independent loop; :class:`SegmentationTrainer` binds it to patches, Dice+CE and
sliding-window validation; ``medsight.tasks.classification.pipeline`` binds it to whole images and AUC.

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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.core.atomic import remove_stale_temporaries, write_text
from medsight.engine import distributed
from medsight.engine.checkpoint import load_checkpoint, save_checkpoint
from medsight.engine.config import RunOptions, TrainingConfig
from medsight.engine.curves import plot_curves
from medsight.engine.distributed import broadcast as distributed_broadcast
from medsight.engine.precision import autocast_dtype, precision_name
from medsight.engine.run import BEST, LAST
from medsight.engine.schedule import lr_at
from medsight.errors import MedsightError
from medsight.models.registry import create_model
from medsight.transforms.sampler import Prefetcher

log = logging.getLogger(__name__)

# Under a wall-time budget, in-training validation may take at most this share of the time trained so far (the last
# epoch is always validated). Whole-case validation of large CTs costs more than an epoch of training: on OpenKBP
# (24 validation cases) it took 170 s after each 130-s epoch, more than half of a 20-minute budget.
VALIDATION_SHARE = 0.1


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


class Trainer:
    """The task-independent training loop: optimiser, learning-rate schedule, AMP, gradient clipping, time budget,
    early stopping, checkpoints (last and best), exact resume, ``metrics.csv`` and curves.

    A task subclasses it and implements :meth:`build_model`, :meth:`build_sampler`, :meth:`compute_loss` and
    :meth:`validate`; it sets the attributes it needs *before* calling ``super().__init__``.

    Class attributes:
        metric_columns: validation metrics written to ``metrics.csv`` (beside ``val_loss``).
        selection_metric: the one (higher is better) that picks ``checkpoint_best.pt`` and drives early stopping.
        cpu_auto_bf16: whether ``--precision auto`` may pick bfloat16 on a CPU with bfloat16 instructions; set by the
            tasks whose quality was checked with it.
    """

    metric_columns: tuple[str, ...] = ("val_dice",)
    selection_metric = "val_dice"
    cpu_auto_bf16 = False

    def __init__(self, fold_dir: str | Path, config: RunOptions, *, train_ids: list[str], val_ids: list[str],
                 architecture: str, init_args: dict[str, Any], plan_dict: dict[str, Any], training: TrainingConfig,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        if not train_ids:
            raise MedsightError("Expected at least one training case, got none; check the split")

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
        self.amp_dtype = autocast_dtype(config.precision, self.device, cpu_bf16=self.cpu_auto_bf16)
        self.precision = precision_name(self.amp_dtype)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.sampler = self.build_sampler()
        self._sampler_state: dict[str, Any] | None = None
        self.epoch = 0
        self.elapsed = 0.0
        self.val_seconds = 0.0  # time spent in in-training validation (part of ``elapsed``)
        self.last_val_seconds = 0.0  # the latest validation's time: the estimate of the next one
        self.best = -math.inf
        self.best_epoch = 0
        self.history: list[dict[str, float]] = []
        self.epochs = config.epochs or training.epochs
        self.iters = config.iterations_per_epoch or training.iterations_per_epoch
        self.stopped_early = False
        if config.resume and (self.fold_dir / LAST).is_file():
            self._resume(self.fold_dir / LAST)

    # ------------------------------------------------------------------------------------------ task hooks
    def build_model(self) -> torch.nn.Module:

        return create_model(self.architecture, **self.init_args)

    def build_sampler(self) -> Any:
        """An object with ``next_batch()``, ``state_dict()`` and ``load_state_dict()`` (see :class:`PatchSampler`)."""
        raise NotImplementedError

    def compute_loss(self, batch: Any) -> torch.Tensor:
        """The loss of one batch already on the device (called under autocast)."""
        raise NotImplementedError

    def before_epoch(self) -> None:
        """Called before each training epoch, with :attr:`epoch` the number of epochs done (e.g. to unfreeze layers)."""

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
            "val_seconds": self.val_seconds, "last_val_seconds": self.last_val_seconds,
            "best_epoch": self.best_epoch, "history": self.history,
            "sampler": self._sampler_state or self.sampler.state_dict(), "torch_rng": torch.get_rng_state(),
            "train_ids": self.train_ids, "val_ids": self.val_ids, "config": asdict(self.config),
            "selection_metric": self.selection_metric, "precision": self.precision,
        }

    def _resume(self, path: Path) -> None:
        if self.dist.is_main:  # a killed run may have left temporary files of its atomic writes behind

            for stale in remove_stale_temporaries(self.fold_dir):
                log.info("removed %s, left by an interrupted write", stale.name)
        state = load_checkpoint(path)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.elapsed, self.best = int(state["epoch"]), float(state["elapsed"]), float(state["best"])
        self.best_epoch = int(state.get("best_epoch", self.epoch))
        self.val_seconds = float(state.get("val_seconds", 0.0))
        self.last_val_seconds = float(state.get("last_val_seconds", 0.0))
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
        self.before_epoch()
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
        log.info("training arithmetic: %s (--precision %s)", self.precision, self.config.precision)
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
                if self.val_ids and self.dist.is_main and self._validate_now(last, spent):
                    self.model.eval()
                    v0 = time.perf_counter()
                    with torch.no_grad():
                        val.update(self.validate())
                    self.last_val_seconds = time.perf_counter() - v0
                    self.val_seconds += self.last_val_seconds
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
                    self.save(BEST, resumable=False)
                if patience and self.val_ids and self.epoch - self.best_epoch >= patience:
                    self.stopped_early = True
                    log.info("early stop at epoch %d: %s has not improved for %d epochs (best %.4f at epoch %d)",
                             self.epoch, self.selection_metric, patience, self.best, self.best_epoch)
                self.save(LAST)
                if self.dist.is_main:
                    self._write_metrics()
                if self.progress:
                    self.progress({"kind": "epoch", **row, "best": self.best, "metric": self.selection_metric})
                if self.dist.enabled:  # rank 0 validated and timed: every rank takes its decisions
                    self.elapsed, self.stopped_early, self.best, self.best_epoch, epoch_seconds = distributed_broadcast(
                        (self.elapsed, self.stopped_early, self.best, self.best_epoch, epoch_seconds))
        finally:
            batches.close()
        if not self.val_ids or not (self.fold_dir / BEST).exists():
            self.save(BEST, resumable=False)  # without validation the best model is the final one
        return {"epochs": self.epoch, "seconds": self.elapsed, "precision": self.precision,
                f"best_{self.selection_metric}": self.best,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early, "history": self.history}

    def _validate_now(self, last: bool, spent: float) -> bool:
        """Validate this epoch? Every ``val_every`` epochs and the last; under a time budget also only while the
        validations so far, plus one more as long as the last (or as :meth:`estimate_validation_seconds` says,
        before the first), stay within :data:`VALIDATION_SHARE` of the time."""
        if last:
            return True
        if self.epoch % self.config.val_every:
            return False
        if not self.config.time_budget_s:
            return True
        if not self.last_val_seconds:  # before the first validation: its cost from a sample, where the task has one
            t0 = time.perf_counter()
            self.model.eval()
            with torch.no_grad():
                estimate = self.estimate_validation_seconds()
            self.model.train()
            self.val_seconds += time.perf_counter() - t0  # the sample was validation work, inside this epoch's time
            if estimate is not None:
                self.last_val_seconds = max(float(estimate), 1e-6)
        return self.val_seconds + self.last_val_seconds <= VALIDATION_SHARE * (self.elapsed + spent + self.last_val_seconds)

    def estimate_validation_seconds(self) -> float | None:
        """Expected seconds of one in-training validation, asked once under a time budget before the first one
        (in eval mode, without gradients); ``None``, the default: unknown, so the first epoch validates and its time
        is the estimate. Tasks whose validation is costly (whole 3D cases) time a sample of it."""
        return None

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

        plot_curves([self.fold_dir / "metrics.csv"], self.fold_dir / "curves.png")


