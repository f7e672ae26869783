"""Datasets: specs over cases (nnU-Net/MSD dataset.json, folders, CSV, NPZ), checks, splits, the fingerprint and
synthetic phantoms."""
