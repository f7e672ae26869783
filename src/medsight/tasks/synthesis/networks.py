"""GAN networks, 2D and 3D, and the module that holds a generator, its moving average and a discriminator.

* ``gan_class``: a DCGAN-style generator (latent vector + class embedding -> linear -> up-sampling convolutions with
  batch norm -> ``tanh``) and a projection discriminator (Miyato & Koyama 2018) with spectral norm on every layer.
* ``gan_mask``: a pix2pix generator (MONAI ``UNet``, instance norm) from a one-hot label map (+ a region-of-interest
  channel) and a noise channel, and a PatchGAN discriminator (MONAI ``PatchDiscriminator``) on ``(image, condition)``
  with spectral norm on its convolutions.

Images are in ``[-1, 1]``. The loss is the hinge loss (Lim & Ye 2017): MONAI's ``PatchAdversarialLoss`` passes
logits through ``tanh`` first, which saturates the generator's gradient once the discriminator is confident.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.nets import PatchDiscriminator, UNet
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from medsight.errors import did_you_mean


def _conv(dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


class ClassGenerator(nn.Module):
    """Latent vector + class -> image ``(B, C, *size)`` in ``[-1, 1]`` (DCGAN: transposed convolutions, batch norm).

    Args:
        spatial_dims: 2 or 3.
        out_channels: image channels.
        num_classes: number of classes.
        size: output size; every side divisible by ``2 ** upsamplings``.
        latent_dim: length of the latent vector (and of the class embedding).
        width: channels of the last hidden block (doubling towards the start, at most 512).
        upsamplings: number of 2x up-sampling (stride-2 transposed convolution) layers.
    """

    def __init__(self, *, spatial_dims: int, out_channels: int, num_classes: int, size: list[int], latent_dim: int = 64,
                 width: int = 32, upsamplings: int = 2) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.start = [s // 2**upsamplings for s in size]
        ch = self.channels0 = min(512, width * 2 ** (upsamplings - 1))
        self.embed = nn.Embedding(num_classes, latent_dim)
        self.fc = nn.Linear(2 * latent_dim, ch * math.prod(self.start))
        norm = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        up = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        blocks: list[nn.Module] = [norm(ch), nn.ReLU(inplace=True)]
        for _ in range(upsamplings - 1):
            blocks += [up(ch, ch // 2, 4, stride=2, padding=1), norm(ch // 2), nn.ReLU(inplace=True)]
            ch //= 2
        blocks += [up(ch, out_channels, 4, stride=2, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(z.shape[0], self.channels0, *self.start)
        return self.body(h)


class ProjectionDiscriminator(nn.Module):
    """Image + class -> one logit per image (higher = real); spectral norm on every layer.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: number of classes.
        width: channels of the first layer (doubling at each further down-sampling).
        downsamplings: number of stride-2 convolutions.
    """

    def __init__(self, *, spatial_dims: int, in_channels: int, num_classes: int, width: int = 32, downsamplings: int = 2) -> None:
        super().__init__()
        conv = _conv(spatial_dims)
        layers: list[nn.Module] = [spectral_norm(conv(in_channels, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(downsamplings - 1):
            layers += [spectral_norm(conv(ch, ch * 2, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            ch *= 2
        layers += [spectral_norm(conv(ch, ch, 3, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(ch, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, ch))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x).flatten(2).sum(2)
        return (self.linear(h) + (self.embed(y) * h).sum(1, keepdim=True)).squeeze(1)


class MaskGenerator(nn.Module):
    """Condition (one-hot labels [+ ROI]) + noise -> image in ``[-1, 1]`` on the same grid (pix2pix U-Net).

    Inputs of any size are zero-padded to a multiple of the U-Net's total stride and cropped back.

    Args:
        spatial_dims: 2 or 3.
        condition_channels: one channel per label value (+ 1 for a region of interest).
        out_channels: image channels.
        noise_channels: channels of Gaussian noise given beside the condition.
        channels: U-Net widths per level (each level halves the size).
        output_mean: per-channel mean of the training images in ``[-1, 1]``: a learnable offset before ``tanh`` starts
            there, so a short training does not spend its first steps finding the images' colour.
    """

    def __init__(self, *, spatial_dims: int, condition_channels: int, out_channels: int, noise_channels: int = 1,
                 channels: list[int] | None = None, output_mean: list[float] | None = None) -> None:
        super().__init__()
        chans = list(channels or [16, 32, 64, 128])
        self.noise_channels = noise_channels
        start = torch.atanh(torch.tensor(output_mean or [0.0] * out_channels, dtype=torch.float32).clamp(-0.95, 0.95))
        self.offset = nn.Parameter(start.view(1, out_channels, *([1] * spatial_dims)))
        self.multiple = 2 ** (len(chans) - 1)
        self.net = UNet(spatial_dims=spatial_dims, in_channels=condition_channels + noise_channels, out_channels=out_channels,
                        channels=chans, strides=[2] * (len(chans) - 1), num_res_units=1, norm="INSTANCE", act="LEAKYRELU")

    def forward(self, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = torch.cat([condition, noise], dim=1)
        size = x.shape[2:]
        pad: list[int] = []
        for s in reversed(size):
            pad += [0, (-s) % self.multiple]
        out = self.net(F.pad(x, pad) if any(pad) else x)
        return torch.tanh(out[(slice(None), slice(None), *(slice(0, s) for s in size))] + self.offset)


class MaskDiscriminator(nn.Module):
    """``(image, condition)`` -> a map of patch logits (MONAI ``PatchDiscriminator`` with spectral norm)."""

    def __init__(self, *, spatial_dims: int, in_channels: int, channels: int = 32, num_layers: int = 3) -> None:
        super().__init__()
        self.net = PatchDiscriminator(spatial_dims=spatial_dims, channels=channels, in_channels=in_channels, out_channels=1,
                                      num_layers_d=num_layers, norm="INSTANCE")
        for module in list(self.net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, (nn.Conv2d, nn.Conv3d)):
                    setattr(module, name, spectral_norm(child))

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, condition], dim=1))[-1]


class ConditionalGAN(nn.Module):
    """A generator, its exponential moving average (``generator_ema``, used for sampling) and a discriminator.

    The moving average is excluded from optimisation (``requires_grad=False``) but saved with the weights.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False).eval()

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """``ema <- decay * ema + (1 - decay) * generator``; buffers (batch-norm statistics) are copied."""
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            p_ema.lerp_(p, 1.0 - decay)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

    def train(self, mode: bool = True) -> ConditionalGAN:
        super().train(mode)
        self.generator_ema.eval()  # sampling always uses the running batch-norm statistics
        return self


