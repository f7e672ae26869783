"""Synthetic multi-task datasets (``images/``, ``masks/``, ``labels.csv``) for tests and demos.

Each case is a :func:`medsight.data.synthetic.make_phantom` with one structure (the mask); cases of class
``lesion`` also hold a bright spot inside the structure (not in the mask), cases of class ``normal`` do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.data.synthetic import make_phantom
from medsight.io import write_image


def write_multitask_dataset(root: str | Path, *, num_cases: int = 8, shape: tuple[int, ...] = (48, 48), seed: int = 0,
                            without_mask: tuple[int, ...] = (), without_class: tuple[int, ...] = ()) -> Path:
    """Write ``num_cases`` phantoms: 2D as 8-bit PNG, 3D as NIfTI; every other case is of class ``lesion``.

    Args:
        root: the dataset folder (created).
        num_cases: how many cases.
        shape: spatial shape of each image.
        seed: seed of the phantoms.
        without_mask: indices of cases written without a mask (class only).
        without_class: indices of cases written with an empty label (mask only).

    Returns:
        ``root``.
    """

    root = Path(root)
    ending = ".png" if len(shape) == 2 else ".nii.gz"
    rows = ["file,label"]
    for i in range(num_cases):
        case = make_phantom(shape, num_labels=1, seed=seed + i, case_id=f"case_{i:03d}")
        lab = case.label_map
        if lab is None:  # make_phantom always returns a mask
            raise RuntimeError("phantom without a mask")
        arr = np.asarray(case.image.array, dtype=np.float32)
        positive = i % 2 == 1
        if positive:
            inside = np.argwhere(lab.array[0] > 0)
            centre = inside[len(inside) // 2]
            grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
            spot = sum((g - c) ** 2 for g, c in zip(grids, centre)) <= max(2, min(shape) // 12) ** 2
            arr[0][spot] += 150.0
        image = case.image.with_array(np.clip(arr / 2.0, 0, 255).astype(np.uint8) if ending == ".png" else arr)
        name = f"case_{i:03d}{ending}"
        write_image(image, root / "images" / name)
        if i not in without_mask:
            write_image(lab.with_array((lab.array > 0).astype(np.uint8) * (255 if ending == ".png" else 1)), root / "masks" / name)
        rows.append(f"{name},{'' if i in without_class else ('lesion' if positive else 'normal')}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


__all__ = ["write_multitask_dataset"]
