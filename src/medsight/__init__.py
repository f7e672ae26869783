"""medsight: deep learning for medical images, from scanner files to validated, explained models."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
