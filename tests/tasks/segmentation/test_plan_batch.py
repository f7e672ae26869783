"""The planner's ``min_batch``: patches shrink until that many fit the voxel budget (default 2, as nnU-Net)."""

from __future__ import annotations

import math

from medsight.data.fingerprint import ChannelStats, Fingerprint
from medsight.tasks.segmentation.plan import DEFAULT_VOXEL_BUDGET, ORIENTED_ROTATION_DEG, make_plan


def _fingerprint(shape: list[int], cases: int = 20) -> Fingerprint:
    channel = ChannelStats("gray", "MR", 0.0, 1.0, -2.0, 2.0, 0.5, 1.0, -1.0, 2.0)
    return Fingerprint(dims=len(shape), num_cases=cases, spacings=[[1.0] * len(shape)] * cases, shapes=[shape] * cases,
                       channels=[channel], label_voxels={1: 1000 * cases}, label_cases={1: cases}, image_format="png")


def test_min_batch_trades_patch_area_for_distinct_samples_at_the_same_budget() -> None:
    fp = _fingerprint([584, 565])
    labels = {"background": 0, "vessel": 1}
    wide = make_plan(fp, dataset="d", labels=labels, base_filters=16, min_batch=2)
    many = make_plan(fp, dataset="d", labels=labels, base_filters=16, min_batch=8)
    assert wide.batch_size == 2 and many.batch_size == 8
    assert math.prod(many.patch_size) < math.prod(wide.patch_size) / 3
    budget = DEFAULT_VOXEL_BUDGET[2]
    for plan in (wide, many):  # the patch fits the budget up to the rounding to the network's stride
        assert math.prod(plan.patch_size) * plan.batch_size <= 1.25 * budget
        strides = [math.prod(s[i] for s in plan.network.strides) for i in range(2)]
        assert all(p % s == 0 for p, s in zip(plan.patch_size, strides))


def test_small_images_are_not_cut_for_the_batch() -> None:
    plan = make_plan(_fingerprint([96, 80], cases=200), dataset="d", labels={"background": 0, "a": 1}, base_filters=16,
                     min_batch=8)
    assert plan.patch_size == [96, 80] and plan.batch_size >= 8


def test_the_default_keeps_two_large_patches() -> None:
    plan = make_plan(_fingerprint([584, 565]), dataset="d", labels={"background": 0, "vessel": 1}, base_filters=16)
    assert plan.batch_size == 2 and plan.patch_size == [352, 384]


def test_left_right_pairs_turn_mirroring_off() -> None:
    """A flip puts the left parotid where the right one belongs: plans with such pairs neither mirror nor half-turn."""
    fp = _fingerprint([64, 64, 64])
    sided = make_plan(fp, dataset="d", labels={"background": 0, "Brainstem": 1, "RightParotid": 2, "Parotid_L": 3})
    assert sided.augment.mirror_axes == () and sided.augment.rotate_deg == 30.0
    plain = make_plan(fp, dataset="d", labels={"background": 0, "Brainstem": 1, "Parotid_L": 2})
    assert plain.augment.mirror_axes == (0, 1, 2)
    flat = make_plan(_fingerprint([256, 256]), dataset="d", labels={"background": 0, "lung left": 1, "lung right": 2})
    assert flat.augment.mirror_axes == () and flat.augment.rotate_deg == ORIENTED_ROTATION_DEG


def test_lateral_pairs_match_names_written_either_way() -> None:
    from medsight.data.structure_names import lateral_pairs

    assert lateral_pairs(["RightParotid", "Parotid_L", "Kidney_R", "Kidney Left", "Liver"]) == [
        ("Kidney Left", "Kidney_R"), ("Parotid_L", "RightParotid")]
    assert lateral_pairs(["Parotid_L", "Parotid_L_PRV", "Liver"]) == []
