"""Lesion-centre heat maps: targets drawn from masks, the CenterNet focal loss, and peak finding.

A lesion is a connected component of the foreground; its centre is the component's centre of mass rounded to the
nearest voxel, where the target is 1, falling off as a Gaussian of SD ``sigma`` voxels (the maximum where lesions
overlap). The loss is the penalty-reduced pixel-wise focal loss of CenterNet (Zhou et al., "Objects as Points",
2019), which MONAI does not ship.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def centre_heatmap(label: np.ndarray, sigma: float) -> np.ndarray:
    """Target heat map ``(*S)`` float32 in [0, 1] for one label map ``(*S)`` (any value > 0 is foreground)."""
    from scipy import ndimage

    components, n = ndimage.label(np.asarray(label) > 0)
    out = np.zeros(components.shape, dtype=np.float32)
    if n == 0:
        return out
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in components.shape], indexing="ij", sparse=True)
    for centre in ndimage.center_of_mass(components > 0, components, range(1, n + 1)):
        c = np.rint(np.asarray(centre))
        dist2 = sum((g - ci) ** 2 for g, ci in zip(grids, c))
        np.maximum(out, np.exp(-dist2 / (2.0 * sigma**2)).astype(np.float32), out=out)
    return out


def batch_heatmaps(labels: torch.Tensor, sigma: float) -> torch.Tensor:
    """Targets ``(B, 1, *S)`` for label maps ``(B, 1, *S)``."""
    arr = labels.detach().cpu().numpy()
    return torch.from_numpy(np.stack([centre_heatmap(a[0], sigma)[None] for a in arr]))


def centre_focal_loss(logits: torch.Tensor, target: torch.Tensor, *, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet's focal loss of heat-map logits ``(B, 1, *S)`` against targets in [0, 1] (peaks exactly 1),
    normalised by the number of peaks (at least 1)."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    target = target.float()
    peak = target >= 1.0 - 1e-6
    pos = -(torch.pow(1 - p, alpha) * torch.log(p))[peak].sum()
    neg = -(torch.pow(1 - target, beta) * torch.pow(p, alpha) * torch.log(1 - p))[~peak].sum()
    return (pos + neg) / peak.sum().clamp_min(1)


def find_peaks(heat: np.ndarray, *, threshold: float = 0.5, radius: int = 2) -> list[tuple[tuple[int, ...], float]]:
    """Local maxima of a heat map ``(*S)`` above ``threshold`` in a ``(2 radius + 1)`` neighbourhood, strongest first:
    ``[(index, score), ...]``."""
    t = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    pool = F.max_pool2d if t.ndim == 4 else F.max_pool3d
    peak = (t == pool(t, 2 * radius + 1, stride=1, padding=radius)) & (t >= threshold)
    idx = np.argwhere(peak[0, 0].numpy())
    found = [(tuple(int(i) for i in ix), float(heat[tuple(ix)])) for ix in idx]
    return sorted(found, key=lambda r: -r[1])


__all__ = ["batch_heatmaps", "centre_focal_loss", "centre_heatmap", "find_peaks"]
