"""The training augmentation: draw all parameters for a batch, then apply them (replayable from the record)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from medsight.transforms import augment_intensity as intensity
from medsight.transforms.augment_spatial import rotation_matrix, smooth_displacement, warp
from medsight.transforms.config import AugmentConfig


@dataclass(frozen=True)
class AugmentParams:
    """Everything drawn for one batch; applying the same params to the same input gives the same output."""

    matrices: torch.Tensor  # (B, d, d) rotation x scale x mirror, array-axis order
    elastic: torch.Tensor | None  # (B, *patch, d) or None
    brightness: tuple[torch.Tensor, torch.Tensor]
    contrast: tuple[torch.Tensor, torch.Tensor]
    gamma: tuple[torch.Tensor, torch.Tensor]
    noise: tuple[torch.Tensor, torch.Tensor]
    blur: tuple[float, torch.Tensor]

    def to(self, device: torch.device | str) -> AugmentParams:
        """The same parameters on ``device`` (drawn on the CPU, so a batch is augmented alike on any device)."""
        def mv(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return pair[0].to(device), pair[1].to(device)

        return AugmentParams(matrices=self.matrices.to(device), elastic=None if self.elastic is None else self.elastic.to(device),
                             brightness=mv(self.brightness), contrast=mv(self.contrast), gamma=mv(self.gamma),
                             noise=mv(self.noise), blur=(self.blur[0], self.blur[1].to(device)))


def draw_params(batch: int, patch: tuple[int, ...], cfg: AugmentConfig, gen: torch.Generator, *, enabled: bool = True) -> AugmentParams:
    """Draw augmentation parameters for ``batch`` samples of spatial size ``patch``."""
    d = len(patch)

    def u(lo: float, hi: float, n: int = batch) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    def p(prob: float) -> torch.Tensor:
        return (torch.rand(batch, generator=gen) < prob) if enabled else torch.zeros(batch, dtype=torch.bool)

    rot_on, scale_on, el_on = p(cfg.p_rotate), p(cfg.p_scale), p(cfg.p_elastic)
    max_a = math.radians(cfg.rotate_deg)
    angles = u(-max_a, max_a, batch * (1 if d == 2 else 3)).view(batch, -1) if d == 3 else u(-max_a, max_a)
    if d == 3:
        angles = angles * rot_on[:, None]
    else:
        angles = angles * rot_on
    m = rotation_matrix(angles, d)
    scale = torch.where(scale_on, u(*cfg.scale_range), torch.ones(batch))
    m = m * scale.view(-1, 1, 1)
    mirror = torch.ones(batch, d)
    if enabled:
        for ax in cfg.mirror_axes:
            if ax < d:
                mirror[:, ax] = torch.where(torch.rand(batch, generator=gen) < 0.5, -1.0, 1.0)
    m = m * mirror[:, None, :]
    elastic = None
    if bool(el_on.any()):
        elastic = smooth_displacement(batch, d, patch, torch.where(el_on, torch.full((batch,), cfg.elastic_magnitude), torch.zeros(batch)), gen)
    return AugmentParams(
        matrices=m, elastic=elastic,
        brightness=(u(0.75, 1.25), p(cfg.p_brightness)),
        contrast=(u(0.75, 1.25), p(cfg.p_contrast)),
        gamma=(u(0.7, 1.5), p(cfg.p_gamma)),
        noise=(u(0.0, 0.1), p(cfg.p_noise)),
        blur=(float(u(0.5, 1.0, 1)), p(cfg.p_blur)),
    )


def augment_batch(
    image: torch.Tensor, label: torch.Tensor, patch: tuple[int, ...], params: AugmentParams, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``params`` to a batch of context regions ``(B, C, *ctx)`` / ``(B, 1, *ctx)``; returns patches ``(B, C, *patch)``.

    ``gen`` (a CPU generator) is only used for the noise samples, so the result is a function of (inputs, params, gen
    state). The batch may be on any device (e.g. the training GPU); the work happens there.
    """
    params = params.to(image.device)
    img, lab = warp(image, label, params.matrices, patch, params.elastic)
    if lab is None:  # warp returns a label whenever it is given one
        raise RuntimeError("label warp failed")
    return _intensity(img, params, gen), lab


def augment_images(image: torch.Tensor, params: AugmentParams, gen: torch.Generator) -> torch.Tensor:
    """Apply ``params`` to whole images ``(B, C, *spatial)`` (classification): same size out, zero padding."""
    params = params.to(image.device)
    img, _ = warp(image, None, params.matrices, tuple(image.shape[2:]), params.elastic)
    return _intensity(img, params, gen)


def _intensity(img: torch.Tensor, params: AugmentParams, gen: torch.Generator) -> torch.Tensor:
    img = intensity.brightness(img, *params.brightness)
    img = intensity.contrast(img, *params.contrast)
    img = intensity.gamma(img, *params.gamma)
    img = intensity.noise(img, *params.noise, gen)
    return intensity.blur(img, *params.blur)
