"""Postprocessing of label maps: connected-component rules per label, learned on the validation folds (keep the k
largest components, drop components under a size, fill holes), and the one decision of which rule each label gets.

Keeping only the largest component (nnU-Net's postprocessing) is right for one liver and wrong for two lungs, and a
fixed rule for every dataset is wrong for a vessel tree. So each label gets the rule that raised its mean validation
Dice, chosen greedily in a fixed order (k largest, then the size floor, then hole filling) from a small set of
candidates, and a step is kept only when it gains more than 1e-4 Dice, so a label with no gain keeps its raw
prediction.

A rule for one label touches only that label's voxels: removed components become background, and only background
voxels enclosed by the label are filled.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medsight.metrics.segmentation import dice_per_label

#: Candidate numbers of components to keep (``0`` = all).
KEEP_CANDIDATES = (1, 2, 3)
#: Candidate size floors, as fractions of the smallest reference component seen on validation for the label.
MIN_SIZE_FRACTIONS = (0.05, 0.1, 0.25, 0.5)
#: A step must raise the label's mean validation Dice by more than this to be kept (nnU-Net's margin).
MIN_GAIN = 1e-4


@dataclass(frozen=True)
class ComponentRule:
    """What to do with one label's connected components.

    Attributes:
        keep: keep only this many largest components (``0``: keep all).
        min_size: drop components with fewer voxels than this (``0``: none).
        fill_holes: fill background holes enclosed by the label.
    """

    keep: int = 0
    min_size: int = 0
    fill_holes: bool = False

    @property
    def is_identity(self) -> bool:
        return self.keep == 0 and self.min_size == 0 and not self.fill_holes

    def as_dict(self) -> dict[str, Any]:
        return {"keep": self.keep, "min_size": self.min_size, "fill_holes": self.fill_holes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComponentRule:
        return cls(keep=int(d.get("keep", 0)), min_size=int(d.get("min_size", 0)),
                   fill_holes=bool(d.get("fill_holes", False)))


def _structure(ndim: int) -> np.ndarray:
    return np.ones((3,) * ndim, dtype=bool)


def apply_rule(labels: np.ndarray, value: int, rule: ComponentRule) -> np.ndarray:
    """``labels`` with ``rule`` applied to label ``value`` (a new array; ``labels`` is not changed)."""
    out = labels.copy()
    if rule.is_identity:
        return out
    mask = labels == value
    if not mask.any():
        return out
    if rule.keep or rule.min_size:
        comp, n = ndimage.label(mask, structure=_structure(labels.ndim))
        if n:
            sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:]
            keep = np.ones(n, dtype=bool)
            if rule.min_size:
                keep &= sizes >= rule.min_size
            if rule.keep and keep.sum() > rule.keep:
                order = np.argsort(-np.where(keep, sizes, -1), kind="stable")
                keep[:] = False
                keep[order[: rule.keep]] = True
            drop = np.concatenate([[False], ~keep])[comp]
            out[drop] = 0
            mask = out == value
    if rule.fill_holes and mask.any():
        filled = ndimage.binary_fill_holes(mask)
        out[filled & (out == 0)] = value
    return out


def keep_largest_component(labels: np.ndarray, values: list[int]) -> np.ndarray:
    """For each label value in ``values``, keep only its largest connected component (full connectivity)."""
    return apply_component_rules(labels, {int(v): ComponentRule(keep=1) for v in values})


def apply_component_rules(labels: np.ndarray, rules: dict[int, ComponentRule]) -> np.ndarray:
    """Apply each label's rule in label order."""
    out = labels
    for value in sorted(rules):
        if not rules[value].is_identity:
            out = apply_rule(out, value, rules[value])
    return out


def rules_of(postprocessing: Mapping[str, Any]) -> dict[int, ComponentRule]:
    """The component rules of a plan's ``postprocessing`` section.

    ``components`` (per label) is what :func:`decide_component_rules` writes; a plan from before it has only
    ``largest_component`` (the labels that keep their largest component), which reads as ``keep=1``.
    """
    rules = {int(v): ComponentRule(keep=1) for v in postprocessing.get("largest_component") or []}
    for v, d in (postprocessing.get("components") or {}).items():
        rules[int(v)] = ComponentRule.from_dict(d)
    return rules


def rule_text(rule: ComponentRule) -> str:
    """A rule in words: ``"keep the 2 largest components, drop components under 120 voxels, fill holes"``."""
    parts = []
    if rule.keep:
        parts.append("keep the largest component" if rule.keep == 1 else f"keep the {rule.keep} largest components")
    if rule.min_size:
        parts.append(f"drop components under {rule.min_size} voxels")
    if rule.fill_holes:
        parts.append("fill holes")
    return ", ".join(parts) or "none"


