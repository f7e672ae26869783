"""``medsight synthesize sample``: new cases from a trained GAN, reproducible with a seed.

* class GAN: ``N`` images, of one ``--class`` or with classes drawn in proportion to the training counts;
* mask GAN: for each case a training label map (with its region of interest) is drawn, deformed (rotation, scaling
  and a smooth elastic field, drawn first and applied with nearest-neighbour interpolation, the same code as
  training augmentation) and the generator renders an image for it, so the written image and label map are aligned
  by construction, on the source case's grid and geometry.

All randomness (classes, masks, deformations, noise) comes from one generator seeded with ``seed``; sampling runs
on the CPU unless a device is given, so the same seed gives the same files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight import __version__
from medsight.core.image import Image
from medsight.core.outputs import check_output_folder
from medsight.engine.checkpoint import load_checkpoint
from medsight.errors import did_you_mean, user_error
from medsight.tasks.synthesis.data import condition_tensor, from_unit
from medsight.tasks.synthesis.networks import build_gan, render
from medsight.tasks.synthesis.pipeline import load_conditions
from medsight.tasks.synthesis.plan import GanPlan, load_gan_plan
from medsight.tasks.synthesis.writers import SyntheticWriter
from medsight.transforms.augment import draw_params
from medsight.transforms.augment_spatial import warp
from medsight.transforms.config import AugmentConfig
from medsight.transforms.synthetic import PREFIX


@dataclass(frozen=True)
class Deformation:
    """How real label maps are deformed into new conditions (drawn per sample)."""

    rotate_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    elastic_magnitude: float = 0.03

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(p_rotate=1.0 if self.rotate_deg else 0.0, rotate_deg=self.rotate_deg, p_scale=1.0,
                             scale_range=self.scale_range, p_elastic=1.0 if self.elastic_magnitude else 0.0,
                             elastic_magnitude=self.elastic_magnitude, mirror_axes=(), p_brightness=0.0, p_contrast=0.0,
                             p_gamma=0.0, p_noise=0.0, p_blur=0.0)


def load_generator(gan_dir: Path, checkpoint: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The moving-average generator of ``checkpoint_<checkpoint>.pt`` (eval mode) and the checkpoint's facts."""
    if checkpoint not in ("last", "best"):
        raise did_you_mean(checkpoint, ["last", "best"], "checkpoint")
    path = gan_dir / f"checkpoint_{checkpoint}.pt"
    state = load_checkpoint(path)
    gan = build_gan(state["architecture"], **state["init_args"])
    gan.load_state_dict(state["state_dict"])
    return gan.generator_ema.to(device).eval(), {"checkpoint": str(path), "epoch": state.get("epoch")}


def class_index(plan: GanPlan, name: str | None) -> int | None:
    """``--class`` as a class name or index."""
    if name is None:
        return None
    if name in plan.class_names:
        return plan.class_names.index(name)
    if name.isdigit() and int(name) < len(plan.class_names):
        return int(name)
    raise did_you_mean(name, plan.class_names, "class")


