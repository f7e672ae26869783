"""Lesions: connected components of a segmentation as detections, and lesion-level evaluation (FROC, CPM).

Detection view (:func:`detect_lesions`): the connected components (full connectivity: faces, edges and corners) of a
label value, or of a probability map above a threshold; each gets a confidence score, the highest probability of
the label inside it (1.0 without probabilities), and components smaller than ``min_volume`` (mm³, mm² in 2D) are
dropped.

Matching rule (:func:`match_case`): detections are taken by decreasing score; a detection *hits* a reference lesion
(a connected component of the reference) when they share at least one voxel. It is a true positive for the
not-yet-hit reference it overlaps most; when every reference it overlaps is already hit it is a duplicate, which
counts neither as a true nor as a false positive (as in LUNA16); a detection overlapping no reference is a false
positive. A reference is detected at threshold ``t`` when its first (highest-scoring) hit has score ``>= t``.

FROC (:func:`froc`): for every distinct score ``t``, sensitivity = detected references / all references, and false
positives per case = FP detections with score ``>= t`` / number of cases. The LUNA16 competition performance metric
(CPM) is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FP per case, the sensitivity at a rate ``r`` being the
highest sensitivity reached with at most ``r`` FP per case (the whole list of detections when it never exceeds ``r``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medsight.errors import user_error

#: FP-per-case rates of the LUNA16 CPM.
CPM_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a boolean ``(*spatial)`` mask, full connectivity; ``(labelled int32, count)``."""
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    labelled, count = ndimage.label(m, structure=ndimage.generate_binary_structure(m.ndim, m.ndim))
    return labelled.astype(np.int32, copy=False), int(count)


@dataclass(frozen=True)
class Detection:
    """One detected lesion. ``index`` is its value in the component map; ``centre_index`` is in array order
    ``(z, y, x)``; ``size`` in mm³ (mm² in 2D)."""

    index: int
    score: float
    voxels: int
    size: float
    centre_index: tuple[float, ...]


def detect_lesions(
    mask: np.ndarray,
    *,
    spacing: Sequence[float],
    probability: np.ndarray | None = None,
    threshold: float | None = None,
    min_volume: float = 0.0,
) -> tuple[list[Detection], np.ndarray]:
    """Connected components as scored detections.

    Args:
        mask: ``(*spatial)`` boolean mask of one label (``labels == value``).
        spacing: voxel size per array axis (mm).
        probability: ``(*spatial)`` probability of that label, for the scores (and ``threshold``).
        threshold: when given with ``probability``, detect components of ``probability >= threshold`` instead of
            ``mask`` (a low threshold gives more candidates and a longer FROC curve).
        min_volume: drop components smaller than this (mm³; mm² in 2D).

    Returns:
        The detections (by decreasing score) and the ``int32`` component map (dropped components are 0).
    """
    m = np.asarray(mask, dtype=bool)
    prob = None if probability is None else np.asarray(probability, dtype=np.float32)
    if prob is not None and prob.shape != m.shape:
        raise user_error(f"a probability map of shape {m.shape}", f"shape {prob.shape}", None,
                         "pass the probabilities of the same case and grid")
    if threshold is not None and prob is not None:
        m = prob >= float(threshold)
    labelled, count = components(m)
    if count == 0:
        return [], labelled
    from scipy import ndimage

    idx = np.arange(1, count + 1)
    voxels = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    unit = float(np.prod(spacing))
    scores = (np.asarray(ndimage.maximum(prob, labelled, idx), dtype=float) if prob is not None
              else np.ones(count))
    centres = ndimage.center_of_mass(m, labelled, idx)
    keep = np.ones(count + 1, dtype=bool)
    out = []
    for i in range(count):
        size = float(voxels[i]) * unit
        if size < min_volume:
            keep[i + 1] = False
            continue
        out.append(Detection(int(idx[i]), float(scores[i]), int(voxels[i]), size,
                             tuple(float(c) for c in centres[i])))
    labelled = np.where(keep[labelled], labelled, 0).astype(np.int32)
    return sorted(out, key=lambda d: -d.score), labelled


@dataclass
class CaseMatch:
    """The detections of one case against its reference lesions.

    Attributes:
        case: case id.
        n_reference: number of reference lesions.
        tp_scores: score of the first hit of each detected reference.
        fp_scores: scores of the false positive detections.
        duplicates: detections on already-hit references (ignored).
        statuses: ``(detection index, score, "tp" | "fp" | "duplicate", reference index or 0)``.
    """

    case: str
    n_reference: int
    tp_scores: list[float] = field(default_factory=list)
    fp_scores: list[float] = field(default_factory=list)
    duplicates: int = 0
    statuses: list[tuple[int, float, str, int]] = field(default_factory=list)