def postprocess_labels(labels: np.ndarray, postprocessing: Mapping[str, Any]) -> np.ndarray:
    """Apply a plan's postprocessing section to a predicted label map."""
    rules = rules_of(postprocessing)
    return apply_component_rules(labels, rules) if rules else labels


def _mean_dice(preds: Sequence[np.ndarray], refs: Sequence[np.ndarray], value: int) -> float:
    scores = [dice_per_label(p, r, [value])[0] for p, r in zip(preds, refs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # absent from every case: NaN, never chosen
        return float(np.nanmean(np.asarray(scores, dtype=float))) if scores else float("nan")


def _smallest_reference_component(refs: Sequence[np.ndarray], value: int) -> int:
    smallest = 0
    for r in refs:
        mask = r == value
        if not mask.any():
            continue
        comp, n = ndimage.label(mask, structure=_structure(r.ndim))
        size = int(np.bincount(comp.ravel(), minlength=n + 1)[1:].min())
        smallest = size if smallest == 0 else min(smallest, size)
    return smallest


def decide_rule(preds: Sequence[np.ndarray], refs: Sequence[np.ndarray], value: int) -> tuple[ComponentRule, float, float]:
    """The rule for one label, chosen greedily on validation pairs; returns ``(rule, dice_without, dice_with)``."""
    base = _mean_dice(preds, refs, value)
    if not np.isfinite(base):
        return ComponentRule(), base, base
    best, best_dice = ComponentRule(), base

    def score(rule: ComponentRule) -> float:
        return _mean_dice([apply_rule(p, value, rule) for p in preds], refs, value)

    def first_better(candidates: Iterable[ComponentRule]) -> None:
        nonlocal best, best_dice
        found, found_dice = best, best_dice
        for cand in candidates:
            d = score(cand)
            if d > found_dice + MIN_GAIN:
                found, found_dice = cand, d
        best, best_dice = found, found_dice

    first_better(ComponentRule(keep=k) for k in KEEP_CANDIDATES)
    smallest = _smallest_reference_component(refs, value)
    if smallest > 1:
        sizes = sorted({max(1, int(round(f * smallest))) for f in MIN_SIZE_FRACTIONS})
        first_better(ComponentRule(keep=best.keep, min_size=s, fill_holes=best.fill_holes) for s in sizes)
    first_better([ComponentRule(keep=best.keep, min_size=best.min_size, fill_holes=True)])
    return best, base, best_dice


def decide_component_rules(pairs: Iterable[tuple[np.ndarray, np.ndarray]], foreground: Sequence[int], *,
                           allowed: bool = True, decided: bool = True,
                           absent: Sequence[Collection[int]] | None = None) -> dict[str, Any]:
    """The postprocessing decision, made on pooled validation predictions: one :class:`ComponentRule` per label.

    Args:
        pairs: (prediction, reference) label maps of the validation cases.
        foreground: the label values to decide for.
        allowed: the plan's ``postprocessing.allowed`` (``False``: never postprocess, but still report the Dice).
        decided: whether every fold contributed (recorded, so a later run with more folds decides again).
        absent: partial labels, per pair the label values that case did not annotate: a label is decided and
            scored only on the cases that annotated it (where it was not contoured, its empty reference would
            reward any rule that deletes the organ the network rightly found).

    Returns:
        The plan's ``postprocessing`` section: ``components`` (label -> rule, only labels with a rule),
        ``largest_component`` (the labels whose rule is exactly "keep the largest", for readers of older plans),
        ``allowed``, ``decided``, ``dice_without`` and ``dice_with`` per label.
    """
    preds, refs = [], []
    for p, r in pairs:
        preds.append(p)
        refs.append(r)
    components: dict[str, dict[str, Any]] = {}
    without: dict[str, float] = {}
    with_: dict[str, float] = {}
    skip = [{int(v) for v in a} for a in absent] if absent is not None else [set() for _ in preds]
    if len(skip) != len(preds):
        raise ValueError(f"absent: {len(skip)} entries for {len(preds)} prediction pairs")
    for v in (int(x) for x in foreground):
        pv = [p for p, gone in zip(preds, skip) if v not in gone]
        rv = [r for r, gone in zip(refs, skip) if v not in gone]
        rule, before, after = decide_rule(pv, rv, v) if allowed else (ComponentRule(), _mean_dice(pv, rv, v), float("nan"))
        if not allowed:
            after = before
        without[str(v)], with_[str(v)] = before, after
        if not rule.is_identity:
            components[str(v)] = rule.as_dict()
    largest = [int(v) for v, d in components.items() if ComponentRule.from_dict(d) == ComponentRule(keep=1)]
    return {"components": components, "largest_component": largest, "allowed": allowed, "decided": decided,
            "dice_without": without, "dice_with": with_}
