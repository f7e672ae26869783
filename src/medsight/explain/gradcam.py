"""Grad-CAM heat maps for classifiers (2D, 3D, per-slice for CNN-LSTM) and label saliency for segmentation networks.

The maps follow Selvaraju et al. (Grad-CAM, 2017): the activations of one layer are weighted by the spatial mean of
the score's gradient, summed over channels, clipped at zero, upsampled to the input and scaled to [0, 1].

MONAI's ``monai.visualize.GradCAM`` is not used: it registers backward hooks that are never removed (each call on
the same model adds more), switches the model's in-place activations off for good, and expects one map per batch
item, while a CNN-LSTM's slice encoder yields one map per slice. Here a forward hook is held only for one call and
the gradient is taken with ``torch.autograd.grad`` (which also works when the encoder is frozen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.errors import did_you_mean, user_error


def check_image(image: torch.Tensor) -> None:
    """Raise a MedsightError unless ``image`` is a float tensor ``(1, C, H, W[, D])``."""
    if not isinstance(image, torch.Tensor) or image.ndim not in (4, 5) or image.shape[0] != 1:
        got = f"shape {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise user_error("one image as a tensor (1, C, *spatial) with 2 or 3 spatial axes", got, None,
                         "add a batch axis with image[None] and explain one image at a time")


def check_target(model: nn.Module, target: int) -> None:
    """Raise a MedsightError unless ``target`` is a class index of ``model`` (when the model says how many)."""
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and not 0 <= target < num_classes:
        raise user_error(f"a target class in 0..{num_classes - 1}", target, None, "pass the index of a class")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def normalize(heat: torch.Tensor) -> np.ndarray:
    """Scale a non-negative map to [0, 1] by its min and max (a constant map becomes zeros)."""
    heat = heat.detach().float()
    lo, hi = heat.min(), heat.max()
    out = (heat - lo) / (hi - lo) if hi > lo else torch.zeros_like(heat)
    return out.cpu().numpy().astype(np.float32)


def _find_layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        raise did_you_mean(layer, [n for n in modules if n], "layer name")
    return modules[layer]


def layer_cam(model: nn.Module, image: torch.Tensor, layer: str,
              score: Callable[[Any], torch.Tensor], **forward_kwargs: Any) -> torch.Tensor:
    """Raw Grad-CAM ``(N, *s)`` of ``layer`` for a scalar ``score(model_output)``; ``N`` is the layer's batch.

    The model runs in eval mode (restored afterwards) with cuDNN off; the hook is removed even when the forward
    pass fails.
    """
    module = _find_layer(model, layer)
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    was_training = model.training
    model.eval()
    try:  # cuDNN's RNN has no backward in eval mode (CNN-LSTM); the native kernels do
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            x = image.detach().to(model_device(model), torch.float32).requires_grad_(True)
            value = score(model(x, **forward_kwargs))
            if not seen or not isinstance(seen[-1], torch.Tensor) or seen[-1].ndim < 3:
                raise user_error("a layer whose output is a spatial feature map (N, C, *spatial)",
                                 f"{layer!r} ({type(module).__name__})", None, "pass a convolutional layer name")
            acts = seen[-1]
            (grads,) = torch.autograd.grad(value, acts)
    finally:
        handle.remove()
        model.train(was_training)
    weights = grads.mean(dim=tuple(range(2, grads.ndim)), keepdim=True)
    return F.relu((weights * acts).sum(dim=1)).detach()


def upsample(cam: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize maps ``(N, *s)`` to ``(N, *size)`` with (bi/tri)linear interpolation."""
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(cam[:, None], size=size, mode=mode, align_corners=False)[:, 0]


def grad_cam(model: nn.Module, image: torch.Tensor, target: int, *, tabular: torch.Tensor | None = None,
             layer: str | None = None) -> np.ndarray:
    """Grad-CAM heat map of class ``target`` for one image.

    Args:
        model: a :class:`~medsight.models.classifiers.Classifier` (or any network with logits ``(1, K)``).
        image: ``(1, C, *S)`` with ``S`` = ``(H, W)`` or ``(D, H, W)``.
        target: class index whose logit is explained.
        tabular: ``(1, T)`` when the model fuses tabular values.
        layer: dotted module name; defaults to ``model.cam_layer``.

    Returns:
        A float32 map of shape ``S`` in [0, 1]. For a CNN-LSTM (``model.cam_slices``) one map per axial slice from
        the shared slice encoder, stacked to ``(D, H, W)`` and scaled jointly so slices compare.

    Raises:
        MedsightError: bad image shape or class index, or a model without a Grad-CAM layer (a ViT): use occlusion.
    """
    check_image(image)
    check_target(model, target)
    layer = layer or getattr(model, "cam_layer", None)
    if layer is None:
        raise user_error("a model with a convolutional feature map for Grad-CAM", f"{type(model).__name__} without one",
                         None, "use occlusion sensitivity instead (medsight.explain.occlusion), which works for any model")
    kwargs = {} if tabular is None else {"tabular": tabular.to(model_device(model))}
    cam = layer_cam(model, image, layer, lambda logits: logits[0, target], **kwargs)
    size = tuple(image.shape[2:])
    if getattr(model, "cam_slices", False):
        if cam.shape[0] != size[0]:
            raise user_error(f"one slice map per axial slice ({size[0]})", f"{cam.shape[0]} maps from {layer!r}", None,
                             "pass the slice encoder's last block as layer")
        return normalize(upsample(cam, size[1:]))
    return normalize(upsample(cam, size)[0])


def segmentation_saliency(model: nn.Module, image: torch.Tensor, label: int, *, layer: str) -> np.ndarray:
    """Grad-CAM saliency of one label for a segmentation network (output ``(1, K, *S)``, or a list of them).

    The score is the mean logit of ``label`` over the voxels predicted as ``label`` (argmax over ``K``, or logit > 0
    for a single-channel output), or over all voxels when none is predicted. Under deep supervision the first
    (full-resolution) output is used.

    Args:
        model: the segmentation network (e.g. medsight's ``dynunet``).
        image: ``(1, C, *S)``.
        label: the label (output channel) to explain.
        layer: dotted module name of a feature map, e.g. ``"net.bottleneck"`` (coarse, semantic) or
            ``"net.upsamples.0"`` (finer) for ``dynunet``.

    Returns:
        A float32 map of shape ``S`` in [0, 1].
    """
    check_image(image)

    def score(out: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        logits = out[0] if isinstance(out, (list, tuple)) else out
        if not 0 <= label < logits.shape[1]:
            raise user_error(f"a label in 0..{logits.shape[1] - 1}", label, None, "pass a label the model predicts")
        pred = logits.argmax(dim=1) == label if logits.shape[1] > 1 else logits[:, 0] > 0
        mask = pred if bool(pred.any()) else torch.ones_like(pred)
        return logits[:, label][mask].mean()

    cam = layer_cam(model, image, layer, score)
    return normalize(upsample(cam, tuple(image.shape[2:]))[0])