def match_case(case: str, detections: Sequence[Detection], detection_map: np.ndarray,
               reference: np.ndarray) -> CaseMatch:
    """Apply the matching rule (module docstring) to one case.

    Args:
        case: case id.
        detections: from :func:`detect_lesions`.
        detection_map: their component map.
        reference: ``(*spatial)`` boolean reference mask; its connected components are the reference lesions.
    """
    ref_map, n_ref = components(reference)
    if ref_map.shape != detection_map.shape:
        raise user_error(f"a reference of shape {detection_map.shape}", f"shape {ref_map.shape}", case,
                         "pair each prediction with the reference of the same case")
    result = CaseMatch(case, n_ref)
    hit: set[int] = set()
    for det in sorted(detections, key=lambda d: -d.score):
        overlap = ref_map[detection_map == det.index]
        refs, counts = np.unique(overlap[overlap > 0], return_counts=True)
        free = [(c, r) for r, c in zip(refs.tolist(), counts.tolist()) if r not in hit]
        if free:
            ref = max(free)[1]
            hit.add(ref)
            result.tp_scores.append(det.score)
            result.statuses.append((det.index, det.score, "tp", int(ref)))
        elif refs.size:
            result.duplicates += 1
            result.statuses.append((det.index, det.score, "duplicate", 0))
        else:
            result.fp_scores.append(det.score)
            result.statuses.append((det.index, det.score, "fp", 0))
    return result


@dataclass(frozen=True)
class FrocResult:
    """A FROC curve and its summary numbers.

    Attributes:
        thresholds: distinct scores, decreasing (one curve point each).
        sensitivity: detected references / all references at each threshold.
        fp_per_case: false positives per case at each threshold.
        rates: the FP-per-case rates of the CPM.
        sensitivity_at: sensitivity at each rate (module docstring).
        cpm: mean of ``sensitivity_at``.
        n_cases, n_reference: counts; ``sensitivity`` and ``fp_per_case`` at the lowest threshold are the totals.
    """

    thresholds: tuple[float, ...]
    sensitivity: tuple[float, ...]
    fp_per_case: tuple[float, ...]
    rates: tuple[float, ...]
    sensitivity_at: tuple[float, ...]
    cpm: float
    n_cases: int
    n_reference: int

    def as_dict(self) -> dict[str, object]:
        final = (self.sensitivity[-1], self.fp_per_case[-1]) if self.thresholds else (0.0 if self.n_reference else None, 0.0)
        return {"n_cases": self.n_cases, "n_reference_lesions": self.n_reference, "sensitivity": final[0],
                "fp_per_case": final[1], "cpm": self.cpm,
                "sensitivity_at_fp_per_case": {f"{r:g}": s for r, s in zip(self.rates, self.sensitivity_at)}}


def froc(matches: Sequence[CaseMatch], *, rates: Sequence[float] = CPM_RATES) -> FrocResult:
    """The FROC curve and CPM over cases (see the module docstring)."""
    if not matches:
        raise user_error("at least one case for the FROC", "none", None, "pass predictions with references")
    n_cases = len(matches)
    n_ref = sum(m.n_reference for m in matches)
    tp = np.sort(np.array([s for m in matches for s in m.tp_scores], dtype=float))
    fp = np.sort(np.array([s for m in matches for s in m.fp_scores], dtype=float))
    thresholds = np.unique(np.concatenate([tp, fp]))[::-1]
    # counts of scores >= t, via the sorted arrays
    n_tp = tp.size - np.searchsorted(tp, thresholds, side="left")
    n_fp = fp.size - np.searchsorted(fp, thresholds, side="left")
    sens = n_tp / n_ref if n_ref else np.full(thresholds.shape, np.nan)
    fppc = n_fp / n_cases
    at = []
    for r in rates:
        ok = fppc <= r + 1e-12
        at.append(float(np.max(sens[ok])) if ok.any() else 0.0)
    return FrocResult(tuple(float(t) for t in thresholds), tuple(float(s) for s in sens),
                      tuple(float(f) for f in fppc), tuple(float(r) for r in rates), tuple(at),
                      float(np.mean(at)), n_cases, n_ref)


__all__ = ["CPM_RATES", "CaseMatch", "Detection", "FrocResult", "components", "detect_lesions", "froc", "match_case"]
