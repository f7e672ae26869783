"""Apply trained networks to images and return label maps in the input's own geometry.

Steps: preprocess as the plan says -> sliding-window inference with Gaussian blending (MONAI) -> mirror
test-time augmentation -> average over folds -> resample probabilities back to the cropped native grid ->
paste into the full image -> arg-max -> postprocessing.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medsight.data.case import Case
from medsight.data.image import Image, SourceInfo
from medsight.errors import user_error
from medsight.infer.postprocess import keep_largest_component
from medsight.plan.planner import Plan
from medsight.preprocess.cache import preprocess_case
from medsight.preprocess.spatial import resize_probabilities
from medsight.train.checkpoint import load_checkpoint, model_from_checkpoint

log = logging.getLogger(__name__)


@dataclass
class Predictor:
    """One or more trained networks (folds) sharing a plan."""

    plan: Plan
    models: list[nn.Module]
    device: torch.device
    tta: bool = True
    overlap: float = 0.5
    sw_batch_size: int = 2

    @classmethod
    def from_run(cls, run_dir: str | Path, *, folds: Sequence[int | str] | None = None, checkpoint: str = "checkpoint_best.pt",
                 device: str | None = None, tta: bool = True) -> Predictor:
        """Load the networks of a run folder (``fold_*/checkpoint_best.pt``; ``checkpoint_last.pt`` as a fallback)."""
        run = Path(run_dir)
        if not run.is_dir():
            raise user_error("a run folder made by 'medsight train'", "no such folder", run, "check the path")
        fold_dirs = sorted(p for p in run.glob("fold_*") if p.is_dir())
        if folds is not None:
            fold_dirs = [run / f"fold_{f}" for f in folds]
        paths = []
        for fd in fold_dirs:
            for name in (checkpoint, "checkpoint_last.pt"):
                if (fd / name).is_file():
                    paths.append(fd / name)
                    break
        if not paths:
            raise user_error("fold_*/checkpoint_best.pt in the run folder", "no checkpoints", run, "train at least one fold first")
        return cls.from_checkpoints(paths, device=device, tta=tta)

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | Path], *, device: str | None = None, tta: bool = True) -> Predictor:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        states = [load_checkpoint(p) for p in paths]
        plan = Plan.from_dict(states[0]["plan"], where=paths[0])
        models = [model_from_checkpoint(s).to(dev) for s in states]
        return cls(plan=plan, models=models, device=dev, tta=tta)

    # ------------------------------------------------------------------------------------------ core
    @torch.no_grad()
    def probabilities(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(K, *spatial)`` (float32, CPU) for a preprocessed array ``(C, *spatial)``."""
        from medsight.io.guard import check_allocation

        # the sum over folds/flips, one flip's softmax and MONAI's output + weight buffers: about 3K + 1 volumes
        voxels = int(np.prod(np.shape(array)[1:], dtype=np.float64))
        check_allocation((3 * len(self.plan.labels) + 1) * voxels * 4, f"a {'x'.join(map(str, np.shape(array)[1:]))} volume "
                         "after resampling to the plan's spacing", "probability volume")
        x = torch.as_tensor(np.array(array, dtype=np.float32))[None].to(self.device)
        d = x.ndim - 2
        patch = tuple(int(p) for p in self.plan.patch_size)
        flips: list[tuple[int, ...]] = [()]
        if self.tta:
            axes = [a + 2 for a in self.plan.augment.mirror_axes if a < d]
            flips = [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]
        total: torch.Tensor | None = None
        n = 0
        amp = self.device.type == "cuda"
        for model in self.models:
            model.eval()
            for f in flips:
                xi = torch.flip(x, f) if f else x
                with torch.autocast(self.device.type, enabled=amp):
                    logits = sliding_window_inference(
                        xi, roi_size=patch, sw_batch_size=self.sw_batch_size, predictor=model, overlap=self.overlap,
                        mode="gaussian", padding_mode="constant", sw_device=self.device, device=torch.device("cpu"),
                    )
                if not isinstance(logits, torch.Tensor):  # MONAI returns a tensor for a tensor-valued network
                    raise RuntimeError(f"expected a tensor from the network, got {type(logits).__name__}")
                p = torch.softmax(logits.float(), dim=1)
                del logits
                p = torch.flip(p, f) if f else p
                if total is None:
                    total = p
                else:
                    total += p  # in place: one probability volume in memory, not one per flip
                    del p
                n += 1
        if total is None:
            raise RuntimeError("no model to predict with")
        return total.div_(n)[0]

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
