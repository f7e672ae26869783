"""Batched spatial augmentation: rotation, scaling, mirroring and elastic deformation in one resampling.

The transform for each sample maps output voxel offsets (from the patch centre) to input voxel offsets,
``p_in = A @ p_out (+ elastic displacement)``; mirroring is a sign flip in ``A``. One ``grid_sample`` call
warps the whole batch (linear for images, nearest for labels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rotation_matrix(angles: torch.Tensor, dims: int) -> torch.Tensor:
    """Rotation matrices ``(B, d, d)`` from angles in radians: ``(B,)`` for 2D, ``(B, 3)`` (about each axis) for 3D."""
    b = angles.shape[0]
    if dims == 2:
        c, s = torch.cos(angles), torch.sin(angles)
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    out = torch.eye(3).expand(b, 3, 3).clone()
    for axis in range(3):
        a = angles[:, axis]
        c, s = torch.cos(a), torch.sin(a)
        r = torch.eye(3).expand(b, 3, 3).clone()
        i, j = [k for k in range(3) if k != axis]
        r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
        out = r @ out
    return out


def smooth_displacement(batch: int, dims: int, out_shape: tuple[int, ...], magnitude: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Smooth random displacement ``(B, *out_shape, d)`` in normalised grid units (coarse noise, upsampled)."""
    coarse = torch.randn((batch, dims, *([4] * dims)), generator=gen)
    mode = "bilinear" if dims == 2 else "trilinear"
    field = F.interpolate(coarse, size=out_shape, mode=mode, align_corners=True)
    field = field * magnitude.view(-1, *([1] * (dims + 1)))
    return field.movedim(1, -1)


def warp(
    image: torch.Tensor,
    label: torch.Tensor | None,
    matrices: torch.Tensor,
    out_shape: tuple[int, ...],
    displacement: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Warp ``image`` ``(B, C, *in)`` (and ``label`` ``(B, 1, *in)``) to ``(B, C, *out_shape)``.

    Args:
        matrices: ``(B, d, d)`` voxel-space matrices in array-axis order, mapping output offsets to input offsets.
        displacement: optional ``(B, *out_shape, d)`` added to the sampling grid (normalised units, torch xyz order).
    """
    d = len(out_shape)
    in_shape = torch.tensor(image.shape[2:], dtype=torch.float32, device=matrices.device)
    out = torch.tensor(out_shape, dtype=torch.float32, device=matrices.device)
    # normalised coordinates: n_in = diag(1/in) A diag(out) n_out ; torch wants axes in reversed (x, y, z) order
    theta_arr = (1.0 / in_shape)[None, :, None] * matrices * out[None, None, :]
    perm = list(range(d))[::-1]
    theta = theta_arr[:, perm][:, :, perm]
    affine = torch.cat([theta, torch.zeros(theta.shape[0], d, 1, dtype=theta.dtype, device=theta.device)], dim=2)
    size = (image.shape[0], 1, *out_shape)
    grid = F.affine_grid(affine.to(image.device, image.dtype), list(size), align_corners=False)
    if displacement is not None:
        grid = grid + displacement.to(grid.dtype)
    img = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    lab = None
    if label is not None:
        lab = F.grid_sample(label.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).to(label.dtype)
    return img, lab


def context_shape(patch: tuple[int, ...], *, rotate: bool, scale_max: float) -> tuple[int, ...]:
    """Input region to cut around a patch so rotation and zooming out stay inside real data."""
    factor = 1.0
    if rotate:
        factor *= 1.25
    factor *= max(scale_max, 1.0)
    factor = min(factor, 2.0)
    return tuple(int(math.ceil(p * factor)) for p in patch)
