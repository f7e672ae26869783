"""GAN training on the shared :class:`~medsight.engine.trainer.Trainer` (time budget, resume, checkpoints, metrics).

The trainer's model is a :class:`~medsight.tasks.synthesis.networks.ConditionalGAN` and its one optimiser holds the
generator's and the discriminator's parameters. Each step alternates: :meth:`GanTrainer.compute_loss` first updates
the discriminator with the optimiser (only the discriminator has gradients then), and returns the generator's loss,
computed with the discriminator frozen, which the shared loop back-propagates and steps (only the generator has
gradients then). So checkpoints, exact resume and the learning-rate schedule are the ones every medsight training has.

Validation (every epoch) uses the moving-average generator with fixed noise: the discriminator's hinge loss on real
validation images against generated ones (``val_loss``, a check for discriminator over-fitting), precision, recall and
coverage in a down-sampled pixel space (coverage selects ``checkpoint_best.pt``), the mask GAN's L1 error to the real
image of the same mask, and a sample grid ``samples/epoch_NNNN.png``. Pixel-space figures are for monitoring: they can
favour blurry generators, so sampling uses ``checkpoint_last.pt`` (the final moving average) unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.engine.config import RunOptions
from medsight.engine.trainer import Trainer
from medsight.errors import MedsightError
from medsight.tasks.synthesis.data import ClassSampler, GanData, PairSampler, condition_tensor
from medsight.tasks.synthesis.grid import image_tile, label_tile, write_grid
from medsight.tasks.synthesis.networks import ConditionalGAN, build_gan, hinge_d_loss, hinge_g_loss, render
from medsight.tasks.synthesis.plan import GanPlan
from medsight.tasks.synthesis.quality import pixel_features, precision_recall_coverage

log = logging.getLogger(__name__)

#: Seed of the fixed noise used for validation metrics and sample grids (comparable from epoch to epoch).
PREVIEW_SEED = 20240


def gan_args(plan: GanPlan) -> dict[str, Any]:
    """Constructor arguments of the planned GAN (stored in checkpoints)."""
    return {"generator": dict(plan.generator), "discriminator": dict(plan.discriminator)}


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` take no gradient inside the block (gradients still flow through it to its inputs)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def translate(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """DiffAugment translation (Zhao et al. 2020): shift each sample by up to ``fraction`` of each side, whole
    voxels, zero fill; differentiable, so it is applied to real and generated inputs of the discriminator alike."""
    if fraction <= 0:
        return x
    b, d = x.shape[0], x.ndim - 2
    size = torch.tensor(x.shape[2:], dtype=x.dtype, device=x.device)
    limit = (size * fraction).floor().clamp_min(1)
    shift = torch.floor((torch.rand(b, d, device=x.device) * 2 - 1) * (limit + 1)).clamp(-limit, limit)
    theta = torch.zeros(b, d, d + 1, dtype=x.dtype, device=x.device)
    theta[:, :, :d] = torch.eye(d, dtype=x.dtype, device=x.device)
    theta[:, :, d] = (2 * shift / size).flip(1)  # torch grids are in (x, y[, z]) order
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class GanTrainer(Trainer):
    """Trains a class-conditional or a mask-conditioned GAN (see the module docstring)."""

    metric_columns = ("val_precision", "val_recall", "val_coverage", "val_l1", "train_d_loss")
    selection_metric = "val_coverage"

    def __init__(self, plan: GanPlan, data: GanData, train_ids: list[str], val_ids: list[str], out_dir: str | Path,
                 config: RunOptions, *, progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.plan, self.data = plan, data
        self.num_labels = len(plan.labels)
        self._d_losses: list[float] = []
        super().__init__(out_dir, config, train_ids=train_ids, val_ids=val_ids, architecture=plan.architecture,
                         init_args=gan_args(plan), plan_dict=plan.to_dict(), training=plan.training, progress=progress)
        dist = getattr(self, "dist", None)
        if dist is not None and dist.enabled:
            raise MedsightError("Expected a single-process GAN training, got a distributed (torchrun) launch; run "
                                "'medsight synthesize train' as one process")
        for group in self.optimizer.param_groups:
            group["betas"] = tuple(plan.betas)
        self._steps = self.epoch * self.iters

    @property
    def gan(self) -> ConditionalGAN:
        model = getattr(self.model, "module", self.model)  # unwrap a DistributedDataParallel wrapper
        if not isinstance(model, ConditionalGAN):
            raise TypeError(f"Expected a ConditionalGAN, got {type(model).__name__}")
        return model

    # ------------------------------------------------------------------------------------------ hooks
    def build_model(self) -> nn.Module:
        return build_gan(self.architecture, **self.init_args)

    def build_sampler(self) -> ClassSampler | PairSampler:
        rows = self.data.rows(self.train_ids)
        if self.plan.kind == "class":
            return ClassSampler(self.data, rows, self.plan.batch_size, seed=self.config.seed)
        return PairSampler(self.data, rows, self.plan.size, self.plan.batch_size, num_labels=self.num_labels, seed=self.config.seed)

    def _generate(self, generator: nn.Module, cond: torch.Tensor, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """Images for class indices ``(n,)`` or conditions ``(n, K, *S)``, with fresh noise (from ``gen`` when given)."""
        shape = (n, self.plan.generator.get("latent_dim", 64)) if self.plan.kind == "class" else \
            (n, self.plan.generator.get("noise_channels", 1), *cond.shape[2:])
        noise = torch.randn(shape, generator=gen).to(self.device) if gen is not None else torch.randn(shape, device=self.device)
        if self.plan.kind == "class":
            return generator(noise, cond)
        return render(generator, cond, noise, self.plan.size)

    def _discriminate(self, image: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        d = self.gan.discriminator
        if self.plan.kind == "class":
            return d(translate(image, self.plan.diff_augment), cond)
        both = translate(torch.cat([image, cond], dim=1), self.plan.diff_augment)
        return d(both[:, :image.shape[1]], both[:, image.shape[1]:])

    def _discriminator_step(self, real: torch.Tensor, cond: torch.Tensor) -> None:
        with torch.no_grad():
            fake = self._generate(self.gan.generator, cond, real.shape[0])
        with torch.autocast(self.device.type, enabled=False):
            loss = hinge_d_loss(self._discriminate(real.float(), cond), self._discriminate(fake.float(), cond))
        if not torch.isfinite(loss):
            raise MedsightError(f"Expected a finite discriminator loss, got {loss.item()} at epoch {self.epoch}; lower the "
                                "learning rate in plans.json")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.gan.discriminator.parameters(), 12.0)
        self.optimizer.step()  # only the discriminator has gradients here
        self.optimizer.zero_grad(set_to_none=True)
        self._d_losses.append(float(loss.detach()))

    def compute_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        real, cond = batch
        self._steps += 1
        self.gan.update_ema(min(self.plan.ema_decay, (1 + self._steps) / (10 + self._steps)))
        self._discriminator_step(real, cond)
        fake = self._generate(self.gan.generator, cond, real.shape[0])
        with frozen(self.gan.discriminator):
            loss = hinge_g_loss(self._discriminate(fake, cond))
        if self.plan.kind == "mask" and self.plan.l1_weight:
            loss = loss + self.plan.l1_weight * F.l1_loss(fake, real)
        return loss

    # ------------------------------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        gen = torch.Generator().manual_seed(PREVIEW_SEED)
        out = self._validate_class(gen) if self.plan.kind == "class" else self._validate_mask(gen)
        out["train_d_loss"] = float(np.mean(self._d_losses)) if self._d_losses else float("nan")
        self._d_losses = []
        return out

    def _validate_class(self, gen: torch.Generator) -> dict[str, float]:
        rows = self.data.rows(self.val_ids[: self.plan.training.val_max_cases])
        real = torch.from_numpy(np.stack([self.data.images[r] for r in rows])).to(self.device)
        y = torch.from_numpy(self.data.classes[rows]).to(self.device)
        g = self.gan.generator_ema
        fake = self._generate(g, y, len(rows), gen)
        d = self.gan.discriminator
        val_loss = float(hinge_d_loss(d(real, y), d(fake, y)))
        quality = precision_recall_coverage(pixel_features(real).cpu(), pixel_features(fake).cpu())
        k = len(self.plan.class_names)
        grid = []
        for c in range(k):
            imgs = self._generate(g, torch.full((8,), c, dtype=torch.long, device=self.device), 8, gen)
            grid.append([image_tile(im) for im in imgs])
        write_grid(grid, self.fold_dir / "samples" / f"epoch_{self.epoch:04d}.png", tile_height=max(64, self.plan.size[0] * 2))
        return {"val_loss": val_loss, **{f"val_{n}": quality[n] for n in ("precision", "recall", "coverage")}, "val_l1": float("nan")}

    def _validate_mask(self, gen: torch.Generator) -> dict[str, float]:
        g, d = self.gan.generator_ema, self.gan.discriminator
        k = self.num_labels
        reals: list[torch.Tensor] = []
        fakes: list[torch.Tensor] = []
        losses: list[float] = []
        l1s: list[float] = []
        grid: list[list[np.ndarray]] = []
        rows = self.data.rows(self.val_ids[: self.plan.training.val_max_cases])
        side = [min(32 if self.plan.dims == 2 else 16, *axis) for axis in zip(*(self.data.masks[r].shape for r in rows))]
        for r in rows:
            real = torch.from_numpy(self.data.images[r])[None].to(self.device)
            mask = torch.from_numpy(self.data.masks[r].astype(np.int64))[None, None]
            roi = self.data.rois[r]
            cond = condition_tensor(mask, torch.from_numpy(roi)[None, None] if roi is not None else None, k).to(self.device)
            fake = self._generate(g, cond, 1, gen)
            losses.append(float(hinge_d_loss(d(real, cond), d(fake, cond))))
            l1s.append(float(F.l1_loss(fake, real)))
            for _ in range(64 if self.plan.dims == 2 else 16):
                start = [int(torch.randint(0, max(1, s - p + 1), (1,), generator=gen)) for s, p in zip(real.shape[2:], side)]
                window = (slice(None), slice(None), *(slice(a, a + p) for a, p in zip(start, side)))
                reals.append(real[window])
                fakes.append(fake[window])
            if len(grid) < 4:
                grid.append([label_tile(cond[0], k), image_tile(fake[0]), image_tile(real[0])])
        quality = precision_recall_coverage(pixel_features(torch.cat(reals)).cpu(), pixel_features(torch.cat(fakes)).cpu())
        write_grid(grid, self.fold_dir / "samples" / f"epoch_{self.epoch:04d}.png", tile_height=192)
        return {"val_loss": float(np.mean(losses)), **{f"val_{n}": quality[n] for n in ("precision", "recall", "coverage")},
                "val_l1": float(np.mean(l1s))}
