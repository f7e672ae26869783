"""Sliding-window probabilities: window grid, blending, mirror TTA and fold averaging against whole-image forwards."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medsight.engine.sliding_window import mirror_flips, sliding_window_probabilities, window_starts


@pytest.mark.parametrize("size,patch,overlap", [(10, 4, 0.5), (11, 4, 0.5), (64, 16, 0.25), (5, 5, 0.5), (3, 8, 0.5),
                                                (100, 33, 0.0), (97, 24, 0.9)])
def test_window_starts_cover_the_axis_with_at_least_the_overlap(size: int, patch: int, overlap: float) -> None:
    starts = window_starts(size, patch, overlap)
    assert starts[0] == 0
    assert starts[-1] == max(0, size - patch)
    assert starts == sorted(set(starts))
    steps = np.diff(starts)
    assert all(s <= math.ceil(patch * (1 - overlap)) for s in steps)  # neighbours share the overlap (whole voxels)
    covered = np.zeros(max(size, patch), bool)
    for s in starts:
        covered[s:s + patch] = True
    assert covered.all()


def test_window_starts_refuse_an_overlap_of_one() -> None:
    with pytest.raises(ValueError, match="overlap in"):
        window_starts(10, 4, 1.0)


def test_mirror_flips_are_every_subset_of_the_axes_present() -> None:
    assert mirror_flips([0, 1, 2], 3) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert mirror_flips([0, 1, 2], 2) == [(), (0,), (1,), (0, 1)]


def _pointwise(dims: int, seed: int, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(2, classes, 1)
    return conv.eval()


@pytest.mark.parametrize("shape,patch", [((2, 37, 29), (16, 12)), ((2, 13, 21, 17), (8, 8, 8)), ((2, 5, 30, 6), (8, 16, 8))])
def test_a_pointwise_network_gives_the_whole_image_softmax(shape: tuple[int, ...], patch: tuple[int, ...]) -> None:
    """Each voxel's probability does not depend on the window, so blending any windows must return it exactly,
    including where the image is smaller than a window (padding) and with mirror flips."""
    x = torch.randn(shape)
    dims = len(shape) - 1
    net = _pointwise(dims, 0)
    with torch.no_grad():
        ref = torch.softmax(net(x[None]), 1)[0]
    got = sliding_window_probabilities(x.numpy(), [net], patch, overlap=0.5, flips=mirror_flips(range(dims), dims),
                                       batch_size=3)
    assert got.shape == ref.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.sum(0), torch.ones(shape[1:]), atol=1e-5, rtol=0)


def test_flips_are_mirrored_back_and_folds_averaged() -> None:
    """One window covering the image: the result is the mean over networks and flips of the flipped-back softmax."""
    torch.manual_seed(1)
    nets = [nn.Conv2d(2, 3, (3, 5), padding=(1, 2)).eval() for _ in range(2)]  # not mirror-symmetric
    x = torch.randn(2, 12, 20)
    flips = [(), (1,), (0, 1)]
    expected = torch.zeros(3, 12, 20)
    with torch.no_grad():
        for net in nets:
            for f in flips:
                dims = [a + 1 for a in f]
                xi = torch.flip(x, dims) if dims else x
                p = torch.softmax(net(xi[None]), 1)[0]
                expected += torch.flip(p, dims) if dims else p
    expected /= len(nets) * len(flips)
    got = sliding_window_probabilities(x, nets, (12, 20), flips=flips)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_overlapping_windows_blend_towards_the_centre_of_each_window() -> None:
    """A network whose answer depends on where the window starts: at a window's centre its own answer dominates."""

    class Position(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # class 0 when the window's first input value is > 0
            first = x[:, 0, 0, 0].view(-1, 1, 1, 1)
            return torch.cat([first * 20, -first * 20], 1).expand(-1, 2, *x.shape[2:])

    x = torch.zeros(1, 8, 24)
    x[0, :, :8] = 1.0  # the window starting at 0 sees +1 first; the others start inside the zeros or -1 region
    x[0, :, 8:] = -1.0
    got = sliding_window_probabilities(x, [Position()], (8, 16), overlap=0.5)
    assert got[0, 4, 7] > 0.9  # centre of the first window (start 0)
    assert got[1, 4, 20] > 0.9  # centre of the last window (start 8)


def test_a_memory_mapped_input_is_read_window_by_window(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).normal(size=(2, 9, 14, 11)).astype(np.float32)
    np.save(tmp_path / "x.npy", arr)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    net = _pointwise(3, 2)
    torch.testing.assert_close(sliding_window_probabilities(mm, [net], (8, 8, 8)),
                               sliding_window_probabilities(arr, [net], (8, 8, 8)))


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="2 spatial axes"):
        sliding_window_probabilities(np.zeros((1, 4, 4, 4), np.float32), [_pointwise(2, 0)], (4, 4))
