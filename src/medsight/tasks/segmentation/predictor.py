"""Apply trained networks to images and return label maps in the input's own geometry.

Steps: preprocess as the plan says -> sliding-window inference with Gaussian blending, mirror test-time
augmentation and the fold mean applied per window (:mod:`medsight.engine.sliding_window`) -> resample probabilities
back to the cropped native grid -> paste into the full image -> arg-max -> postprocessing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medsight.core.case import Case
from medsight.core.guard import check_allocation
from medsight.core.image import Image, SourceInfo
from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.networks import OnnxOptions
from medsight.engine.run import checkpoints
from medsight.engine.runtime import load_networks, read_manifest
from medsight.engine.sliding_window import mirror_flips, sliding_window_probabilities
from medsight.errors import user_error
from medsight.tasks.segmentation.plan import Plan
from medsight.transforms.cache import preprocess_case
from medsight.transforms.postprocess import keep_largest_component
from medsight.transforms.spatial import resize_probabilities

log = logging.getLogger(__name__)


@dataclass
class Predictor:
    """One or more trained networks (folds) sharing a plan."""

    plan: Plan
    models: list[nn.Module]
    device: torch.device
    tta: bool = True
    overlap: float = 0.5
    sw_batch_size: int | None = None  # windows per network call; default 1 on a CPU (activations cost RAM), 2 on a GPU

    @classmethod
    def from_run(cls, run_dir: str | Path, *, folds: Sequence[int | str] | None = None, device: str | None = None,
                 tta: bool = True) -> Predictor:
        """Load the networks of a run folder (``fold_*/checkpoint_best.pt``; ``checkpoint_last.pt`` as a fallback)."""
        run = Path(run_dir)
        if not run.is_dir():
            raise user_error("a run folder made by 'medsight train'", "no such folder", run, "check the path")
        return cls.from_checkpoints(list(checkpoints(run, folds=folds).values()), device=device, tta=tta)

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | Path], *, device: str | None = None, tta: bool = True) -> Predictor:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        states = [load_checkpoint(p) for p in paths]
        plan = Plan.from_dict(states[0]["plan"], where=paths[0])
        models = [model_from_checkpoint(s).to(dev) for s in states]
        return cls(plan=plan, models=models, device=dev, tta=tta)

    # ------------------------------------------------------------------------------------------ core
    def probabilities(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(K, *spatial)`` (float32, CPU) for a preprocessed array ``(C, *spatial)``.

        Every fold and mirror flip is applied window by window and the windows' mean probabilities are blended with
        Gaussian weights (:func:`medsight.engine.sliding_window.sliding_window_probabilities`): the input (read from a
        memory map as needed) and ``K`` probability volumes are the only whole-volume buffers.
        """

        spatial = tuple(int(s) for s in np.shape(array)[1:])
        voxels = int(np.prod(spatial, dtype=np.float64))
        check_allocation((len(self.plan.labels) + 1) * voxels * 4, f"a {'x'.join(map(str, spatial))} volume "
                         "after resampling to the plan's spacing", "probability volume")
        flips = mirror_flips(self.plan.augment.mirror_axes, len(spatial)) if self.tta else [()]
        for model in self.models:
            model.eval()
        return sliding_window_probabilities(array, self.models, self.plan.patch_size, overlap=self.overlap, flips=flips,
                                            batch_size=self.sw_batch_size or (2 if self.device.type == "cuda" else 1),
                                            device=self.device,
                                            autocast=self.device.type == "cuda")

    def predict_case(self, case: Case, *, with_probabilities: bool = True) -> tuple[Image, np.ndarray | None]:
        """Predict one case; returns the label map (same grid and geometry as the input) and probabilities.

        Args:
            case: the image to segment (its label, if any, is ignored).
            with_probabilities: also return the probabilities on the input's grid (costs ``K`` float16 volumes).

        Returns:
            ``(labels, probs)``: labels as a one-channel ``Image`` (uint8) and probabilities ``(K, *spatial)`` float16
            on the input's grid (``None`` when not asked for).
        """
        pre = preprocess_case(case, self.plan)
        probs = self.probabilities(pre.image)
        props = pre.properties
        probs = resize_probabilities(probs, tuple(props["cropped_shape"]))
        region = tuple(slice(a, b) for a, b in props["bbox"])
        labels = np.zeros(props["original_shape"], dtype=np.uint8)  # outside the crop: background
        labels[region] = probs.argmax(0).numpy().astype(np.uint8)
        full = None
        if with_probabilities:
            full = np.zeros((probs.shape[0], *props["original_shape"]), dtype=np.float16)
            full[0] = 1.0
            full[(slice(None), *region)] = probs.numpy().astype(np.float16)
        del probs
        pp = self.plan.postprocessing.get("largest_component") or []
        if pp:
            labels = keep_largest_component(labels, [int(v) for v in pp])
        img = case.image
        src = SourceInfo(path="", format=img.source.format, modality=img.source.modality, series_uid=img.source.series_uid,
                         description="medsight segmentation")
        label_img = Image(labels[None], spacing=img.spacing, origin=img.origin, direction=img.direction, source=src)
        return label_img, full


def segmentation_predictor(root: str | Path, *, folds: list[int] | None = None, engine: str = "torch", device: str | None = None,
                           tta: bool = True, options: OnnxOptions | None = None) -> Predictor:
    """A :class:`~medsight.tasks.segmentation.predictor.Predictor` over the folds of a run or an export, for ``engine``.

    The plan is the one the networks were trained with (stored in the checkpoints) with the postprocessing decided
    after cross-validation (the run's ``plans.json``); an export stores exactly that plan.
    """

    root = Path(root)
    dev = torch.device("cpu" if engine == "onnx" else device or ("cuda" if torch.cuda.is_available() else "cpu"))
    files, models = load_networks(root, folds=folds, engine=engine, device=dev, options=options)
    if read_manifest(root) is not None:
        plan = Plan.load(root / "plans.json")
    else:
        plan = Plan.from_dict(load_checkpoint(files[0])["plan"], where=files[0])
        if (root / "plans.json").is_file():
            plan = plan.with_changes(postprocessing=Plan.load(root / "plans.json").postprocessing)
    return Predictor(plan=plan, models=models, device=dev, tta=tta)
