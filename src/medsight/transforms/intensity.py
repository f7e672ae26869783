"""Intensity normalisation per channel, as the plan says."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medsight.core.display import apply_window
from medsight.transforms.config import Normalization


def normalize_channel(x: np.ndarray, norm: Normalization) -> np.ndarray:
    """Normalise one channel ``(*spatial)`` to float32.

    * ``ct``: clip to the plan's foreground percentiles, then subtract the foreground mean and divide by its SD;
    * ``rgb``: subtract the dataset mean and divide by its SD (same for every image);
    * ``zscore``: subtract this image's mean and divide by its SD;
    * ``window:<preset>`` or ``window:<level>,<width>`` (e.g. ``window:lung``, ``window:40,400``): clip to the CT
      window and scale to ``[0, 1]`` (see :mod:`medsight.core.display`);
    * ``none``: cast only.
    """
    x = np.asarray(x, dtype=np.float32)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if norm.scheme == "ct":
        lo = norm.clip_low if norm.clip_low is not None else float(x.min())
        hi = norm.clip_high if norm.clip_high is not None else float(x.max())
        x = np.clip(x, lo, hi)
        return ((x - (norm.mean or 0.0)) / max(norm.std or 1.0, 1e-6)).astype(np.float32)
    if norm.scheme == "rgb":
        return ((x - (norm.mean or 0.0)) / max(norm.std or 1.0, 1e-6)).astype(np.float32)
    if norm.scheme.startswith("window:"):

        return apply_window(x, norm.scheme.split(":", 1)[1])
    if norm.scheme == "zscore":
        m, s = float(x.mean()), float(x.std())
        return ((x - m) / max(s, 1e-6)).astype(np.float32)
    return x


def normalize(image: np.ndarray, norms: Sequence[Normalization]) -> np.ndarray:
    """Normalise ``(C, *spatial)`` channel by channel."""
    if image.shape[0] != len(norms):
        raise ValueError(f"Expected {len(norms)} channels as planned, got {image.shape[0]}")
    return np.stack([normalize_channel(image[c], norms[c]) for c in range(image.shape[0])])
