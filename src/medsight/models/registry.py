"""Networks by name: one explicit table of builders (as segmentation_models.pytorch lists its encoders), with
did-you-mean errors. Checkpoints store the name and the keyword arguments, so ``create_model`` rebuilds any saved
network. To add a network: write its builder ``f(**kwargs) -> nn.Module`` in a module here and add one line below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from medsight.errors import did_you_mean
from medsight.models import classifiers, multitask, registration, unet

MODELS: dict[str, Callable[..., nn.Module]] = {
    # segmentation (spatial_dims, in_channels, out_channels, ...)
    "dynunet": unet.dynunet,
    "unet": unet.monai_unet,
    "segresnet": unet.segresnet,
    # classification (spatial_dims, in_channels, num_classes, input_size, ...)
    "resnet18": classifiers.resnet18,
    "resnet50": classifiers.resnet50,
    "densenet121": classifiers.densenet121,
    "smallcnn": classifiers.smallcnn,
    "cnnlstm": classifiers.cnnlstm,
    "vit": classifiers.vit,
    # shared encoder for segmentation + classification (+ heat map)
    "multitask_dynunet": multitask.multitask_dynunet,
    # deformable registration
    "voxelmorph": registration.voxelmorph,
}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a network from the table; the keyword arguments are stored in checkpoints to rebuild it."""
    if name not in MODELS:
        raise did_you_mean(name, MODELS, "model")
    return MODELS[name](**kwargs)
