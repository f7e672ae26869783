"""Synthetic phantoms with known label maps and geometry, for tests, demos and sanity checks.

Each phantom holds a few ellipsoids (3D) or ellipses (2D) with distinct labels on a textured background,
with noise and a smooth bias field, so a model must actually learn shape and contrast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.core.case import Case
from medsight.core.image import Image, SourceInfo
from medsight.io import write_image


def make_phantom(
    shape: tuple[int, ...] = (32, 48, 40),
    *,
    num_labels: int = 2,
    spacing: tuple[float, ...] | None = None,
    origin: tuple[float, ...] | None = None,
    noise: float = 0.15,
    seed: int = 0,
    case_id: str = "phantom",
) -> Case:
    """One phantom case.

    Args:
        shape: spatial shape, 2 or 3 entries (row-major, e.g. ``(D, H, W)``).
        num_labels: foreground labels 1..num_labels, each an ellipse/ellipsoid of its own intensity.
        spacing: voxel size (mm) per axis; defaults to 1 mm.
        origin: physical origin (mm); defaults to 0.
        noise: Gaussian noise SD relative to the contrast.
        seed: random seed (all randomness comes from a local generator).
        case_id: the case's id.

    Returns:
        A :class:`Case` with a float32 image ``(1, *shape)`` and a uint8 label map ``(1, *shape)``.
    """
    rng = np.random.default_rng(seed)
    d = len(shape)
    if d not in (2, 3):
        raise ValueError(f"Expected a 2D or 3D shape, got {shape}")
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    label = np.zeros(shape, dtype=np.uint8)
    image = np.zeros(shape, dtype=np.float32)
    for lab in range(1, num_labels + 1):
        centre = [rng.uniform(0.3, 0.7) * s for s in shape]
        radii = [rng.uniform(0.12, 0.22) * s for s in shape]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0
        label[inside] = lab
    contrast = np.linspace(1.0, 2.0, num_labels + 1)
    for lab in range(num_labels + 1):
        image[label == lab] = contrast[lab] if lab else 0.0
    bias = 1.0 + 0.2 * np.sin(grids[-1] / max(shape[-1], 1) * np.pi * rng.uniform(0.5, 1.5))
    image = image * bias + 0.3 * np.sin(grids[0] / 3.0 + rng.uniform(0, 6)) * 0.2
    image = image + rng.normal(0.0, noise, size=shape).astype(np.float32)
    image = (image * 100.0 + 200.0).astype(np.float32)
    spacing = spacing or (1.0,) * d
    origin = origin or (0.0,) * d
    src = SourceInfo(path=f"synthetic:{case_id}", format="synthetic", modality="MR", extra={"synthetic": "true"})
    img = Image(image[None], spacing=spacing, origin=origin, source=src)
    lab_img = Image(label[None], spacing=spacing, origin=origin, source=src)
    return Case(case_id=case_id, image=img, channel_names=("MR",), label=lab_img, meta={"synthetic": "true"})


def write_phantom_dataset(
    root: str | Path,
    *,
    num_cases: int = 6,
    shape: tuple[int, ...] = (32, 48, 40),
    num_labels: int = 2,
    spacing: tuple[float, ...] | None = None,
    seed: int = 0,
    file_ending: str = ".nii.gz",
) -> Path:
    """Write an nnU-Net v2 style dataset of phantoms (``dataset.json``, ``imagesTr``, ``labelsTr``).

    2D phantoms with ``file_ending=".png"`` are written as 8-bit PNGs. Returns ``root``.
    """
    import json

    root = Path(root)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for i in range(num_cases):
        case = make_phantom(shape, num_labels=num_labels, spacing=spacing, seed=seed + i, case_id=f"case_{i:03d}")
        img = case.image
        if file_ending == ".png":
            arr = np.clip(img.array / 2.0, 0, 255).astype(np.uint8)
            img = img.with_array(arr)
        write_image(img, root / "imagesTr" / f"case_{i:03d}_0000{file_ending}")
        if case.label_map is None:  # make_phantom always returns a label map
            raise RuntimeError("phantom without label map")
        write_image(case.label_map, root / "labelsTr" / f"case_{i:03d}{file_ending}")
    labels = {"background": 0, **{f"structure_{k}": k for k in range(1, num_labels + 1)}}
    spec = {"name": root.name, "channel_names": {"0": "MR"}, "labels": labels, "numTraining": num_cases, "file_ending": file_ending}
    (root / "dataset.json").write_text(json.dumps(spec, indent=2))
    return root
