"""Resampling, normalisation and the per-case array cache."""
