"""Register two image files and write everything into an output folder (what ``medsight register`` calls).

Writes ``transform.tfm`` (linear result) or ``transform.h5`` (with a deformable part), ``registered.nii.gz`` (the moving
image on the fixed grid), ``registered_labels.nii.gz`` (with moving labels) and ``registration.json`` (stages, metric
values, times, and with fixed labels the Dice per label and the folding fraction).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medsight.core.atomic import write_text
from medsight.core.image import Image
from medsight.core.outputs import check_output_folder
from medsight.io import read_image, write_image
from medsight.tasks.registration.classical import (
    RegistrationConfig,
    StageResult,
    linear_only,
    register_images,
)
from medsight.tasks.registration.evaluate import evaluate_pair
from medsight.tasks.registration.learned import load_registration_model, predict_transform
from medsight.tasks.registration.transforms import check_pair, save_transform, warp_image


def _read(path: str | Path | None, fixed: Image | None = None, role: str = "image") -> Image | None:
    if path is None:
        return None
    img = read_image(path)
    if fixed is not None:
        check_pair(fixed, img, "the fixed image", role)
    return img


def register_files(fixed_path: str | Path, moving_path: str | Path, out_dir: str | Path, *,
                   config: RegistrationConfig | None = None, model: str | Path | None = None,
                   fixed_mask: str | Path | None = None, moving_labels: str | Path | None = None,
                   fixed_labels: str | Path | None = None, device: str | None = None,
                   progress: Callable[[StageResult], None] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Register ``moving_path`` onto ``fixed_path`` classically (``config``) or with a trained network (``model``).

    ``out_dir`` is new or empty (earlier results are replaced only with ``overwrite``), and never an input or a folder
    holding one. Returns the content of ``registration.json``.
    """
    inputs = [p for p in (fixed_path, moving_path, fixed_mask, moving_labels, fixed_labels, model) if p is not None]
    check_output_folder(out_dir, inputs, overwrite=overwrite)
    fixed = read_image(fixed_path)
    moving = read_image(moving_path)
    check_pair(fixed, moving, "the fixed image", "the moving image")
    mask = _read(fixed_mask, fixed, "the fixed mask")
    mov_lab = _read(moving_labels, fixed, "the moving labels")
    fix_lab = _read(fixed_labels, fixed, "the fixed labels")
    out = Path(out_dir)
    t0 = time.perf_counter()
    if model is not None:

        net, plan = load_registration_model(model, device or "cpu")
        transform, similarity = predict_transform(net, plan, fixed, moving, device or "cpu")
        stage = StageResult(f"learned ({plan.similarity})", similarity, 1, time.perf_counter() - t0, "one forward pass")
        if progress:
            progress(stage)
        stages = [stage]
        method: dict[str, Any] = {"method": "learned", "model": str(model)}
    else:
        config = config or RegistrationConfig()
        transform, stages = register_images(fixed, moving, config, fixed_mask=mask, progress=progress)
        method = {"method": "classical", "metric": config.metric, "stages_requested": list(config.stages), "seed": config.seed}
    seconds = time.perf_counter() - t0
    tfm = save_transform(transform, out / ("transform.tfm" if linear_only(transform) else "transform.h5"))
    written = [tfm, write_image(warp_image(moving, transform, reference=fixed), out / "registered.nii.gz")]
    warped_lab = None
    if mov_lab is not None:
        warped_lab = warp_image(mov_lab, transform, reference=fixed, labels=True)
        written.append(write_image(warped_lab, out / "registered_labels.nii.gz"))
    report = {**method, "fixed": str(fixed_path), "moving": str(moving_path), "seconds": round(seconds, 3),
              "stages": [s.as_dict() for s in stages], "transform": tfm.name,
              **evaluate_pair(transform, fixed, warped_labels=warped_lab, fixed_labels=fix_lab)}
    written.append(write_text(out / "registration.json", json.dumps(report, indent=2)))
    report["written"] = [str(w) for w in written]
    return report
