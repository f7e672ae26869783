"""Learned deformable registration (VoxelMorph-style) on the shared :class:`~medsight.engine.trainer.Trainer`.

Every image is resampled onto a *network grid*: the plan's shape and spacing, the image's own direction, centred on
the image's centre (so crops of different shapes are padded or cropped symmetrically), with intensities scaled to
``[0, 1]`` by the 0.5 / 99.5 percentiles. The network sees ``(moving, fixed)`` and predicts a displacement field
``ddf`` (voxels of the network grid) with ``warped(x) = moving(x + ddf(x))``.

Loss: image similarity (local normalised cross-correlation or MSE) + a smoothness penalty (diffusion or bending
energy) + optionally Dice of the warped moving labels against the fixed labels. ``atlas`` mode warps one atlas (a
training case) onto every subject; ``pairwise`` mode draws random training pairs.

Applied to a new pair, the displacement is brought back to physical space as an ITK composite transform
``[grid affine, displacement field]`` (fixed point -> moving point), so ``medsight warp`` can apply it to any image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.losses import BendingEnergyLoss, DiceLoss, DiffusionLoss, LocalNormalizedCrossCorrelationLoss
from torch import nn

from medsight.core.atomic import write_text
from medsight.core.image import Image
from medsight.data.dataset import load_case, load_dataset
from medsight.data.splits import load_or_create_splits
from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
from medsight.engine.config import RunOptions, TrainingConfig
from medsight.engine.folds import train_folds
from medsight.engine.run import BEST, fold_paths
from medsight.engine.trainer import Trainer
from medsight.errors import did_you_mean, user_error
from medsight.models.registration import warp_layer
from medsight.tasks.registration.evaluate import folding_fraction, label_dice
from medsight.tasks.registration.transforms import warp_image

log = logging.getLogger(__name__)

MODES = ("atlas", "pairwise")
SIMILARITIES = ("lncc", "mse")
SMOOTHNESS = ("diffusion", "bending")


@dataclass(frozen=True)
class RegistrationPlan:
    """Everything training and applying a registration network need; saved as the run's ``plans.json``."""

    dataset: str
    shape: list[int]
    spacing: list[float]
    labels: dict[str, int]
    mode: str = "atlas"
    atlas: str | None = None
    network: str = "voxelmorph"
    network_args: dict[str, Any] = field(default_factory=lambda: {"channels": [8, 16, 16, 16], "integration_steps": 0})
    similarity: str = "lncc"
    smoothness: str = "diffusion"
    smoothness_weight: float = 1.0
    dice_weight: float = 1.0
    batch_size: int = 1
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(
        learning_rate=1e-3, weight_decay=0.0, iterations_per_epoch=25, epochs=40, warmup_fraction=0.0, val_max_cases=8))
    version: int = 1
    task: str = "registration"

    def __post_init__(self) -> None:
        for value, choices, kind in ((self.mode, MODES, "registration mode"), (self.similarity, SIMILARITIES, "similarity"),
                                     (self.smoothness, SMOOTHNESS, "smoothness penalty")):
            if value not in choices:
                raise did_you_mean(value, choices, kind)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegistrationPlan:
        data = dict(data)
        data["training"] = TrainingConfig(**data.get("training", {}))
        return cls(**data)

    def save(self, path: Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2))


