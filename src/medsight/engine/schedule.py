"""Learning-rate schedules as functions of training progress in [0, 1] (epochs done or wall time used)."""

from __future__ import annotations

import math

from medsight.errors import did_you_mean


def lr_at(progress: float, *, base: float, schedule: str, warmup: float = 0.0) -> float:
    """Learning rate at ``progress`` (0 = start, 1 = end): linear warm-up, then ``cosine``, ``poly`` or ``constant``."""
    p = min(max(progress, 0.0), 1.0)
    if warmup > 0 and p < warmup:
        return base * (p / warmup) * 0.9 + base * 0.1 * (p / warmup)
    q = (p - warmup) / max(1.0 - warmup, 1e-8)
    if schedule == "cosine":
        return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * q)))
    if schedule == "poly":
        return base * (1 - q) ** 0.9
    if schedule == "constant":
        return base
    raise did_you_mean(schedule, ["cosine", "poly", "constant"], "schedule")
