"""The configuration objects of the transforms: how a channel is normalised, which augmentations run, and what a
preprocessing step needs to know of a plan.

The plans of the tasks (segmentation, classification, multitask) hold these objects; the transforms read only the
attributes named by :class:`SegmentationPreprocessing` and :class:`ClassificationPreprocessing`, so that they
never import a task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Normalization:
    """How one channel is normalised. ``scheme``: ``ct`` | ``zscore`` | ``rgb`` | ``none``."""

    scheme: str
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the batched augmentations (see :mod:`medsight.transforms.augment`)."""

    p_rotate: float = 0.2
    rotate_deg: float = 30.0
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    p_elastic: float = 0.1
    elastic_magnitude: float = 0.05
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    p_brightness: float = 0.15
    p_contrast: float = 0.15
    p_gamma: float = 0.3
    p_noise: float = 0.1
    p_blur: float = 0.2


def augment_from_dict(aug: dict[str, Any]) -> AugmentConfig:
    """The ``augment`` section of a plans.json (JSON lists back to the tuples the dataclass holds)."""
    fields: dict[str, Any] = {k: tuple(v) if k in ("scale_range", "mirror_axes") else v for k, v in aug.items()}
    return AugmentConfig(**fields)


class SegmentationPreprocessing(Protocol):
    """What :func:`medsight.transforms.cache.preprocess_case` reads of a plan (the segmentation and multitask plans
    have these fields)."""

    @property
    def target_spacing(self) -> Sequence[float]: ...
    @property
    def normalization(self) -> Sequence[Normalization]: ...
    @property
    def crop_nonzero(self) -> bool: ...
    @property
    def labels(self) -> dict[str, int]: ...
    @property
    def binary_masks(self) -> bool: ...
    @property
    def num_classes(self) -> int: ...


class ClassificationPreprocessing(Protocol):
    """What :func:`medsight.transforms.classification.prepare_image` and the classification cache read of a plan."""

    @property
    def dims(self) -> int: ...
    @property
    def channel_names(self) -> list[str]: ...
    @property
    def normalization(self) -> list[Normalization]: ...
    @property
    def input_size(self) -> list[int]: ...
    @property
    def resize(self) -> bool: ...
    @property
    def target_spacing(self) -> list[float] | None: ...
    @property
    def tabular(self) -> dict[str, Any]: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def multilabel(self) -> bool: ...
    @property
    def class_names(self) -> list[str]: ...


@dataclass(frozen=True)
class PreprocessConfig:
    """A plan's preprocessing fields as a small picklable object (sent to preprocessing worker processes)."""

    target_spacing: tuple[float, ...]
    normalization: tuple[Normalization, ...]
    crop_nonzero: bool
    labels: dict[str, int]
    binary_masks: bool

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, plan: SegmentationPreprocessing) -> PreprocessConfig:
        return cls(target_spacing=tuple(plan.target_spacing), normalization=tuple(plan.normalization),
                   crop_nonzero=plan.crop_nonzero, labels=dict(plan.labels), binary_masks=plan.binary_masks)


def normalization_text(n: Normalization) -> str:
    if n.scheme == "ct":
        return f"CT clip [{n.clip_low:.0f}, {n.clip_high:.0f}] then z-score"
    if n.scheme == "rgb":
        return "per-channel dataset z-score"
    return "per-image z-score" if n.scheme == "zscore" else n.scheme
