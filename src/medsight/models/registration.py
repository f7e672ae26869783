"""Deformable registration network: a VoxelMorph U-Net (MONAI) predicting a displacement field, plus MONAI's warp."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import Warp
from monai.networks.nets import VoxelMorph, VoxelMorphUNet
from torch import nn


class DeformableNet(nn.Module):
    """``forward(moving, fixed) -> (warped moving, ddf)``; ``ddf`` is ``(B, dims, *spatial)`` in voxels, channel ``i``
    along array axis ``i``; with ``integration_steps > 0`` the output is a stationary velocity field integrated by
    scaling and squaring (diffeomorphic)."""

    def __init__(self, *, spatial_dims: int = 3, in_channels: int = 2, out_channels: int = 3,
                 channels: Sequence[int] = (8, 16, 16, 16), integration_steps: int = 0) -> None:
        super().__init__()
        if in_channels != 2 or out_channels != spatial_dims:
            raise ValueError(f"Expected in_channels=2 (moving + fixed) and out_channels={spatial_dims}, got {in_channels}, {out_channels}")
        first = int(channels[0])
        backbone = VoxelMorphUNet(spatial_dims=spatial_dims, in_channels=2, unet_out_channels=first, channels=tuple(channels),
                                  final_conv_channels=(first,))
        with warnings.catch_warnings():  # MONAI's Warp notes that it uses torch's grid_sample, which is what we want
            warnings.simplefilter("ignore", UserWarning)
            self.net = VoxelMorph(backbone=backbone, integration_steps=integration_steps, spatial_dims=spatial_dims)
        self.spatial_dims = spatial_dims

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(moving, fixed)


def voxelmorph(**kwargs: Any) -> nn.Module:
    return DeformableNet(**kwargs)


def warp_layer(mode: str = "bilinear", padding_mode: str = "zeros") -> nn.Module:
    """MONAI's ``Warp`` (``out(x) = image(x + ddf(x))``, ddf in voxels), built without its grid_sample notice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Warp(mode=mode, padding_mode=padding_mode)
