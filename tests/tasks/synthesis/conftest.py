"""Fixtures of the synthesis tests: a tiny MedMNIST-style file and a tiny DRIVE-like folder dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .tiny import write_roi_folders, write_tiny_npz


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The tiny trainings here run on one thread (``num_threads=1``); give other tests back PyTorch's setting."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """Two shape classes, 16x16 uint8, train/val/test splits."""
    return write_tiny_npz(tmp_path / "tinymnist.npz")


@pytest.fixture
def roi_folders(tmp_path: Path) -> Path:
    """Four 40x48 RGB PNG phantoms with binary masks and a circular field of view."""
    return write_roi_folders(tmp_path / "fundus")
