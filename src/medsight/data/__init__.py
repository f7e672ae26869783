"""Data model (Image, Case), dataset specs, splits and synthetic phantoms."""

from medsight.data.case import Case
from medsight.data.image import Image, SourceInfo

__all__ = ["Case", "Image", "SourceInfo"]
