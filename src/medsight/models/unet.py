"""U-Nets from MONAI building blocks: DynUNet (nnU-Net's topology), MONAI UNet and SegResNet."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetBasicBlock, UnetOutBlock, get_conv_layer
from monai.networks.nets import DynUNet, SegResNet, UNet
from torch import nn

NORM = ("instance", {"affine": True})
ACT = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})


class FullResolutionHead(nn.Module):
    """Logits at the image's resolution from the decoder's features at ``1 / stride`` of it, for a U-Net whose first
    stage is strided (as MONAI's ``UNet``): a transposed convolution up to full resolution, the image itself
    concatenated (its fine detail, as a skip connection), one convolution block and a 1 x 1 output. Its full-resolution
    width is half the first stage's (at least 8), so it costs a fraction of a full-resolution stage."""

    def __init__(self, *, spatial_dims: int, features: int, image_channels: int, out_channels: int,
                 stride: list[int], kernel: list[int]) -> None:
        super().__init__()
        mid = max(8, features // 2)
        self.up = get_conv_layer(spatial_dims, features, mid, kernel_size=stride, stride=stride, conv_only=True,
                                 is_transposed=True)
        self.block = UnetBasicBlock(spatial_dims, mid + image_channels, mid, kernel, 1, NORM, ACT)
        self.out = UnetOutBlock(spatial_dims, mid, out_channels)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(torch.cat([self.up(features), image], dim=1)))


class DeepSupervisionUNet(nn.Module):
    """DynUNet that returns a list of outputs while training (full resolution first) and one tensor otherwise.

    A first stride other than ones (``strides[0] = [2, 2]``) makes the first stage strided: the network computes at
    half resolution and below, and a :class:`FullResolutionHead` brings the logits back to the input's size."""

    def __init__(self, *, spatial_dims: int, in_channels: int, out_channels: int, kernels: list[list[int]],
                 strides: list[list[int]], filters: list[int], deep_supervision: bool = True, deep_supr_num: int = 1) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision and len(strides) > 2
        self.net = DynUNet(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, kernel_size=kernels,
            strides=strides, upsample_kernel_size=strides[1:], filters=filters, norm_name=NORM, act_name=ACT,
            deep_supervision=self.deep_supervision, deep_supr_num=max(1, min(deep_supr_num, len(strides) - 2)),
            res_block=False,
        )
        self.head: FullResolutionHead | None = None
        if any(int(s) != 1 for s in strides[0]):
            self.net.output_block = nn.Identity()  # the head below replaces it (and leaves no unused weights)
            self.head = FullResolutionHead(spatial_dims=spatial_dims, features=filters[0], image_channels=in_channels,
                                           out_channels=out_channels, stride=strides[0], kernel=kernels[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.head is None:
            out = self.net(x)
            if self.training and self.deep_supervision:
                return list(torch.unbind(out, dim=1))
            return out
        logits = self.head(self.net.skip_layers(x), x)
        if self.training and self.deep_supervision:  # as DynUNet.forward: the heads it stored, at the output's size
            return [logits] + [F.interpolate(h, logits.shape[2:]) for h in self.net.heads]
        return logits


def dynunet(*, spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    return DeepSupervisionUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


def monai_unet(*, spatial_dims: int, in_channels: int, out_channels: int, filters: list[int] | None = None, **_: Any) -> nn.Module:
    ch = filters or [16, 32, 64, 128, 256]
    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, channels=ch,
                strides=[2] * (len(ch) - 1), num_res_units=2, norm="instance")


def segresnet(*, spatial_dims: int, in_channels: int, out_channels: int, filters: list[int] | None = None, **_: Any) -> nn.Module:
    return SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                     init_filters=(filters or [16])[0])