def deform(mask: np.ndarray, roi: np.ndarray | None, cfg: AugmentConfig, gen: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """Deform a label-index map ``(*S)`` (nearest neighbour) and its ROI with one drawn transform; returns
    ``(mask (1, 1, *S), roi (1, 1, *S) or None, record)``."""
    shape = tuple(mask.shape)
    params = draw_params(1, shape, cfg, gen)
    lab = torch.from_numpy(mask.astype(np.int64))[None, None]
    region = torch.from_numpy(roi.astype(np.float32))[None, None] if roi is not None else torch.zeros_like(lab, dtype=torch.float32)
    warped_roi, warped = warp(region, lab, params.matrices, shape, params.elastic)
    if warped is None:
        raise RuntimeError("label warp failed")
    record = {"matrix": [[round(v, 5) for v in row] for row in params.matrices[0].tolist()], "elastic": params.elastic is not None}
    return warped, ((warped_roi > 0.5).to(torch.uint8) if roi is not None else None), record


def sample_gan(gan_dir: str | Path, n: int, out: str | Path, *, class_name: str | None = None, seed: int = 0,
               device: str | None = None, checkpoint: str = "last", deformation: Deformation | None = None,
               batch_size: int = 64, progress: Callable[[int, int], None] | None = None, overwrite: bool = False) -> list[Path]:
    """Write ``n`` synthetic cases of the GAN in ``gan_dir`` into ``out`` (see the module docstring).

    Args:
        gan_dir: a folder written by :func:`medsight.tasks.synthesis.pipeline.train_gan`.
        n: number of cases.
        out: output folder (new or empty; with ``overwrite`` an earlier sample's files of the same names are replaced).
        class_name: class GAN: only this class (name or index).
        seed: seed of every random choice.
        device: ``cpu`` (default) or ``cuda``.
        checkpoint: ``last`` (the final moving-average generator, default) or ``best`` (best validation coverage).
        deformation: how label maps are deformed (mask GAN).

    Returns:
        The files written (the manifest last).
    """
    gan_dir, out = Path(gan_dir), Path(out)
    check_output_folder(out, [gan_dir], overwrite=overwrite)  # never the GAN folder; an earlier sample: --overwrite
    plan = load_gan_plan(gan_dir)
    if n < 1:
        raise user_error("a number of cases >= 1", n, None, "pass N >= 1")
    if class_name is not None and plan.kind != "class":
        raise user_error("--class only for a class-conditional GAN", "a mask-conditioned GAN", gan_dir, "drop --class")
    dev = torch.device(device or "cpu")
    generator, facts = load_generator(gan_dir, checkpoint, dev)
    gen = torch.Generator().manual_seed(seed)
    writer = SyntheticWriter(out, plan, {"generator": facts, "gan_dir": str(gan_dir.resolve()), "dataset": plan.dataset,
                                         "source": plan.source, "seed": seed, "class": class_name, "medsight_version": __version__,
                                         "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    with torch.no_grad():
        if plan.kind == "class":
            _sample_classes(plan, generator, writer, n, class_index(plan, class_name), gen, dev, batch_size, progress)
        else:
            _sample_masks(gan_dir, plan, generator, writer, n, deformation or Deformation(), gen, dev, progress)
    return writer.close()


def _sample_classes(plan: GanPlan, generator: torch.nn.Module, writer: SyntheticWriter, n: int, fixed: int | None,
                    gen: torch.Generator, dev: torch.device, batch_size: int, progress: Callable[[int, int], None] | None) -> None:
    weights = torch.tensor(plan.class_counts, dtype=torch.float64).clamp_min(1)
    classes = torch.full((n,), fixed, dtype=torch.long) if fixed is not None else \
        torch.multinomial(weights, n, replacement=True, generator=gen)
    latent = int(plan.generator.get("latent_dim", 64))
    for a in range(0, n, batch_size):
        y = classes[a:a + batch_size]
        z = torch.randn(len(y), latent, generator=gen)
        images = generator(z.to(dev), y.to(dev)).float().cpu().numpy()
        for i, (img, c) in enumerate(zip(images, y.tolist())):
            writer.add_class_image(f"{PREFIX}{a + i:05d}", from_unit(img, plan.intensity), c, {})
        if progress:
            progress(min(a + batch_size, n), n)


def _sample_masks(gan_dir: Path, plan: GanPlan, generator: torch.nn.Module, writer: SyntheticWriter, n: int,
                  deformation: Deformation, gen: torch.Generator, dev: torch.device,
                  progress: Callable[[int, int], None] | None) -> None:
    ids, masks, rois, geometry = load_conditions(gan_dir)
    values = np.asarray(plan.label_values)
    cfg = deformation.augment_config()
    noise_channels = int(plan.generator.get("noise_channels", 1))
    for i in range(n):
        j = int(torch.randint(len(ids), (1,), generator=gen))
        mask, roi, record = deform(masks[j], rois[j], cfg, gen)
        cond = condition_tensor(mask, roi, len(values)).to(dev)
        noise = torch.randn((1, noise_channels, *mask.shape[2:]), generator=gen).to(dev)
        image = from_unit(render(generator, cond, noise, plan.size)[0].float().cpu().numpy(), plan.intensity)
        grid = Image(np.zeros((1, *mask.shape[2:]), np.uint8), spacing=tuple(geometry[j]["spacing"]),
                     origin=tuple(geometry[j]["origin"]), direction=np.asarray(geometry[j]["direction"]))
        label = grid.with_array(values[mask[0].numpy()].astype(np.uint8 if values.max() < 256 else np.int16))
        roi_img = grid.with_array(roi[0].numpy()) if roi is not None else None
        writer.add_pair(f"{PREFIX}{i:05d}", grid.with_array(image), label, roi_img, {"source_case": ids[j], "deformation": record})
        if progress:
            progress(i + 1, n)