def load_registration_plan(path: str | Path) -> RegistrationPlan:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
        if data.get("task") != "registration":
            raise user_error("a registration plans.json", f"task {data.get('task')!r}", p, "plan with --task registration")
        return RegistrationPlan.from_dict(data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise user_error("a valid registration plans.json", str(exc)[:80], p, "delete it to plan again") from exc


def model_args(plan: RegistrationPlan) -> dict[str, Any]:
    dims = len(plan.shape)
    return {"spatial_dims": dims, "in_channels": 2, "out_channels": dims, **plan.network_args}


# ---------------------------------------------------------------------------------------------- network grid
def network_grid(image: Image, shape: list[int], spacing: list[float]) -> Image:
    """An empty image of ``shape``/``spacing`` with ``image``'s direction, centred on ``image``'s centre."""
    shape_a, spacing_a = np.asarray(shape, float), np.asarray(spacing, float)
    centre = image.affine @ np.append((np.asarray(image.shape) - 1) / 2.0, 1.0)
    origin = centre[:-1] - image.direction @ (spacing_a * (shape_a - 1) / 2.0)
    return Image(np.zeros((1, *shape), np.uint8), spacing=tuple(spacing), origin=tuple(origin), direction=image.direction)


def scale_intensity(arr: np.ndarray) -> np.ndarray:
    """Scale to ``[0, 1]`` by the 0.5 and 99.5 percentiles (clipped)."""
    lo, hi = np.percentile(arr, [0.5, 99.5])
    return np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def to_grid(image: Image, grid: Image, *, labels: bool = False) -> np.ndarray:
    """``image`` (first channel) resampled onto ``grid``: ``(*shape)``; intensities scaled to [0, 1] first."""
    src = image.with_array(image.array[:1] if labels else scale_intensity(image.array[:1].astype(np.float32)))
    return warp_image(src, sitk.Transform(image.ndim, sitk.sitkIdentity), reference=grid, labels=labels).array[0]


@dataclass
class PairData:
    """Cases on their network grids: ``images (N, 1, *shape)`` float32 and ``labels (N, 1, *shape)`` uint8 (or ``None``)."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray | None

    def rows(self, ids: list[str]) -> list[int]:
        index = {c: i for i, c in enumerate(self.ids)}
        return [index[c] for c in ids]


def prepare_cases(dataset: Any, ids: list[str], plan: RegistrationPlan,
                  progress: Callable[[int, int], None] | None = None) -> PairData:
    """Read the cases of a :class:`~medsight.data.dataset.DatasetSpec` and put each on its network grid."""

    images, labels = [], []
    for i, cid in enumerate(ids):
        case = load_case(dataset, dataset.case(cid))
        grid = network_grid(case.image, plan.shape, plan.spacing)
        images.append(to_grid(case.image, grid)[None])
        if isinstance(case.label, Image):
            labels.append(to_grid(case.label, grid, labels=True).astype(np.uint8)[None])
        if progress:
            progress(i + 1, len(ids))
    return PairData(list(ids), np.stack(images), np.stack(labels) if len(labels) == len(ids) else None)


def choose_atlas(data: PairData, ids: list[str]) -> str:
    """The case closest (mean squared difference) to the mean image of ``ids``: a representative atlas."""
    imgs = data.images[data.rows(ids)]
    dist = ((imgs - imgs.mean(0, keepdims=True)) ** 2).reshape(len(ids), -1).mean(1)
    return ids[int(np.argmin(dist))]


# ---------------------------------------------------------------------------------------------- training
class PairSampler:
    """Batches ``(moving, fixed, moving labels, fixed labels)``: the atlas onto random training cases, or random pairs."""

    def __init__(self, data: PairData, rows: list[int], atlas_row: int | None, batch_size: int, seed: int = 0) -> None:
        self.data, self.rows, self.atlas_row, self.batch_size = data, np.asarray(rows), atlas_row, batch_size
        if atlas_row is not None:
            self.rows = self.rows[self.rows != atlas_row]
        if len(self.rows) < (1 if atlas_row is not None else 2):
            raise user_error("at least two training cases for registration", f"{len(rows)}", None, "add cases")
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"numpy": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["numpy"]

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        if self.atlas_row is not None:
            fixed = self.rng.choice(self.rows, size=self.batch_size)
            moving = np.full(self.batch_size, self.atlas_row)
        else:
            pairs = np.stack([self.rng.choice(self.rows, size=2, replace=False) for _ in range(self.batch_size)])
            moving, fixed = pairs[:, 0], pairs[:, 1]
        out = [torch.from_numpy(self.data.images[moving]), torch.from_numpy(self.data.images[fixed])]
        if self.data.labels is not None:
            out += [torch.from_numpy(self.data.labels[moving].astype(np.int64)), torch.from_numpy(self.data.labels[fixed].astype(np.int64))]
        return tuple(out)


class RegistrationLoss(nn.Module):
    """Similarity + ``smoothness_weight`` x smoothness (+ ``dice_weight`` x Dice of warped labels when given)."""

    def __init__(self, plan: RegistrationPlan) -> None:
        super().__init__()
        dims = len(plan.shape)
        self.similarity = (LocalNormalizedCrossCorrelationLoss(spatial_dims=dims, kernel_size=7) if plan.similarity == "lncc"
                           else nn.MSELoss())
        self.smooth = DiffusionLoss() if plan.smoothness == "diffusion" else BendingEnergyLoss()
        self.dice = DiceLoss(include_background=False, to_onehot_y=False)
        self.warp = warp_layer("bilinear")
        self.plan = plan
        self.num_classes = max(plan.labels.values(), default=0) + 1

    def forward(self, warped: torch.Tensor, fixed: torch.Tensor, ddf: torch.Tensor, moving_labels: torch.Tensor | None = None,
                fixed_labels: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.similarity(warped, fixed) + self.plan.smoothness_weight * self.smooth(ddf)
        if self.plan.dice_weight and moving_labels is not None and fixed_labels is not None and self.num_classes > 1:
            k = self.num_classes
            onehot = nn.functional.one_hot(moving_labels[:, 0].clamp(0, k - 1), k).movedim(-1, 1).float()
            target = nn.functional.one_hot(fixed_labels[:, 0].clamp(0, k - 1), k).movedim(-1, 1).float()
            loss = loss + self.plan.dice_weight * self.dice(self.warp(onehot, ddf), target)
        return loss


def jacobian_of_ddf(ddf: np.ndarray) -> np.ndarray:
    """Jacobian determinant of ``x -> x + ddf(x)`` for ``ddf (d, *spatial)`` in voxels (central differences)."""
    d = ddf.shape[0]
    grads = np.stack([np.stack(np.gradient(ddf[i]), 0) for i in range(d)], 0)  # (d, d, *spatial): d u_i / d x_j
    jac = grads + np.eye(d).reshape(d, d, *([1] * d))
    return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))


class RegistrationTrainer(Trainer):
    """Trains the registration network; validation: the atlas (or the first training case) onto each validation case,
    mean foreground Dice of nearest-neighbour-warped labels (selects the best checkpoint) and the folding fraction."""

    metric_columns = ("val_dice", "val_folding")
    selection_metric = "val_dice"

    def __init__(self, plan: RegistrationPlan, data: PairData, train_ids: list[str], val_ids: list[str], fold_dir: str | Path,
                 config: RunOptions, *, progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.plan, self.data = plan, data
        self.loss_fn = RegistrationLoss(plan)
        self.nearest = warp_layer("nearest")
        super().__init__(fold_dir, config, train_ids=train_ids, val_ids=val_ids, architecture=plan.network,
                         init_args=model_args(plan), plan_dict=plan.to_dict(), training=plan.training, progress=progress)

    def reference_id(self) -> str:
        return self.plan.atlas if self.plan.mode == "atlas" and self.plan.atlas else self.train_ids[0]

    def build_sampler(self) -> PairSampler:
        atlas = self.data.rows([self.plan.atlas])[0] if self.plan.mode == "atlas" and self.plan.atlas else None
        return PairSampler(self.data, self.data.rows(self.train_ids), atlas, self.plan.batch_size, seed=self.config.seed)

    def compute_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        moving, fixed, *labels = batch
        warped, ddf = self.model(moving, fixed)
        return self.loss_fn(warped, fixed, ddf, *labels)

    def validate(self) -> dict[str, float]:
        ref = self.data.rows([self.reference_id()])[0]
        moving = torch.from_numpy(self.data.images[ref:ref + 1]).to(self.device)
        losses, dices, folds = [], [], []
        fg = [v for v in self.plan.labels.values() if v != 0]
        for row in self.data.rows(self.val_ids[: self.plan.training.val_max_cases]):
            fixed = torch.from_numpy(self.data.images[row:row + 1]).to(self.device)
            warped, ddf = self.model(moving, fixed)
            labels: list[torch.Tensor] = []
            if self.data.labels is not None:
                labels = [torch.from_numpy(self.data.labels[i:i + 1].astype(np.int64)).to(self.device) for i in (ref, row)]
                warped_lab = self.nearest(labels[0].float(), ddf)[0, 0].round().cpu().numpy()
                dice = label_dice(warped_lab, self.data.labels[row, 0], fg)
                dices.append(np.nanmean(list(dice.values())))
            losses.append(float(self.loss_fn(warped, fixed, ddf, *labels)))
            folds.append(folding_fraction(jacobian_of_ddf(ddf[0].cpu().numpy())))
        return {"val_loss": float(np.mean(losses)), "val_dice": float(np.mean(dices)) if dices else float("nan"),
                "val_folding": float(np.mean(folds))}


def default_plan(dataset: Any, ids: list[str], *, multiple: int = 8) -> RegistrationPlan:
    """Median spacing; the shape covering the largest case at that spacing, rounded up to a multiple of ``multiple``."""
    shapes, spacings = [], []
    for cid in ids:
        ref = dataset.case(cid)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(ref.images[0]))
        reader.ReadImageInformation()
        spacings.append(reader.GetSpacing()[::-1])
        shapes.append(reader.GetSize()[::-1])
    if len(shapes[0]) != 3:
        raise user_error("a 3D dataset for learned registration", f"{len(shapes[0])}D images", dataset.root,
                         "use 'medsight register' (classical) for 2D images")
    spacing = np.median(np.asarray(spacings), 0)
    extent = (np.asarray(shapes) * np.asarray(spacings)).max(0) / spacing
    shape = [int(np.ceil(e / multiple) * multiple) for e in extent]
    return RegistrationPlan(dataset=dataset.name, shape=shape, spacing=[float(s) for s in spacing], labels=dict(dataset.labels))


def train_registration(dataset: str | Path, run: str | Path, *, config: RunOptions, folds: list[int] | str | None = None,
                       plan_path: str | Path | None = None, case_ids: list[str] | None = None,
                       progress: Callable[[dict[str, Any]], None] | None = None,
                       prepare_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Plan (or load ``plans.json``), prepare the cases and train each fold with :class:`RegistrationTrainer`.

    Args:
        dataset: a dataset folder or spec (3D images; label maps enable the Dice term and validation Dice).
        run: the run folder (``plans.json``, ``splits.json``, ``fold_K/``, ``summary.json``).
        config: run-time options (time budget, epochs, seed, resume, device).
        folds: fold indices of a 5-fold split (default ``[0]``), or ``"all"`` (every case trains, no validation).
        plan_path: an edited plans.json to use.
        case_ids: restrict training and validation to these cases (e.g. to keep a test set out).

    Returns:
        ``{"plan": ..., "trained_now": {fold: summary}}``.
    """

    run = Path(run)
    spec = load_dataset(dataset)
    ids = list(case_ids) if case_ids is not None else [c.case_id for c in spec.cases]
    existing = Path(plan_path) if plan_path else run / "plans.json"
    plan = load_registration_plan(existing) if existing.is_file() else default_plan(spec, ids)
    data = prepare_cases(spec, ids, plan, prepare_progress)
    splits = [{"train": sorted(ids), "val": []}] if folds == "all" else load_or_create_splits(run / "splits.json", ids)

    def train_one(fold: int | str, where: Path, train_ids: list[str], val_ids: list[str]) -> dict[str, Any]:
        nonlocal plan
        if plan.mode == "atlas" and plan.atlas not in train_ids:
            plan = replace(plan, atlas=choose_atlas(data, train_ids))
        plan.save(run / "plans.json")
        return RegistrationTrainer(plan, data, train_ids, val_ids, where, config, progress=progress).fit()

    trained = train_folds(run, 0 if folds is None else folds, sorted(ids), splits, train_one, progress=progress)
    summary = {"task": "registration", "atlas": plan.atlas, "mode": plan.mode, "trained_now": trained}
    write_text(run / "summary.json", json.dumps(summary, indent=2, default=float))
    return summary


# ---------------------------------------------------------------------------------------------- inference
def find_checkpoint(model: str | Path) -> Path:
    """A checkpoint file, or the first ``fold_*/checkpoint_best.pt`` of a run folder."""
    p = Path(model)
    if p.is_file():
        return p
    found = fold_paths(p, BEST) if p.is_dir() else []
    if not found:
        raise user_error(f"a registration run folder (fold_*/{BEST}) or a checkpoint", "none", p,
                         "train one with 'medsight train DATASET --task registration --out RUN'")
    return found[0]


def load_registration_model(model: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RegistrationPlan]:

    path = find_checkpoint(model)
    state = load_checkpoint(path)
    if (state.get("plan") or {}).get("task") != "registration":
        raise user_error("a registration checkpoint", f"task {(state.get('plan') or {}).get('task')!r}", path,
                         "pass a run trained with --task registration")
    return model_from_checkpoint(state).to(device), RegistrationPlan.from_dict(state["plan"])


@torch.no_grad()
def predict_transform(model: nn.Module, plan: RegistrationPlan, fixed: Image, moving: Image,
                      device: str | torch.device = "cpu") -> tuple[sitk.Transform, float]:
    """The fixed -> moving transform a network predicts: ``[grid affine, displacement field]``, and the similarity loss.

    With ``A_F``, ``A_M`` the index-to-physical maps of the two network grids and ``d`` the predicted displacement
    (voxels), a fixed point ``p`` maps to ``A_M(A_F^-1 p + d) = Aff(p + L_F d)`` with ``Aff = A_M A_F^-1`` and
    ``L_F`` the fixed grid's direction x spacing: the displacement field holds ``L_F d`` (mm) on the fixed network grid.
    """
    if fixed.ndim != len(plan.shape) or moving.ndim != len(plan.shape):
        raise user_error(f"{len(plan.shape)}D images for this network", f"{fixed.ndim}D and {moving.ndim}D", moving.source.path or None,
                         "pass images of the dimensionality the network was trained on")
    gf, gm = network_grid(fixed, plan.shape, plan.spacing), network_grid(moving, plan.shape, plan.spacing)
    f = torch.from_numpy(to_grid(fixed, gf)[None, None]).to(device)
    m = torch.from_numpy(to_grid(moving, gm)[None, None]).to(device)
    model.eval()
    warped, ddf = model(m, f)
    similarity = float(RegistrationLoss(plan).similarity(warped, f))
    d = ddf[0].double().cpu().numpy()  # (dims, *shape), voxels along array axes
    lin = gf.direction * np.asarray(gf.spacing)[None, :]
    physical = np.einsum("ij,j...->...i", lin, d)  # (*shape, dims) in physical (x, y, z) order
    field_img = sitk.GetImageFromArray(np.ascontiguousarray(physical), isVector=True)
    field_img.SetSpacing(tuple(float(s) for s in gf.spacing[::-1]))
    field_img.SetOrigin(tuple(float(o) for o in gf.origin))
    field_img.SetDirection(tuple(float(v) for v in np.asarray(gf.direction)[:, ::-1].ravel()))
    grid_map = gm.affine @ np.linalg.inv(gf.affine)
    dims = fixed.ndim
    aff = sitk.AffineTransform(dims)
    aff.SetMatrix(tuple(grid_map[:dims, :dims].ravel()))
    aff.SetTranslation(tuple(grid_map[:dims, dims]))
    composite = sitk.CompositeTransform(dims)
    composite.AddTransform(aff)
    composite.AddTransform(sitk.DisplacementFieldTransform(sitk.Cast(field_img, sitk.sitkVectorFloat64)))
    return composite, similarity