def build_gan(architecture: str, *, generator: dict[str, Any], discriminator: dict[str, Any]) -> ConditionalGAN:
    """Rebuild a GAN from its checkpoint's ``architecture`` (``gan_class`` or ``gan_mask``) and arguments."""
    if architecture == "gan_class":
        return ConditionalGAN(ClassGenerator(**generator), ProjectionDiscriminator(**discriminator))
    if architecture == "gan_mask":
        return ConditionalGAN(MaskGenerator(**generator), MaskDiscriminator(**discriminator))
    raise did_you_mean(architecture, ["gan_class", "gan_mask"], "GAN architecture")


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: ``-mean(D(fake))``."""
    return -fake_logits.mean()


def render(generator: nn.Module, condition: torch.Tensor, noise: torch.Tensor, patch: list[int], *,
           overlap: float = 0.25) -> torch.Tensor:
    """A mask generator's image for a condition map of any size ``(B, K, *S)`` with noise ``(B, N, *S)``.

    Larger than the training ``patch``: a sliding window of that size (MONAI, Gaussian blending), so instance
    normalisation sees what it saw in training.
    """
    from monai.inferers import sliding_window_inference

    if all(s <= p for s, p in zip(condition.shape[2:], patch)):
        return generator(condition, noise)
    k = condition.shape[1]
    out = sliding_window_inference(torch.cat([condition, noise], dim=1), roi_size=list(patch), sw_batch_size=4,
                                   predictor=lambda t: generator(t[:, :k], t[:, k:]), overlap=overlap, mode="gaussian")
    return out if isinstance(out, torch.Tensor) else torch.as_tensor(out)
