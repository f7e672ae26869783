"""Classical registration recovers known transforms on a smooth synthetic phantom (36^3 voxels of 1 mm).

Tolerances (seed 0): rigid: the centre within 0.5 mm and rotation within 1 degree (both metrics); affine: every point
within 8 mm of the centre within 1 mm with mean squares and 1.5 mm with Mattes mutual information (whose histogram
estimate is coarser on a 36^3 phantom); an intensity-inverted copy (a second "modality") registers with Mattes mutual
information to within 0.5 mm / 1.5 degrees.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medsight.tasks.registration.classical import RegistrationConfig, linear_only, register_images
from medsight.tasks.registration.evaluate import label_dice
from medsight.tasks.registration.transforms import warp_image

from .phantoms import CENTRE, euler, max_point_error, moved, smooth_phantom

TRUE_RIGID = euler((6.0, -4.0, 5.0), (2.5, -1.5, 3.0))


def _rotation_error_deg(est: sitk.Transform, true: sitk.Transform) -> float:
    r_est = np.asarray(sitk.Euler3DTransform(est).GetMatrix()).reshape(3, 3)
    r_true = np.asarray(true.GetMatrix()).reshape(3, 3)
    cos = (np.trace(r_est.T @ r_true) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def _linear(transform: sitk.Transform) -> sitk.Transform:
    return sitk.CompositeTransform(transform).GetNthTransform(0)


@pytest.mark.parametrize("metric", ["mattes", "meansquares"])
def test_recovers_a_known_rigid_transform(metric: str) -> None:
    fixed, _ = smooth_phantom()
    transform, stages = register_images(fixed, moved(fixed, TRUE_RIGID), RegistrationConfig(stages=("rigid",), metric=metric))
    assert [s.name for s in stages] == ["rigid"] and linear_only(transform)
    c = (CENTRE,) * 3
    assert np.linalg.norm(np.subtract(transform.TransformPoint(c), TRUE_RIGID.TransformPoint(c))) < 0.5
    assert _rotation_error_deg(_linear(transform), TRUE_RIGID) < 1.0


@pytest.mark.parametrize(("metric", "tolerance_mm"), [("meansquares", 1.0), ("mattes", 1.5)])
def test_recovers_a_known_affine_transform(metric: str, tolerance_mm: float) -> None:
    fixed, _ = smooth_phantom()
    true = sitk.AffineTransform(3)
    true.SetCenter((CENTRE,) * 3)
    true.SetMatrix((1.06, 0.04, 0.0, -0.03, 0.95, 0.02, 0.0, 0.05, 1.03))
    true.SetTranslation((1.5, -2.0, 1.0))
    transform, stages = register_images(fixed, moved(fixed, true), RegistrationConfig(stages=("rigid", "affine"), metric=metric))
    assert [s.name for s in stages] == ["rigid", "affine"]
    assert max_point_error(transform, true) < tolerance_mm


def test_multimodal_pair_registers_with_mutual_information() -> None:
    fixed, _ = smooth_phantom()
    mov = moved(fixed, TRUE_RIGID)
    inverted = mov.with_array(mov.array.max() - mov.array)  # dark where the fixed image is bright
    transform, _ = register_images(fixed, inverted, RegistrationConfig(stages=("rigid",), metric="mattes"))
    c = (CENTRE,) * 3
    assert np.linalg.norm(np.subtract(transform.TransformPoint(c), TRUE_RIGID.TransformPoint(c))) < 0.5
    assert _rotation_error_deg(_linear(transform), TRUE_RIGID) < 1.5


@pytest.mark.slow
def test_bspline_stage_improves_label_overlap_and_keeps_label_values() -> None:
    fixed, fixed_lab = smooth_phantom(24)
    centre = (24 - 1) / 2
    true = euler((0.0, 0.0, 4.0), (1.5, 0.0, -1.0), centre)
    mov, mov_lab = moved(fixed, true), moved(fixed_lab, true, labels=True)
    config = RegistrationConfig(stages=("rigid", "bspline"), metric="meansquares")
    transform, stages = register_images(fixed, mov, config)
    assert [s.name for s in stages] == ["rigid", "bspline"] and not linear_only(transform)
    warped = warp_image(mov_lab, transform, reference=fixed_lab, labels=True)
    assert warped.array.dtype == np.uint8 and set(np.unique(warped.array)) <= {0, 3, 7}
    before = np.mean(list(label_dice(mov_lab.array[0], fixed_lab.array[0], [3, 7]).values()))
    after = np.mean(list(label_dice(warped.array[0], fixed_lab.array[0], [3, 7]).values()))
    assert after > before and after > 0.8


def test_stage_and_metric_names_are_checked() -> None:
    from medsight.errors import MedsightError

    with pytest.raises(MedsightError, match="did you mean 'affine'"):
        RegistrationConfig(stages=("rigid", "afine"))
    with pytest.raises(MedsightError, match="order"):
        RegistrationConfig(stages=("affine", "rigid"))
    with pytest.raises(MedsightError, match="meansquares"):
        RegistrationConfig(metric="meansquare")
