"""Sample grids: rows of image tiles (and coloured label maps) written as one RGB PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medsight.core.image import Image
from medsight.io import write_image

#: Label colours (index 0 = background, black).
PALETTE = np.asarray([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                      [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], dtype=np.uint8)


def _slice2d(arr: np.ndarray) -> np.ndarray:
    """``(C, *S)`` -> ``(C, H, W)``: the middle slice of a volume."""
    return arr[:, arr.shape[1] // 2] if arr.ndim == 4 else arr


def image_tile(arr: np.ndarray | torch.Tensor) -> np.ndarray:
    """An image ``(C, *S)`` in ``[-1, 1]`` -> RGB uint8 ``(3, H, W)`` (grey repeated; more than 3 channels: the first)."""
    a = _slice2d(np.asarray(arr.detach().cpu() if isinstance(arr, torch.Tensor) else arr, dtype=np.float32))
    a = a[:3] if a.shape[0] >= 3 else np.repeat(a[:1], 3, axis=0)
    return np.clip((a + 1.0) * 127.5, 0, 255).astype(np.uint8)


def label_tile(condition: np.ndarray | torch.Tensor, num_labels: int) -> np.ndarray:
    """A condition ``(K [+ 1], *S)`` (one-hot labels [+ ROI]) -> RGB uint8 ``(3, H, W)``; outside the ROI is dimmed."""
    c = _slice2d(np.asarray(condition.detach().cpu() if isinstance(condition, torch.Tensor) else condition, dtype=np.float32))
    rgb = PALETTE[np.argmax(c[:num_labels], axis=0) % len(PALETTE)].transpose(2, 0, 1).copy()
    if c.shape[0] > num_labels:
        rgb = np.where(c[num_labels:num_labels + 1] > 0.5, rgb, rgb // 3 + 40).astype(np.uint8)
    return rgb


def write_grid(rows: list[list[np.ndarray]], path: str | Path, *, tile_height: int = 160, gap: int = 2) -> Path:
    """Write rows of RGB uint8 tiles ``(3, H, W)`` as one PNG; tiles are resized to ``tile_height`` rows (aspect kept)."""
    def fit(t: np.ndarray) -> np.ndarray:
        h, w = t.shape[1:]
        size = (tile_height, max(1, round(w * tile_height / h)))
        x = torch.from_numpy(t.astype(np.float32))[None]
        return F.interpolate(x, size=size, mode="area" if h > tile_height else "nearest")[0].numpy().round().astype(np.uint8)

    fitted = [[fit(t) for t in row] for row in rows if row]
    width = max(sum(t.shape[2] + gap for t in row) for row in fitted) + gap
    canvas = np.full((3, len(fitted) * (tile_height + gap) + gap, width), 255, np.uint8)
    for i, row in enumerate(fitted):
        x = gap
        y = gap + i * (tile_height + gap)
        for t in row:
            canvas[:, y:y + tile_height, x:x + t.shape[2]] = t
            x += t.shape[2] + gap
    return write_image(Image(canvas), path)
