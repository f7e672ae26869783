"""U-Nets from MONAI building blocks: DynUNet (nnU-Net's topology), MONAI UNet and SegResNet."""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import DynUNet, SegResNet, UNet
from torch import nn


class DeepSupervisionUNet(nn.Module):
    """DynUNet that returns a list of outputs while training (full resolution first) and one tensor otherwise."""

    def __init__(self, *, spatial_dims: int, in_channels: int, out_channels: int, kernels: list[list[int]],
                 strides: list[list[int]], filters: list[int], deep_supervision: bool = True, deep_supr_num: int = 1) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision and len(strides) > 2
        self.net = DynUNet(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, kernel_size=kernels,
            strides=strides, upsample_kernel_size=strides[1:], filters=filters, norm_name=("instance", {"affine": True}),
            act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}), deep_supervision=self.deep_supervision,
            deep_supr_num=max(1, min(deep_supr_num, len(strides) - 2)), res_block=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        out = self.net(x)
        if self.training and self.deep_supervision:
            return list(torch.unbind(out, dim=1))
        return out


def dynunet(*, spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    return DeepSupervisionUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


def monai_unet(*, spatial_dims: int, in_channels: int, out_channels: int, filters: list[int] | None = None, **_: Any) -> nn.Module:
    ch = filters or [16, 32, 64, 128, 256]
    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, channels=ch,
                strides=[2] * (len(ch) - 1), num_res_units=2, norm="instance")


def segresnet(*, spatial_dims: int, in_channels: int, out_channels: int, filters: list[int] | None = None, **_: Any) -> nn.Module:
    return SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                     init_filters=(filters or [16])[0])
