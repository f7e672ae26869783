"""Resampling between voxel grids (torch interpolation on the CPU, or the GPU when given one)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def new_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, ...]:
    """Spatial shape after resampling from ``spacing`` to ``target`` (mm per axis)."""
    return tuple(max(1, int(round(s * sp / t))) for s, sp, t in zip(shape, spacing, target))


def needs_resampling(spacing: tuple[float, ...], target: tuple[float, ...], tol: float = 0.01) -> bool:
    return any(abs(s - t) > tol * t for s, t in zip(spacing, target))


def resize_image(x: np.ndarray | torch.Tensor, shape: tuple[int, ...], *, device: str | torch.device = "cpu") -> torch.Tensor:
    """Resize ``(C, *spatial)`` intensities to ``shape`` with (bi/tri)linear interpolation. Returns float32 on CPU."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x, dtype=torch.float32)
    if tuple(t.shape[1:]) == tuple(shape):
        return t
    mode = "bilinear" if t.ndim == 3 else "trilinear"
    out = F.interpolate(t[None].to(device), size=tuple(shape), mode=mode, align_corners=False)[0]
    return out.cpu()


def resize_labels(lab: np.ndarray, shape: tuple[int, ...], num_classes: int, *, device: str | torch.device = "cpu") -> np.ndarray:
    """Resize a label map ``(*spatial)`` by interpolating each class's one-hot mask and taking the arg-max.

    Smoother and more faithful to thin structures than nearest neighbour. Returns uint8 (int16 above 255 labels).
    """
    if tuple(lab.shape) == tuple(shape):
        return lab
    t = torch.as_tensor(lab.astype(np.int64))
    onehot = F.one_hot(t.clamp_min(0), num_classes=max(num_classes, int(t.max()) + 1)).movedim(-1, 0).float()
    probs = resize_image(onehot, shape, device=device)
    out = probs.argmax(0).numpy()
    return out.astype(np.uint8 if out.max(initial=0) < 256 else np.int16)


def resize_probabilities(p: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Resize class probabilities ``(K, *spatial)`` to ``shape`` (linear), keeping dtype and device."""
    if tuple(p.shape[1:]) == tuple(shape):
        return p
    mode = "bilinear" if p.ndim == 3 else "trilinear"
    return F.interpolate(p[None].float(), size=tuple(shape), mode=mode, align_corners=False)[0].to(p.dtype)
