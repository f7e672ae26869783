"""Heat maps drawn over images as PNG: one 2D overlay, or a montage of axial slices for a volume.

Figures use matplotlib's object API (no pyplot global state) and are written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import atomic_path, write_bytes
from medsight.core.image import Image
from medsight.errors import user_error
from medsight.io import read_image
from medsight.io.cases import input_cases

#: Colour map of the heat overlay.
HEAT_CMAP = "jet"


def _array(a: Any, ndim: int, name: str) -> np.ndarray:
    arr = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float32)
    arr = arr.squeeze() if arr.ndim > ndim else arr
    if arr.ndim != ndim:
        raise user_error(f"{name} with {ndim} axes", f"shape {arr.shape}", None,
                         f"pass one {'slice (H, W)' if ndim == 2 else 'volume (D, H, W)'} without channel axes")
    return arr


def _check_same(image: np.ndarray, heat: np.ndarray) -> None:
    if image.shape != heat.shape:
        raise user_error(f"a heat map of the image's shape {image.shape}", f"shape {heat.shape}", None,
                         "upsample the heat map to the image size (grad_cam and occlusion already do)")


def robust_window(image: np.ndarray) -> tuple[float, float]:
    """Display range of the 1st to 99th intensity percentile (robust to a few bright voxels)."""
    lo, hi = np.percentile(image, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def save_figure(fig: Any, out_png: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return write_bytes(out_png, buf.getvalue())


def draw_heatmap(ax: Any, image: np.ndarray, heat: np.ndarray, window: tuple[float, float], alpha: float) -> Any:
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    mapped = ax.imshow(heat, cmap=HEAT_CMAP, vmin=0.0, vmax=1.0, alpha=alpha, interpolation="bilinear")
    ax.set_axis_off()
    return mapped


def overlay_heatmap(image2d: Any, heat2d: Any, out_png: str | Path, *, title: str | None = None,
                    alpha: float = 0.45) -> Path:
    """Write a PNG of a grayscale image ``(H, W)`` with a heat map ``(H, W)`` in [0, 1] on top and a colour bar.

    Args:
        image2d: the image (array or tensor; singleton axes are dropped).
        heat2d: the heat map, same shape, values in [0, 1].
        out_png: output path (folders are created; written atomically).
        title: optional figure title.
        alpha: opacity of the heat map.

    Returns:
        ``out_png`` as a Path.
    """
    from matplotlib.figure import Figure

    image, heat = _array(image2d, 2, "image2d"), _array(heat2d, 2, "heat2d")
    _check_same(image, heat)
    fig = Figure(figsize=(5, 4.4))
    ax = fig.add_subplot()
    mapped = draw_heatmap(ax, image, heat, robust_window(image), alpha)
    fig.colorbar(mapped, ax=ax, fraction=0.046, pad=0.04, label="importance")
    if title:
        ax.set_title(title)
    return save_figure(fig, out_png)


def montage_slices(heat: np.ndarray, max_slices: int) -> np.ndarray:
    """Indices of the axial slices (axis 0) a montage shows: all when there are at most ``max_slices``, otherwise
    the ``max_slices`` with the most total heat (ties: lower index first), in ascending order."""
    depth = heat.shape[0]
    if depth <= max_slices:
        return np.arange(depth)
    return np.sort(np.argsort(-heat.reshape(depth, -1).sum(axis=1), kind="stable")[:max_slices])


def montage_3d(volume: Any, heat: Any, out_png: str | Path, *, max_slices: int = 16, alpha: float = 0.45,
               title: str | None = None) -> Path:
    """Write a PNG montage of axial slices (axis 0 of ``(D, H, W)``) with the heat map on top.

    Slice choice: when the volume has more than ``max_slices`` slices, the ``max_slices`` slices with the most
    total heat are shown, in ascending slice order and labelled ``z=<index>``, so the montage shows where the model
    looked; otherwise every slice is shown. All slices share one intensity window and one colour bar.

    Args:
        volume: ``(D, H, W)`` (array or tensor; singleton axes are dropped).
        heat: the heat map, same shape, values in [0, 1].
        out_png: output path (folders are created; written atomically).
        max_slices: most slices in the montage.
        alpha: opacity of the heat map.
        title: optional figure title.

    Returns:
        ``out_png`` as a Path.
    """
    from matplotlib.figure import Figure

    vol, hm = _array(volume, 3, "volume"), _array(heat, 3, "heat")
    _check_same(vol, hm)
    if max_slices < 1:
        raise user_error("max_slices >= 1", max_slices, None, "pass the number of slices to show, e.g. 16")
    slices = montage_slices(hm, max_slices)
    cols = int(np.ceil(np.sqrt(len(slices))))
    rows = int(np.ceil(len(slices) / cols))
    fig = Figure(figsize=(2.2 * cols + 0.8, 2.2 * rows + (0.4 if title else 0.0)))
    axes = fig.subplots(rows, cols, squeeze=False)
    window = robust_window(vol)
    mapped = [draw_heatmap(ax, vol[z], hm[z], window, alpha) for ax, z in zip(axes.flat, slices)]
    for ax, z in zip(axes.flat, slices):
        ax.set_title(f"z={int(z)}", fontsize=8)
    for ax in list(axes.flat)[len(slices):]:
        ax.set_axis_off()
    fig.colorbar(mapped[-1], ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="importance")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_png)


def explain_inputs(input_path: str | Path, channels: int) -> list[tuple[str, list[Path]]]:
    """(case id, files) of an ``explain`` input, which must exist."""

    inp = Path(input_path)
    if not inp.exists():
        raise user_error("an existing input file or folder", "nothing", inp, "check the path")
    return input_cases(inp, channels)


def read_channels(files: list[Path]) -> Image:
    """One image from one file, or from one file per channel (concatenated)."""

    parts = [read_image(f) for f in files]
    return parts[0] if len(parts) == 1 else parts[0].with_array(np.concatenate([p.array for p in parts]))


def save_heatmap_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Heat maps and what they were computed on, atomically, as a compressed ``.npz``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return path


def render_heatmap(volume: np.ndarray, heat: np.ndarray, out_png: Path, title: str) -> Path:
    """A 2D overlay, or a slice montage for a 3D volume."""
    if volume.ndim == 2:
        return overlay_heatmap(volume, heat, out_png, title=title)
    return montage_3d(volume, heat, out_png, title=title)
