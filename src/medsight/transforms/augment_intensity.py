"""Batched intensity augmentation on ``(B, C, *spatial)`` tensors; ``mask`` selects the samples to change."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (x.ndim - 1)))


def brightness(x: torch.Tensor, factor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multiply intensities by ``factor`` ``(B,)``."""
    f = torch.where(mask, factor, torch.ones_like(factor))
    return x * _expand(f, x)


def contrast(x: torch.Tensor, factor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale around each sample's mean by ``factor`` and clip to its original range."""
    dims = tuple(range(1, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    y = torch.minimum(torch.maximum((x - mean) * _expand(factor, x) + mean, lo), hi)
    return torch.where(_expand(mask, x), y, x)


def gamma(x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gamma on each sample rescaled to [0, 1], keeping its mean and SD."""
    dims = tuple(range(1, x.ndim))
    lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True)
    y = ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1) ** _expand(g, x)
    ym, ys = y.mean(dim=dims, keepdim=True), y.std(dim=dims, keepdim=True).clamp_min(1e-6)
    y = (y - ym) / ys * std + mean
    return torch.where(_expand(mask, x), y, x)


def noise(x: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise of SD ``sigma`` ``(B,)``."""
    n = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)  # drawn on the CPU: the same noise on any device
    n = n * _expand(torch.where(mask, sigma, torch.zeros_like(sigma)), x)
    return x + n


def blur(x: torch.Tensor, sigma: float, mask: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one ``sigma`` (voxels) for the masked samples."""
    if not bool(mask.any()):
        return x
    d = x.ndim - 2
    radius = max(1, int(round(2 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = x[mask]
    conv = F.conv2d if d == 2 else F.conv3d
    for axis in range(d):
        shape = [1] * d
        shape[axis] = k.numel()
        weight = k.view(1, 1, *shape).repeat(c, 1, *([1] * d))
        pad = [0] * (2 * d)
        pad[2 * (d - 1 - axis)] = radius
        pad[2 * (d - 1 - axis) + 1] = radius
        y = conv(F.pad(y, pad, mode="replicate"), weight, groups=c)
    out = x.clone()
    out[mask] = y
    return out
