"""Classical intensity-based registration with SimpleITK: moments initialisation, then rigid -> affine -> B-spline.

Each stage runs ITK's ``ImageRegistrationMethod`` over a multi-resolution pyramid (shrink factors and smoothing
sigmas per level) with Mattes mutual information (default; works across modalities) or mean squares (same
modality). The linear stages refine one transform (rigid, then an affine started from it); the B-spline stage is
optimised on top of the linear result. The result maps fixed-space points to moving-space points (ITK convention).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from medsight.core.image import Image
from medsight.errors import did_you_mean, user_error
from medsight.io.itk import to_sitk
from medsight.tasks.registration.transforms import check_pair

log = logging.getLogger(__name__)

STAGES = ("rigid", "affine", "bspline")
METRICS = ("mattes", "meansquares")
FOLD_FREE_BOUND = 0.35  # largest B-spline control-point displacement, as a share of the control-point spacing


@dataclass(frozen=True)
class StageConfig:
    """Settings of one stage.

    Attributes:
        shrink_factors: pyramid down-sampling per level, coarse to fine (capped so each level keeps >= 4 voxels per axis).
        smoothing_sigmas: Gaussian smoothing per level (voxels).
        iterations: optimiser iterations per level.
        max_samples: fixed voxels the metric samples (randomly, seeded); images with fewer voxels use every voxel,
            which also makes the result deterministic.
        grid_spacing_mm: B-spline control-point spacing (mm); unused by the linear stages.
        step_mm: first step of the linear stages' regular-step gradient descent (mm of largest point shift).
    """

    shrink_factors: tuple[int, ...]
    smoothing_sigmas: tuple[float, ...]
    iterations: int
    max_samples: int
    grid_spacing_mm: float = 10.0
    step_mm: float = 0.5


DEFAULT_STAGE_CONFIG = {
    "rigid": StageConfig(shrink_factors=(4, 2, 1), smoothing_sigmas=(2.0, 1.0, 0.0), iterations=200, max_samples=100_000),
    "affine": StageConfig(shrink_factors=(4, 2, 1), smoothing_sigmas=(2.0, 1.0, 0.0), iterations=200, max_samples=100_000),
    "bspline": StageConfig(shrink_factors=(2, 1), smoothing_sigmas=(1.0, 0.0), iterations=50, max_samples=10_000),
}


@dataclass(frozen=True)
class RegistrationConfig:
    """What to run. ``stages`` is an ordered subset of ``rigid, affine, bspline``; ``stage_config`` overrides defaults."""

    stages: tuple[str, ...] = STAGES
    metric: str = "mattes"
    histogram_bins: int = 50
    seed: int = 0
    stage_config: dict[str, StageConfig] = field(default_factory=lambda: dict(DEFAULT_STAGE_CONFIG))

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise did_you_mean(self.metric, METRICS, "registration metric")
        if not self.stages:
            raise user_error("at least one stage", "none", None, f"choose from {', '.join(STAGES)}")
        for s in self.stages:
            if s not in STAGES:
                raise did_you_mean(s, STAGES, "registration stage")
        if list(self.stages) != sorted(set(self.stages), key=STAGES.index):
            raise user_error("stages in the order rigid, affine, bspline without repeats", ",".join(self.stages), None,
                             "e.g. --stages rigid,affine or --stages affine,bspline")

    def stage(self, name: str) -> StageConfig:
        """The settings of stage ``name`` (the override, else the default)."""
        return self.stage_config.get(name, DEFAULT_STAGE_CONFIG[name])


@dataclass(frozen=True)
class StageResult:
    """What one stage did: its final metric value (lower is better; Mattes MI is negative), iterations, time."""

    name: str
    metric_value: float
    iterations: int
    seconds: float
    stop_condition: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric_value": self.metric_value, "iterations": self.iterations,
                "seconds": round(self.seconds, 3), "stop_condition": self.stop_condition}


def _scalar(image: Image, role: str) -> sitk.Image:
    if image.num_channels != 1:
        raise user_error(f"a single-channel {role} image", f"{image.num_channels} channels", image.source.path or role,
                         "register one channel (e.g. 'medsight convert' it to a single volume)")
    if image.ndim not in (2, 3):
        raise user_error(f"a 2D or 3D {role} image", f"{image.ndim}D", image.source.path or role, "pass a 2D or 3D image")
    arr = np.nan_to_num(image.array.astype(np.float32))
    return to_sitk(image.with_array(arr))


def _shrink(stage: StageConfig, size: tuple[int, ...]) -> tuple[list[int], list[float]]:
    cap = max(1, min(size) // 4)
    return [min(f, cap) for f in stage.shrink_factors], list(stage.smoothing_sigmas)


def _method(config: RegistrationConfig, stage: StageConfig, fixed: sitk.Image, mask: sitk.Image | None) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    if config.metric == "mattes":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
    else:
        reg.SetMetricAsMeanSquares()
    voxels = int(np.prod(fixed.GetSize()))
    if voxels > stage.max_samples:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(stage.max_samples / voxels, config.seed)
    else:
        reg.SetMetricSamplingStrategy(reg.NONE)
    if mask is not None:
        reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    shrink, sigmas = _shrink(stage, fixed.GetSize())
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def _run(name: str, reg: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image,
         progress: Callable[[StageResult], None] | None) -> StageResult:
    t0 = time.perf_counter()
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as exc:
        raise user_error(f"images that overlap enough to register ({name} stage)", str(exc).strip().splitlines()[-1][:160],
                         None, "check that both images show the same anatomy, or try --metric meansquares / a --fixed-mask") from exc
    res = StageResult(name, float(reg.GetMetricValue()), int(reg.GetOptimizerIteration()), time.perf_counter() - t0,
                      reg.GetOptimizerStopConditionDescription())
    log.debug("%s: %s", name, res.stop_condition)
    if progress:
        progress(res)
    return res


def register_images(fixed: Image, moving: Image, config: RegistrationConfig | None = None, *, fixed_mask: Image | None = None,
                    progress: Callable[[StageResult], None] | None = None) -> tuple[sitk.Transform, list[StageResult]]:
    """Register ``moving`` onto ``fixed``.

    Args:
        fixed: the reference image ``(1, *spatial)``.
        moving: the image to align ``(1, *spatial)``, any grid, any modality (with Mattes MI).
        config: stages, metric, pyramid; defaults to rigid -> affine -> B-spline with Mattes MI.
        fixed_mask: a mask on the fixed grid; only voxels inside it drive the metric.
        progress: called with each stage's :class:`StageResult` as it finishes.

    Returns:
        The fixed -> moving transform (a composite: linear part, then the B-spline when run) and one result per stage.
    """
    config = config or RegistrationConfig()
    check_pair(fixed, moving, "the fixed image", "the moving image")
    f_itk, m_itk = _scalar(fixed, "fixed"), _scalar(moving, "moving")
    mask = None
    if fixed_mask is not None:
        if fixed_mask.shape != fixed.shape:
            raise user_error(f"a fixed mask of the fixed image's shape {fixed.shape}", f"shape {fixed_mask.shape}",
                             fixed_mask.source.path or "mask", "resample the mask onto the fixed image")
        mask = to_sitk(fixed.with_array((fixed_mask.array[:1] > 0).astype(np.uint8)))
    dim = fixed.ndim
    rigid: sitk.Transform = sitk.Euler3DTransform() if dim == 3 else sitk.Euler2DTransform()
    linear: sitk.Transform = sitk.CenteredTransformInitializer(f_itk, m_itk, rigid, sitk.CenteredTransformInitializerFilter.MOMENTS)
    results: list[StageResult] = []
    for name in (s for s in config.stages if s != "bspline"):
        stage = config.stage(name)
        if name == "affine":
            linear = _affine_from(linear, dim)
        reg = _method(config, stage, f_itk, mask)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=stage.step_mm, minStep=1e-3, numberOfIterations=stage.iterations,
                                                     relaxationFactor=0.8, gradientMagnitudeTolerance=1e-8)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(linear, inPlace=True)
        results.append(_run(name, reg, f_itk, m_itk, progress))
    composite = sitk.CompositeTransform(dim)
    composite.AddTransform(linear)
    if "bspline" in config.stages:
        stage = config.stage("bspline")
        reg = _method(config, stage, f_itk, mask)
        extent = [sz * sp for sz, sp in zip(f_itk.GetSize(), f_itk.GetSpacing())]
        mesh = [max(1, int(round(e / stage.grid_spacing_mm))) for e in extent]
        bspline = sitk.BSplineTransformInitializer(f_itk, mesh, order=3)
        # Control-point displacements below ~0.4 x their spacing keep a cubic B-spline free of folds (Choi & Lee 2000);
        # bounding them keeps the optimiser from collapsing the grid when the metric misleads it.
        bound = FOLD_FREE_BOUND * min(e / m for e, m in zip(extent, mesh))
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=stage.iterations,
                                 maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=1000,
                                 costFunctionConvergenceFactor=1e7, lowerBound=-bound, upperBound=bound)
        reg.SetInitialTransform(bspline, inPlace=True)
        # Optimised against the linearly pre-aligned moving image rather than with SetMovingInitialTransform: a composite
        # moving transform loses the B-spline's local-support shortcut and runs ~10x slower.
        m_lin = sitk.Resample(m_itk, f_itk, linear, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        results.append(_run("bspline", reg, f_itk, m_lin, progress))
        composite.AddTransform(bspline)
    return composite, results


def _affine_from(linear: sitk.Transform, dim: int) -> sitk.AffineTransform:
    """An affine transform equal to a (centred) rigid one, to be refined by the affine stage."""
    src = sitk.Euler3DTransform(linear) if dim == 3 else sitk.Euler2DTransform(linear)
    aff = sitk.AffineTransform(dim)
    aff.SetMatrix(src.GetMatrix())
    aff.SetTranslation(src.GetTranslation())
    aff.SetCenter(src.GetCenter())
    return aff


def linear_only(transform: sitk.Transform) -> bool:
    """Whether a (composite) transform holds no deformable part (it then fits a small ``.tfm`` text file)."""
    if transform.GetName() != "CompositeTransform":
        return transform.IsLinear()
    comp = sitk.CompositeTransform(transform)
    return all(comp.GetNthTransform(i).IsLinear() for i in range(comp.GetNumberOfTransforms()))
