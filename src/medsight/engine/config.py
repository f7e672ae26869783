"""The two kinds of training settings, kept apart on purpose:

* :class:`TrainingConfig` is the ``training`` section of a run's ``plans.json``: chosen by the planner from the
  data, saved with the run and editable (optimiser, learning rate, schedule, epochs, iterations);
* :class:`RunOptions` are the options of one invocation (``medsight train --epochs/--time-budget/--seed/--device
  ...``): they override the plan for this run only and are not saved in the plan.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation defaults; edit plans.json or pass CLI flags to change them."""

    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 3e-5
    schedule: str = "cosine"
    warmup_fraction: float = 0.03
    iterations_per_epoch: int = 100
    epochs: int = 100
    foreground_fraction: float = 0.33
    val_max_cases: int = 24


@dataclass(frozen=True)
class RunOptions:
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
        precision: ``auto`` (float16 autocast with loss scaling on a GPU; on a CPU bfloat16 autocast for the tasks
            checked with it, where the processor has bfloat16 instructions, else float32: ``engine/precision.py``),
            ``fp32``, ``bf16`` (bfloat16 autocast on either) or ``fp16`` (GPU only).
        init_from: segmentation fine-tuning: a medsight checkpoint whose weights matching by name and shape
            initialise the network (a new head when the labels differ); ignored when resuming.
        freeze_encoder_epochs: with ``init_from``: train the encoder only from this epoch on (0: never frozen).
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
    init_from: str | None = None
    freeze_encoder_epochs: int = 0


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
