"""Batched, seeded augmentation on tensors: parameters are drawn first, then applied deterministically."""

from medsight.augment.pipeline import AugmentParams, augment_batch

__all__ = ["AugmentParams", "augment_batch"]
