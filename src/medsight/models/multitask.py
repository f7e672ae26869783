"""One shared U-Net encoder, a segmentation decoder, a classification head and an optional lesion-centre heat map.

The network is the segmentation planner's MONAI DynUNet (:class:`~medsight.models.unet.DeepSupervisionUNet`):
its encoder (``input_block`` -> ``downsamples`` -> ``bottleneck``) is shared; the decoder gives the label logits;
the classification head global-average-pools the bottleneck features (Dropout + Linear); the heat-map head is one
more output channel of the decoder's final 1x1 convolution (a separate linear map of the last decoder features).

``tasks`` chooses the heads that run: a classification-only model runs the encoder alone, so single-task baselines
with the very same encoder cost no decoder time. For learned uncertainty weighting (Kendall et al., CVPR 2018)
the model holds one log-variance per task (``log_variances``), so the optimiser, checkpoints and resume treat
them like every other weight; prediction ignores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from medsight.errors import did_you_mean, user_error
from medsight.models.unet import DeepSupervisionUNet

TASKS = ("segmentation", "classification", "heatmap")
#: Initial bias of the heat-map logit: sigmoid(-2.19) = 0.1, CenterNet's prior, so training starts from few peaks.
HEATMAP_PRIOR_BIAS = -2.19


class MultitaskOutput(NamedTuple):
    """What :class:`MultitaskUNet` returns; a head that did not run is ``None``.

    Attributes:
        segmentation: label logits ``(B, K, *S)``; in training with deep supervision a list of them (full
            resolution first, the others upsampled to it).
        classification: class logits ``(B, num_classes)``.
        heatmap: lesion-centre logits ``(B, 1, *S)`` (full resolution).
    """

    segmentation: torch.Tensor | list[torch.Tensor] | None
    classification: torch.Tensor | None
    heatmap: torch.Tensor | None


def check_tasks(tasks: Sequence[str], where: Any = None) -> list[str]:
    """The task list in canonical order; raises for unknown names, an empty list or a heat map without masks."""

    out = list(dict.fromkeys(str(t) for t in tasks))
    for t in out:
        if t not in TASKS:
            raise did_you_mean(t, TASKS, "multitask task")
    if not out:
        raise user_error(f"at least one task among {', '.join(TASKS)}", "none", where, 'set e.g. "tasks": ["segmentation", "classification"]')
    if "heatmap" in out and "segmentation" not in out:
        raise user_error("'heatmap' together with 'segmentation' (the heat map is a decoder output)", out, where,
                         'add "segmentation" to "tasks"')
    return [t for t in TASKS if t in out]


class MultitaskUNet(nn.Module):
    """DynUNet encoder shared by a segmentation decoder, a classification head and an optional heat-map head.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: segmentation labels (background included).
        num_classes: image classes.
        kernels, strides, filters, deep_supervision, deep_supr_num: the DynUNet topology of the segmentation plan.
        tasks: heads to run, a subset of ``("segmentation", "classification", "heatmap")``.
        dropout: dropout before the classification Linear.
        learned_weights: hold one log-variance per task for uncertainty weighting of the losses.
    """

    def __init__(self, *, spatial_dims: int, in_channels: int, out_channels: int, num_classes: int,
                 kernels: list[list[int]], strides: list[list[int]], filters: list[int], deep_supervision: bool = True,
                 deep_supr_num: int = 1, tasks: Sequence[str] = ("segmentation", "classification"), dropout: float = 0.0,
                 learned_weights: bool = False) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise user_error("spatial_dims 2 or 3", spatial_dims, None, "pass 2 for images or 3 for volumes")
        if num_classes < 2 or out_channels < 2:
            raise user_error("at least 2 classes and 2 segmentation labels", f"{num_classes} and {out_channels}", None,
                             "pass the class count and the label count with background")
        if not 0.0 <= dropout < 1.0:
            raise user_error("dropout in [0, 1)", dropout, None, "pass a probability such as 0.2")
        self.tasks = check_tasks(tasks)
        self.spatial_dims, self.num_classes, self.out_channels = spatial_dims, num_classes, out_channels
        heat = 1 if "heatmap" in self.tasks else 0
        self.unet = DeepSupervisionUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels + heat,
                                        kernels=kernels, strides=strides, filters=filters, deep_supervision=deep_supervision,
                                        deep_supr_num=deep_supr_num)
        if heat:
            with torch.no_grad():
                out_block = self.unet.head.out if self.unet.head is not None else self.unet.net.output_block
                out_block.conv.conv.bias[out_channels] = HEATMAP_PRIOR_BIAS
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(filters[-1], num_classes))
        self.pool = (nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d)(1)
        self.stride = tuple(int(s) for s in np.prod(np.asarray(strides), axis=0))
        self.log_variances = nn.Parameter(torch.zeros(len(self.tasks))) if learned_weights else None
        self.cam_layer = "unet.net.bottleneck"
        self._seen: dict[str, torch.Tensor] = {}  # the bottleneck output of the current forward pass
        self.unet.net.bottleneck.register_forward_hook(lambda _m, _i, out: self._seen.__setitem__("bottleneck", out))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a MedsightError unless ``x`` is ``(B, C, *S)`` with every side a multiple of the total stride."""
        if x.ndim != self.spatial_dims + 2 or any(s % k for s, k in zip(x.shape[2:], self.stride)):
            fix = "pad each side to a multiple of " + "x".join(map(str, self.stride)) + " (see medsight.tasks.multitask.predict.pad_to)"
            raise user_error(f"images (B, C, *spatial) with sides divisible by {list(self.stride)}", f"shape {tuple(x.shape)}", None, fix)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features ``(B, filters[-1], *S / stride)`` from the encoder alone."""
        net = self.unet.net
        h = net.input_block(x)
        for block in net.downsamples:
            h = block(h)
        out = net.bottleneck(h)
        self._seen.clear()
        return out

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` from bottleneck features."""
        return self.head(self.pool(features).flatten(1))

    def forward(self, x: torch.Tensor) -> MultitaskOutput:
        """Run the heads in :attr:`tasks` on images ``(B, C, *S)``."""
        self.check_input(x)
        if "segmentation" not in self.tasks:
            return MultitaskOutput(None, self.classify(self.encode(x)), None)
        out = self.unet(x)
        feats = self._seen.pop("bottleneck", None)
        k = self.out_channels
        outs = out if isinstance(out, list) else [out]
        seg: torch.Tensor | list[torch.Tensor] = [o[:, :k] for o in outs] if isinstance(out, list) else out[:, :k]
        heat = outs[0][:, k:] if "heatmap" in self.tasks else None
        logits = self.classify(feats) if "classification" in self.tasks and feats is not None else None
        return MultitaskOutput(seg, logits, heat)


class SegmentationView(nn.Module):
    """The label logits of a :class:`MultitaskUNet` alone, for MONAI's sliding-window inference."""

    def __init__(self, model: MultitaskUNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seg = self.model(x).segmentation
        if not isinstance(seg, torch.Tensor):
            raise user_error("a model with a segmentation head in eval mode", self.model.tasks, None, "call model.eval() first")
        return seg


class ClassificationView(nn.Module):
    """The class logits of a :class:`MultitaskUNet` from its encoder alone (for prediction and Grad-CAM:
    ``num_classes`` and ``cam_layer`` are those of the classification head)."""

    def __init__(self, model: MultitaskUNet) -> None:
        super().__init__()
        self.model = model
        self.num_classes = model.num_classes
        self.cam_layer = "model.unet.net.bottleneck"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.model.check_input(x)
        return self.model.classify(self.model.encode(x))


def multitask_dynunet(**kwargs: Any) -> nn.Module:
    """:class:`MultitaskUNet` from its JSON-plain constructor arguments (as stored in checkpoints)."""
    return MultitaskUNet(**kwargs)


__all__ = ["TASKS", "ClassificationView", "MultitaskOutput", "MultitaskUNet", "SegmentationView", "check_tasks"]
