"""How close generated images are to real ones, measured in a feature space.

* precision / recall (Kynkäänniemi et al. 2019): the share of generated samples inside the real manifold (each real
  sample's ball reaching its k-th nearest real neighbour), and the share of real samples inside the generated one;
* density / coverage (Naeem et al. 2020): coverage is the share of real samples whose ball holds at least one
  generated sample, robust to real outliers; density counts generated samples per real ball (1 = as dense as real);
* the Fréchet distance between Gaussians fitted to both feature sets (FID when the features come from an
  Inception network; here they come from a classifier medsight trained itself, or from down-sampled pixels),
  through MONAI's ``FIDMetric``.

Features are rows of ``(N, F)`` arrays or tensors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _t(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double().flatten(1)


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row to its ``k``-th nearest other row ``(N,)``."""
    d = torch.cdist(features, features)
    return d.kthvalue(min(k, features.shape[0] - 1) + 1, dim=1).values


def precision_recall_coverage(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (both ``(N, F)``), with ``k`` neighbours.

    Returns NaN for every figure when either set has fewer than 2 rows.
    """
    r, f = _t(real), _t(fake)
    if r.shape[0] < 2 or f.shape[0] < 2:
        return {name: float("nan") for name in ("precision", "recall", "density", "coverage")}
    k = min(k, r.shape[0] - 1, f.shape[0] - 1)
    r_real, r_fake = knn_radii(r, k), knn_radii(f, k)
    d = torch.cdist(r, f)  # (N_real, N_fake)
    inside_real = d <= r_real[:, None]
    return {
        "precision": float(inside_real.any(dim=0).double().mean()),
        "recall": float((d <= r_fake[None, :]).any(dim=1).double().mean()),
        "density": float(inside_real.double().sum() / (k * f.shape[0])),
        "coverage": float((d.min(dim=1).values <= r_real).double().mean()),
    }


def frechet_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``real`` and ``fake`` features (MONAI ``FIDMetric``)."""
    from monai.metrics import FIDMetric

    return float(FIDMetric()(_t(fake).float(), _t(real).float()))


def pixel_features(images: torch.Tensor, *, max_side: int = 16) -> torch.Tensor:
    """Images ``(B, C, *spatial)`` average-pooled to at most ``max_side`` per axis and flattened ``(B, F)``: a fixed,
    training-free feature space for monitoring a GAN during training."""
    size = tuple(min(max_side, s) for s in images.shape[2:])
    pooled = F.adaptive_avg_pool2d(images, size) if images.ndim == 4 else F.adaptive_avg_pool3d(images, size)  # type: ignore[arg-type]
    return pooled.flatten(1)
