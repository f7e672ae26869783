"""Does a 2D dataset have a canonical orientation? Measured from where its labels lie.

A chest X-ray is taken upright: the lungs are never upside down, and a model that trains on vertically flipped or
half-turned radiographs spends its steps on images it will never meet. A retinal photograph or an electron micrograph
has no such up: its vessels or membranes may point any way. nnU-Net augments every 2D dataset with mirroring along
both axes and rotations up to 180 degrees; over 1000 epochs that costs little, within a CPU budget of minutes it is
a large share of the steps.

The fingerprint measures it from the labels: the **label atlas** of each foreground label (the share of cases in
which each cell of a 32 x 32 grid over the image frame is foreground) is compared with itself mirrored along each
axis and turned by 90 degrees. The overlap (soft Dice) is set against the overlap of two atlases made from the
even and the odd cases (how alike two samples of the same data are). A transform whose overlap reaches
:data:`CONSISTENT_RATIO` of that is consistent with the data; the planner augments only with those. Measured on the
shared data (ratio of overlaps, capped at 1; up-down, left-right, 90 degrees): Montgomery lungs 0.53, 0.95, 0.55;
DRIVE vessels 1.0, 1.0, 0.98; ISBI 2012 membranes 0.97, 0.97, 0.97.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

#: Cells per side of the label atlas.
ATLAS_SIZE = 32
#: A transform is consistent with the data when its atlas overlap reaches this share of the split-half overlap.
CONSISTENT_RATIO = 0.85
#: The fingerprint's ``extra`` key of the orientation scores.
ORIENTATION_KEY = "orientation"
#: Below this many annotated cases of a label the atlas says nothing and every transform counts as consistent.
MIN_CASES = 6
TRANSFORMS = ("flip0", "flip1", "rot90")


def atlas_cells(mask: np.ndarray, size: int = ATLAS_SIZE) -> np.ndarray:
    """Share of each cell of a ``size x size`` grid over the frame of a 2D boolean ``mask`` that is foreground."""
    h, w = mask.shape
    rows = (np.arange(h) * size // h)[:, None]
    cols = (np.arange(w) * size // w)[None, :]
    index = (rows * size + cols).ravel()
    fg = np.bincount(index, weights=mask.ravel().astype(np.float64), minlength=size * size)
    n = np.bincount(index, minlength=size * size)
    return (fg / np.maximum(n, 1)).reshape(size, size)


def soft_dice(a: np.ndarray, b: np.ndarray) -> float:
    total = float(a.sum() + b.sum())
    return 2.0 * float(np.minimum(a, b).sum()) / total if total > 0 else 1.0


def transformed(atlas: np.ndarray, name: str) -> np.ndarray:
    if name == "rot90":
        return np.rot90(atlas)
    return np.flip(atlas, int(name[-1]))


@dataclass
class LabelAtlas:
    """Accumulates the atlas of every foreground label, case by case, in two halves (even and odd cases)."""

    sums: dict[int, list[np.ndarray]] = field(default_factory=dict)
    counts: dict[int, list[int]] = field(default_factory=dict)

    def add(self, label: np.ndarray, case_index: int, values: Iterable[int]) -> None:
        """Add one case's 2D label map; ``values``: the foreground labels annotated in it."""
        half = case_index % 2
        for v in values:
            sums = self.sums.setdefault(v, [np.zeros((ATLAS_SIZE, ATLAS_SIZE)), np.zeros((ATLAS_SIZE, ATLAS_SIZE))])
            counts = self.counts.setdefault(v, [0, 0])
            sums[half] += atlas_cells(label == v)
            counts[half] += 1

    def scores(self) -> dict[str, float]:
        """Per transform, the worst label's ratio of transformed-atlas overlap to split-half overlap (1.0 where the
        atlas is too thin to say)."""
        out = dict.fromkeys(TRANSFORMS, 1.0)
        for v, (even, odd) in self.sums.items():
            n_even, n_odd = self.counts[v]
            if n_even + n_odd < MIN_CASES or not n_even or not n_odd:
                continue
            halves = soft_dice(even / n_even, odd / n_odd)
            whole = (even + odd) / (n_even + n_odd)
            if halves <= 0 or whole.sum() == 0:
                continue
            for name in TRANSFORMS:
                out[name] = min(out[name], soft_dice(whole, transformed(whole, name)) / halves)
        return {k: round(v, 4) for k, v in out.items()}


def consistent_transforms(scores: dict[str, float]) -> set[str]:
    """The transforms (``flip0``, ``flip1``, ``rot90``) consistent with a dataset's orientation scores."""
    return {name for name in TRANSFORMS if scores.get(name, 1.0) >= CONSISTENT_RATIO}
