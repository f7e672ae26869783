"""Input sanity check before prediction: is this scan like the ones the model was trained on?

Three comparisons with the training fingerprint stored in the plan:

* **modality**: the DICOM Modality of the input against the training data's (when both are known: a CT model given
  an MR series);
* **spacing**: each axis within ``[min / 2, max * 2]`` of the training spacings (skipped for 2D classification, which
  resizes every image to one size);
* **intensity**: a blank (constant) channel is always flagged. Channels normalised with dataset statistics (CT
  clipping, RGB, none) are compared with the training data's 0.5-99.5 percentile range (segmentation plans keep it):
  more than :data:`INTENSITY_FACTOR` times wider or narrower, or its centre more than one training range away (a CT
  series without its rescale to HU, an 8-bit model given 16-bit pictures). Per-image z-scored channels (MR, X-ray,
  the default) are scale-invariant by construction, so their absolute range is not compared: on the 260 Hippocampus
  MRIs, whose files range from 0-120 to 0-370,000, such a comparison flagged a third of the cases for nothing.

An out-of-distribution case gets one ``logging.warning`` line naming every finding, or a
:class:`~medsight.errors.MedsightError` with ``strict``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.image import Image
from medsight.errors import user_error

log = logging.getLogger(__name__)

SPACING_FACTOR = 2.0
INTENSITY_FACTOR = 4.0
#: Normalisation schemes that use dataset statistics: the network sees absolute intensities, so they are compared.
DATASET_SCALED = ("ct", "rgb", "none")
_SAMPLE = 200_000
_SPECIFIC = ("CT", "MR")


def _modality(image: Image, plan: Any) -> str | None:
    got = image.source.modality.strip().upper()
    trained = sorted({m for m in plan.modalities if m in _SPECIFIC})
    if not got or not trained or got in trained:
        return None
    return f"modality {got}, the model was trained on {'/'.join(trained)}"


def _spacing(image: Image, plan: Any) -> str | None:
    if plan.task == "classification" and getattr(plan, "resize", False):
        return None
    summary = (plan.fingerprint or {}).get("summary") or {}
    ranges = summary.get("spacing_range_mm")
    if not ranges or len(ranges) != len(image.spacing):
        return None
    out = any(not lo / SPACING_FACTOR <= s <= hi * SPACING_FACTOR for s, (lo, hi) in zip(image.spacing, ranges))
    if not out:
        return None
    allowed = " x ".join(f"{lo / SPACING_FACTOR:g}-{hi * SPACING_FACTOR:g}" for lo, hi in ranges)
    return f"spacing {' x '.join(f'{s:g}' for s in image.spacing)} mm outside {allowed} mm (training range x1/2..x2)"


def intensity_range(array: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """The 0.5 and 99.5 percentiles of one channel's finite values (a seeded sample of 200,000 for large images)."""
    flat = np.asarray(array, dtype=np.float32).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size > _SAMPLE:
        flat = flat[np.random.default_rng(seed).choice(flat.size, _SAMPLE, replace=False)]
    if not flat.size:
        return float("nan"), float("nan")
    lo, hi = np.percentile(flat, [0.5, 99.5])
    return float(lo), float(hi)


def _intensity(image: Image, plan: Any) -> list[str]:
    channels = ((plan.fingerprint or {}).get("full") or {}).get("channels") or []
    found = []
    for c in range(image.num_channels):
        name = channels[c].get("name", f"channel {c}") if c < len(channels) else f"channel {c}"
        lo, hi = intensity_range(image.array[c])
        if not np.isfinite(hi - lo) or hi <= lo:
            found.append(f"{name} is blank (constant intensity {lo:.4g})")
            continue
        scheme = plan.normalization[c].scheme if c < len(plan.normalization) else "zscore"
        if c >= len(channels) or scheme not in DATASET_SCALED:
            continue
        a, b = float(channels[c]["p00_5"]), float(channels[c]["p99_5"])
        width = max(b - a, 1e-6)
        if not 1 / INTENSITY_FACTOR <= (hi - lo) / width <= INTENSITY_FACTOR or abs((lo + hi) / 2 - (a + b) / 2) > width:
            found.append(f"{name} intensities [{lo:.4g}, {hi:.4g}] (0.5-99.5 %) vs training [{a:.4g}, {b:.4g}]")
    return found


def check_input(image: Image, plan: Any, *, where: str | Path, strict: bool = False) -> list[str]:
    """Compare one input with the training fingerprint of ``plan`` (segmentation or classification).

    Args:
        image: the input as read, before preprocessing.
        plan: the model's plan (its ``fingerprint`` and ``modalities``).
        where: the input's file, for the message.
        strict: raise instead of warning.

    Returns:
        The findings (empty when the input looks like the training data).

    Raises:
        MedsightError: with ``strict``, when there is a finding.
    """
    findings = [f for f in (_modality(image, plan), _spacing(image, plan)) if f] + _intensity(image, plan)
    if findings and strict:
        raise user_error("an input like the training data", "; ".join(findings), where,
                         "check that this is the right scan and model, or drop --strict to predict anyway")
    if findings:
        log.warning("out of distribution: %s: %s", where, "; ".join(findings))
    return findings
