"""Shared fixtures: the real datasets in ../shared/data and small synthetic phantom datasets.

Fixture names are used across the test suite; keep them stable.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medsight.data.synthetic import write_phantom_dataset

#: ../shared/data relative to the repository root (the folder holding pyproject.toml).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

PHANTOM3D_SHAPE = (24, 32, 28)
PHANTOM2D_SHAPE = (64, 64)
PHANTOM_CASES = 6


_LOGGER = logging.getLogger("medsight")
#: the ``medsight`` logger as the session found it: a module-scoped fixture that runs ``main`` changes it before any
#: per-test snapshot could be taken, so every test restores this state instead
_LOGGER_STATE = (list(_LOGGER.handlers), _LOGGER.level, _LOGGER.propagate)


@pytest.fixture(autouse=True)
def _restore_medsight_logger():
    """``medsight.cli.app.main`` binds the ``medsight`` logger to the current stderr and stops it propagating; undo
    that around each test, so a later test neither logs into a stream that pytest has closed nor misses its records
    in ``caplog``."""
    _reset_logger()
    yield
    _reset_logger()


def _reset_logger() -> None:
    _LOGGER.handlers[:] = _LOGGER_STATE[0]
    _LOGGER.setLevel(_LOGGER_STATE[1])
    _LOGGER.propagate = _LOGGER_STATE[2]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real datasets (``../shared/data``); skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (expected ../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture
def phantom3d_dataset(tmp_path: Path) -> Path:
    """An nnU-Net v2 style 3D dataset of 6 phantoms ``(24, 32, 28)``, labels {0, 1, 2}, NIfTI (.nii.gz)."""
    return write_phantom_dataset(tmp_path / "phantom3d", num_cases=PHANTOM_CASES, shape=PHANTOM3D_SHAPE, seed=0)


@pytest.fixture
def phantom2d_dataset(tmp_path: Path) -> Path:
    """An nnU-Net v2 style 2D dataset of 6 phantoms ``(64, 64)``, labels {0, 1, 2}, 8-bit PNG."""
    return write_phantom_dataset(
        tmp_path / "phantom2d", num_cases=PHANTOM_CASES, shape=PHANTOM2D_SHAPE, seed=100, file_ending=".png"
    )


HIPPOCAMPUS = "msd_task04_hippocampus_cropped"


def copy_hippocampus(shared_data: Path, dest: Path, num_cases: int | None = 12) -> Path:
    """Copy the first ``num_cases`` image/label pairs (all when ``None``) of Hippocampus into ``dest``."""
    src = shared_data / HIPPOCAMPUS
    names = sorted(p.name for p in (src / "images").iterdir() if p.name.endswith(".nii.gz"))
    for sub in ("images", "labels"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for name in names[:num_cases]:
            shutil.copyfile(src / sub / name, dest / sub / name)
    return dest


def break_hippocampus(root: Path) -> dict[str, Path]:
    """Plant three errors in a Hippocampus copy; returns ``{problem kind: the file at fault}``.

    * a truncated image (``.nii.gz`` cut in half) -> ``unreadable``
    * a label holding value 7 -> ``undeclared_labels``
    * a label one slice shorter than its image -> ``shape_mismatch``
    """
    from medsight.io import read_image, write_image

    names = sorted(p.name for p in (root / "images").iterdir())
    truncated = root / "images" / names[2]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    seven = root / "labels" / names[5]
    lab = read_image(seven)
    arr = lab.array.copy()
    arr[(0, *(s // 2 for s in arr.shape[1:]))] = 7
    write_image(lab.with_array(arr), seven)

    cropped = root / "labels" / names[8]
    lab = read_image(cropped)
    write_image(lab.with_array(np.ascontiguousarray(lab.array[:, :-1])), cropped)
    return {"unreadable": truncated, "undeclared_labels": seven, "shape_mismatch": cropped}


HippocampusCopy = Callable[..., tuple[Path, dict[str, Path]]]


@pytest.fixture
def hippocampus_copy(shared_data: Path, tmp_path: Path) -> HippocampusCopy:
    """A factory ``make(num_cases=12, *, broken=False) -> (root, {kind: planted file})`` of Hippocampus copies.

    ``num_cases=None`` copies all 260 cases; ``broken=True`` plants the errors of :func:`break_hippocampus`.
    """
    def make(num_cases: int | None = 12, *, broken: bool = False) -> tuple[Path, dict[str, Path]]:
        root = copy_hippocampus(shared_data, tmp_path / f"hippocampus{num_cases or 'all'}{'_broken' if broken else ''}",
                                num_cases)
        return root, (break_hippocampus(root) if broken else {})

    return make


@pytest.fixture
def hippocampus_subset(hippocampus_copy: HippocampusCopy) -> Path:
    """A clean copy of 12 Hippocampus cases (``images/`` + ``labels/``) in tmp."""
    return hippocampus_copy(12)[0]


@pytest.fixture
def broken_hippocampus(hippocampus_copy: HippocampusCopy) -> tuple[Path, dict[str, Path]]:
    """A 12-case copy with three planted errors: ``(root, {kind: file})`` (see :func:`break_hippocampus`)."""
    return hippocampus_copy(12, broken=True)
