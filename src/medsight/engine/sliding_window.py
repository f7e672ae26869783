"""Sliding-window inference that blends class probabilities into one buffer.

Why our own and not ``monai.inferers.sliding_window_inference``: MONAI blends whole-volume logits and keeps a
whole-volume weight map beside them, so a prediction with mirror test-time augmentation and a fold ensemble needs the
blended logits, the weight map, a softmax copy and the flipped input of every flip at once (about ``3K + 2`` volumes
for ``K`` classes). Here the flips and folds are applied per window (as nnU-Net does), the window's probabilities are
averaged before they are blended, and the Gaussian weights of a regular window grid factor into one profile per axis,
so the normaliser costs ``D + H + W`` numbers instead of a volume. Peak memory is the input plus the ``K`` probability
volumes. ``benchmarks/inference.py`` measures both.

Windows: on each axis ``n = ceil((S - P) / (P (1 - overlap))) + 1`` start positions spread evenly from ``0`` to
``S - P`` (the first and the last window touch the borders). An image smaller than the window is padded with zeros
and the padding is cropped from the result.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

Network = Callable[[torch.Tensor], torch.Tensor]


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start positions of the windows on one axis (``size >= patch``), first ``0``, last ``size - patch``."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"Expected an overlap in [0, 1), got {overlap}")
    if size <= patch:
        return [0]
    step = max(1.0, patch * (1.0 - overlap))
    n = math.ceil((size - patch) / step) + 1
    return [int(round(i * (size - patch) / (n - 1))) for i in range(n)]


def gaussian_profile(patch: int, sigma_scale: float = 0.125) -> np.ndarray:
    """One axis of the Gaussian window weight (peak 1 at the centre, ``sigma = sigma_scale * patch``), float64."""
    centre = (patch - 1) / 2.0
    sigma = max(sigma_scale * patch, 1e-3)
    g = np.exp(-0.5 * ((np.arange(patch) - centre) / sigma) ** 2)
    return np.maximum(g / g.max(), 1e-6)  # never zero: every voxel of a window counts a little


def mirror_flips(mirror_axes: Sequence[int], dims: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial mirror axes below ``dims`` (``()`` first): the flips of mirror TTA."""
    axes = [int(a) for a in mirror_axes if 0 <= int(a) < dims]
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def _batches(grid: list[list[int]], size: int) -> Iterator[list[tuple[int, ...]]]:
    it = itertools.product(*grid)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def sliding_window_probabilities(
    image: np.ndarray | torch.Tensor,
    networks: Sequence[Network],
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    flips: Sequence[tuple[int, ...]] = ((),),
    batch_size: int = 2,
    device: torch.device | str = "cpu",
    autocast: bool = False,
    sigma_scale: float = 0.125,
) -> torch.Tensor:
    """Class probabilities of a whole image, from networks applied window by window.

    Args:
        image: ``(C, *spatial)`` (2D or 3D), float; a NumPy array (a memory map is read window by window) or a tensor.
        networks: callables mapping ``(B, C, *patch)`` to logits ``(B, K, *patch)`` (e.g. the folds' networks in
            eval mode); their softmax probabilities are averaged.
        patch_size: window size per spatial axis.
        overlap: fraction of a window shared with its neighbour on each axis, in ``[0, 1)``.
        flips: spatial axes (0-based) to mirror per window, ``()`` being the unflipped window; each flip's
            prediction is mirrored back before averaging (mirror test-time augmentation).
        batch_size: windows per network call.
        device: where the networks run; the input and the result stay on the CPU.
        autocast: run the networks under ``torch.autocast`` (mixed precision) on ``device``.
        sigma_scale: the Gaussian weight's standard deviation as a fraction of the window size.

    Returns:
        ``(K, *spatial)`` float32 probabilities on the CPU, summing to 1 over ``K`` at every voxel.
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
    if arr.ndim - 1 != len(patch_size):
        raise ValueError(f"Expected a (C, *spatial) image with {len(patch_size)} spatial axes, got shape {arr.shape}")
    if not networks:
        raise ValueError("Expected at least one network, got none")
    dev = torch.device(device)
    spatial = tuple(int(s) for s in arr.shape[1:])
    patch = tuple(int(p) for p in patch_size)
    padded = tuple(max(s, p) for s, p in zip(spatial, patch))
    if padded != spatial:  # smaller than a window on some axis: pad with zeros (cropped again below)
        arr = np.pad(np.asarray(arr, dtype=np.float32), [(0, 0)] + [(0, p - s) for s, p in zip(spatial, padded)])
    grid = [window_starts(s, p, overlap) for s, p in zip(padded, patch)]
    profiles = [gaussian_profile(p, sigma_scale) for p in patch]
    weight = torch.ones(patch, dtype=torch.float32)
    for axis, prof in enumerate(profiles):
        shape = [1] * len(patch)
        shape[axis] = -1
        weight = weight * torch.as_tensor(prof, dtype=torch.float32).view(shape)
    out: torch.Tensor | None = None
    weight = (weight / (len(networks) * len(flips))).to(dev)  # the mean over views folded into the blending weight
    for chunk in _batches(grid, max(1, int(batch_size))):
        slices = [tuple(slice(s, s + p) for s, p in zip(starts, patch)) for starts in chunk]
        x = torch.from_numpy(np.stack([np.asarray(arr[(slice(None), *sl)], dtype=np.float32) for sl in slices])).to(dev)
        prob: torch.Tensor | None = None
        for net in networks:
            for f in flips:
                dims = [a + 2 for a in f]
                xi = torch.flip(x, dims) if dims else x
                with torch.no_grad(), torch.autocast(dev.type, enabled=autocast):
                    logits = net(xi)
                if isinstance(logits, list | tuple):  # deep supervision outputs: the full-resolution head first
                    logits = logits[0]
                if not isinstance(logits, torch.Tensor):
                    raise RuntimeError(f"expected a tensor from the network, got {type(logits).__name__}")
                p = torch.softmax(logits.float(), dim=1)
                p = torch.flip(p, dims) if dims else p
                prob = p if prob is None else prob.add_(p)
        if prob is None:
            raise RuntimeError("no network was applied")
        prob = (prob * weight).cpu()
        if out is None:
            out = torch.zeros((prob.shape[1], *padded), dtype=torch.float32)
        for i, sl in enumerate(slices):
            out[(slice(None), *sl)] += prob[i]
    if out is None:
        raise RuntimeError("no window was predicted")
    # the summed weight at a voxel is the product over axes of that axis' summed profiles (the grid is a product);
    # divide in one pass, slice by slice along the first axis, by that slice's weight plane
    norms = []
    for starts, prof, size, width in zip(grid, profiles, padded, patch):
        norm = np.zeros(size)
        for s in starts:
            norm[s:s + width] += prof
        norms.append(torch.as_tensor(norm, dtype=torch.float32))
    plane = norms[1]
    for n in norms[2:]:
        plane = plane[..., None] * n
    for i in range(padded[0]):
        out[:, i].div_(plane * norms[0][i])
    if padded != spatial:
        out = out[(slice(None), *(slice(0, s) for s in spatial))].clone()
    return out
