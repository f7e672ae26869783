"""CT display windows: named presets and custom level/width, for preprocessing, conversion and overlays.

A window ``(level, width)`` in image units (HU for CT) shows ``level - width/2 .. level + width/2``; values below
are black, above white. The presets are the usual radiology reading windows:

======================  ======  =====  =====================================
name                    level   width  shows
======================  ======  =====  =====================================
``lung``                -600    1500   lung parenchyma, airways
``mediastinum``         50      350    heart, vessels, lymph nodes
``abdomen``             40      400    abdominal soft tissue
``soft_tissue``         40      400    same as abdomen
``liver``               60      160    liver lesions (narrow soft tissue)
``bone``                400     1800   cortical and trabecular bone
``brain``               40      80     brain parenchyma
``subdural``            75      215    subdural haematoma
``stroke``              40      40     early ischaemia
``temporal_bone``       600     2800   inner ear, temporal bone
======================  ======  =====  =====================================

:func:`resolve_window` accepts a preset name, ``"LEVEL,WIDTH"`` or a ``(level, width)`` pair;
:func:`apply_window` clips and scales an array to ``[0, 1]`` (the preprocessing use).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from medsight.errors import did_you_mean, user_error

Window = tuple[float, float]

#: name -> (level, width) in HU.
WINDOW_PRESETS: dict[str, Window] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "soft_tissue": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "temporal_bone": (600.0, 2800.0),
}

WindowSpec = str | Sequence[float]


def _check(level: float, width: float, given: object) -> Window:
    if not (math.isfinite(level) and math.isfinite(width)) or width <= 0:
        raise user_error("a finite window level and a positive width", repr(given), None,
                         "e.g. 40,400 (level,width in HU) or a preset name such as 'lung'")
    return float(level), float(width)


def resolve_window(spec: WindowSpec) -> Window:
    """A ``(level, width)`` pair from a preset name (``"lung"``), ``"LEVEL,WIDTH"`` or a pair of numbers.

    Raises:
        MedsightError: an unknown preset (with a did-you-mean), malformed numbers, or a width that is not positive.
    """
    if isinstance(spec, str):
        text = spec.strip()
        name = text.lower().replace("-", "_").replace(" ", "_")
        if name in WINDOW_PRESETS:
            return WINDOW_PRESETS[name]
        parts = text.split(",")
        if len(parts) != 2:
            raise did_you_mean(text, WINDOW_PRESETS, "window preset (or LEVEL,WIDTH such as 40,400)")
        try:
            level, width = (float(p) for p in parts)
        except ValueError as exc:
            raise user_error("a window LEVEL,WIDTH such as 40,400 or a preset name", repr(text), None,
                             "give two numbers separated by a comma (--window=-600,1500 for negative levels)") from exc
        return _check(level, width, text)
    values = [float(v) for v in spec]
    if len(values) != 2:
        raise user_error("a window as (level, width)", repr(spec), None, "pass two numbers, e.g. (40, 400)")
    return _check(values[0], values[1], spec)


def window_bounds(window: WindowSpec) -> tuple[float, float]:
    """``(low, high) = (level - width/2, level + width/2)``."""
    level, width = resolve_window(window)
    return level - width / 2.0, level + width / 2.0


def apply_window(array: np.ndarray, window: WindowSpec) -> np.ndarray:
    """Clip to the window and scale to ``[0, 1]`` as float32; NaN becomes 0.

    Args:
        array: any shape, in image units (HU for CT).
        window: preset name, ``"LEVEL,WIDTH"`` or ``(level, width)``.
    """
    low, high = window_bounds(window)
    x = np.nan_to_num(np.asarray(array, dtype=np.float32), nan=low, posinf=high, neginf=low)
    return ((np.clip(x, low, high) - low) / (high - low)).astype(np.float32)


def describe_presets() -> str:
    """``lung (-600,1500), mediastinum (50,350), ...`` for help texts."""
    return ", ".join(f"{n} ({lv:g},{w:g})" for n, (lv, w) in WINDOW_PRESETS.items())


__all__ = ["WINDOW_PRESETS", "Window", "WindowSpec", "apply_window", "describe_presets", "resolve_window",
           "window_bounds"]


RGB = tuple[int, int, int]


#: Colour of label value ``i`` is ``LABEL_COLOURS[(i - 1) % len(LABEL_COLOURS)]``.
LABEL_COLOURS: tuple[RGB, ...] = (
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (255, 239, 213), (0, 0, 205), (205, 133, 63), (210, 180, 140), (102, 205, 170), (0, 0, 128),
    (0, 139, 139), (46, 139, 87), (255, 228, 225), (106, 90, 205), (221, 160, 221), (233, 150, 122),
    (165, 42, 42), (255, 250, 250),
)


REFERENCE_COLOUR: RGB = (255, 255, 255)


def label_colour(value: int, colours: Mapping[int, Sequence[int]] | None = None) -> RGB:
    """RGB colour (0-255) of a label value: ``colours[value]`` if given, else from :data:`LABEL_COLOURS`."""
    if colours is not None and int(value) in colours:
        c = colours[int(value)]
        return int(c[0]), int(c[1]), int(c[2])
    return LABEL_COLOURS[(int(value) - 1) % len(LABEL_COLOURS)]
