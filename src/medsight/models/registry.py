"""An explicit registry of network builders by name, with did-you-mean errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from medsight.errors import did_you_mean

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder ``f(*, spatial_dims, in_channels, out_channels, **kwargs) -> nn.Module``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        return fn

    return deco


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network; the keyword arguments are stored in checkpoints to rebuild it."""
    from medsight.models import classifiers, multitask, registration, unet  # noqa: F401  (registers the builders)

    if name not in MODELS:
        raise did_you_mean(name, MODELS, "model")
    return MODELS[name](**kwargs)
