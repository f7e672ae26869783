"""Networks by name: ``create_model("dynunet", spatial_dims=3, in_channels=1, out_channels=3, ...)``."""

from medsight.models.registry import MODELS, create_model, register_model

__all__ = ["MODELS", "create_model", "register_model"]
