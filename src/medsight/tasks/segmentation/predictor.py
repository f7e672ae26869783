"""Apply trained networks to images and return label maps in the input's own geometry.

Steps: preprocess as the plan says -> sliding-window inference with Gaussian blending, mirror test-time
augmentation and the fold mean applied per window (:mod:`medsight.engine.sliding_window`) -> resample probabilities
back to the cropped native grid -> paste into the full image -> arg-max -> postprocessing; on request, the voxel
uncertainty (normalised predictive entropy of the blended mean) and its case score (:meth:`Predictor.predict`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medsight.core.case import Case
from medsight.core.guard import check_allocation
from medsight.core.image import Image, SourceInfo
from medsight.data.field_of_view import (
    extent_from_fingerprint,
    extent_of,
    prediction_region,
    scale_to_training,
)
from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.networks import OnnxOptions
from medsight.engine.run import checkpoints
from medsight.engine.runtime import load_networks, read_manifest
from medsight.engine.sliding_window import mirror_flips, sliding_window_probabilities
from medsight.errors import user_error
from medsight.metrics.uncertainty import case_score, normalised_entropy
from medsight.tasks.segmentation.plan import Plan
from medsight.transforms.cache import preprocess_case
from medsight.transforms.postprocess import postprocess_labels
from medsight.transforms.spatial import resize_probabilities

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One case's prediction: label map, probabilities when asked for, voxel uncertainty and the case score.

    ``uncertainty`` is a one-channel float32 ``Image`` in ``[0, 1]`` on the input's grid and geometry; ``score`` is
    :func:`medsight.metrics.uncertainty.case_score` of it and the (postprocessed) label map.
    """

    labels: Image
    probabilities: np.ndarray | None = None
    uncertainty: Image | None = None
    score: float | None = None


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

    def to_training_scale(self, case: Case) -> tuple[Case, np.ndarray | None]:
        """A picture without a pixel size (PNG, TIFF...) brought to the scale the model was trained at, and where its
        prediction may be foreground (:mod:`medsight.data.field_of_view`).

        The training images' extent (field-of-view diameter, or the longer side) is in the plan; the case's spacing
        is set to ``target spacing x training extent / its extent``, so preprocessing resamples it to the training
        scale, and the probabilities come back to its own grid as for any image. Images with physical spacing, and
        plans from before the extent was recorded, are unchanged. The region is the field of view found in the image
        (less a thin rim) when the training images had one, else ``None``.
        """
        training = extent_from_fingerprint(self.plan.fingerprint)
        img = case.image
        if training is None or not img.is_raster or img.ndim != 2:
            return case, None
        array = np.asarray(img.array)
        factor = scale_to_training(array, training)
        if factor != 1.0:
            spacing = tuple(float(t) * factor for t in self.plan.target_spacing)
            log.info("%s: content %s; resampled by %.3g to the training scale", case.case_id,
                     f"{extent_of(array).pixels:g} px", factor)
            case = replace(case, image=img.with_array(img.array, spacing=spacing))
        return case, prediction_region(array) if training.measure == "fov" else None

    def predict_case(self, case: Case, *, with_probabilities: bool = True) -> tuple[Image, np.ndarray | None]:
        """Predict one case; returns the label map (same grid and geometry as the input) and probabilities.

        Args:
            case: the image to segment (its label, if any, is ignored).
            with_probabilities: also return the probabilities on the input's grid (costs ``K`` float16 volumes).

        Returns:
            ``(labels, probs)``: labels as a one-channel ``Image`` (uint8) and probabilities ``(K, *spatial)`` float16
            on the input's grid (``None`` when not asked for).
        """
        result = self.predict(case, with_probabilities=with_probabilities, with_uncertainty=False)
        return result.labels, result.probabilities

    def predict(self, case: Case, *, with_probabilities: bool = False, with_uncertainty: bool = True) -> Prediction:
        """Predict one case: label map, optionally probabilities, and the voxel uncertainty with its case score.

        The uncertainty is :func:`medsight.metrics.uncertainty.normalised_entropy` of the blended mean probabilities
        (every flip and fold), computed on the cropped grid from the probabilities rounded to float16 as validation
        saves them (so a case scores the same here as in ``medsight uncertainty``), and 0 outside the crop (background
        there is certain). It costs one float32 volume on the input's grid; nothing per member is kept.
        """
        scaled, fov = self.to_training_scale(case)
        pre = preprocess_case(scaled, self.plan)
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
        umap = None
        if with_uncertainty:
            umap = np.zeros(props["original_shape"], dtype=np.float32)
            umap[region] = normalised_entropy(probs.numpy().astype(np.float16))
        del probs
        labels = postprocess_labels(labels, self.plan.postprocessing)
        if fov is not None:  # a photograph with a dark surround: nothing is foreground outside its field of view
            labels[~fov] = 0
        img = case.image
        src = SourceInfo(path="", format=img.source.format, modality=img.source.modality, series_uid=img.source.series_uid,
                         description="medsight segmentation")
        label_img = Image(labels[None], spacing=img.spacing, origin=img.origin, direction=img.direction, source=src)
        if umap is None:
            return Prediction(labels=label_img, probabilities=full)
        unc = Image(umap[None], spacing=img.spacing, origin=img.origin, direction=img.direction,
                    source=SourceInfo(path="", format=img.source.format, modality=img.source.modality,
                                      series_uid=img.source.series_uid, description="medsight uncertainty"))
        return Prediction(labels=label_img, probabilities=full, uncertainty=unc, score=case_score(umap, labels))


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
