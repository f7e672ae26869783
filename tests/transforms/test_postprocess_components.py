"""Component rules per label (keep k largest, size floor, hole filling), decided on validation pairs."""

from __future__ import annotations

import numpy as np

from medsight.transforms.postprocess import (
    ComponentRule,
    apply_rule,
    decide_component_rules,
    postprocess_labels,
    rules_of,
)


def _two_lungs(spurious: bool = True, hole: bool = False) -> np.ndarray:
    a = np.zeros((64, 64), dtype=np.uint8)
    a[10:50, 8:28] = 1  # right lung
    a[10:50, 36:56] = 1  # left lung
    if spurious:
        a[1:4, 1:4] = 1  # a corner patch, as a model from another hospital marks
        a[60:62, 60:63] = 1
    if hole:
        a[25:30, 15:20] = 0
    return a


def test_keep_two_largest_keeps_both_lungs_and_drops_corner_patches():
    pred = _two_lungs()
    out = apply_rule(pred, 1, ComponentRule(keep=2))
    np.testing.assert_array_equal(out, _two_lungs(spurious=False))
    assert (apply_rule(pred, 1, ComponentRule(keep=1)) == 1).sum() == 40 * 20  # one lung lost: the old rule


def test_size_floor_and_hole_filling_touch_only_their_label():
    pred = _two_lungs(hole=True)
    pred[30:33, 40:43] = 2  # another label inside the left lung: never overwritten
    out = apply_rule(pred, 1, ComponentRule(min_size=20, fill_holes=True))
    assert out[2, 2] == 0 and out[61, 61] == 0  # under 20 pixels
    assert (out[25:30, 15:20] == 1).all()  # the hole is filled
    assert (out[30:33, 40:43] == 2).all()
    assert (pred == _two_lungs(hole=True)).sum() > 0 and pred[2, 2] == 1  # input unchanged


def test_decision_learns_keep_two_for_two_lungs_and_nothing_where_it_does_not_help():
    ref = _two_lungs(spurious=False)
    pairs = [(_two_lungs(), ref), (_two_lungs(hole=True), _two_lungs(spurious=False))]
    section = decide_component_rules(pairs, [1, 2])
    rule = ComponentRule.from_dict(section["components"]["1"])
    assert rule.keep == 2  # not 1: that drops a lung
    assert rule.fill_holes
    assert section["dice_with"]["1"] > section["dice_without"]["1"]
    assert "2" not in section["components"]  # label 2 never appears: no rule
    assert section["largest_component"] == []
    np.testing.assert_array_equal(postprocess_labels(_two_lungs(hole=True), section), ref)


def test_a_label_not_annotated_in_a_case_does_not_vote_on_its_rule():
    annotated = np.zeros((64, 64), dtype=np.uint8)
    annotated[10:50, 8:28] = 1  # 800 pixels, predicted exactly
    found = np.zeros((64, 64), dtype=np.uint8)
    found[20:50, 30:40] = 1  # the network finds the organ (300 pixels) in a case that did not contour it
    pairs = [(annotated.copy(), annotated), (found, np.zeros_like(found))]
    assert decide_component_rules(pairs, [1])["components"]["1"]["min_size"] > 300  # the empty reference rewards deleting it
    section = decide_component_rules(pairs, [1], absent=[[], [1]])
    assert section["components"] == {} and section["dice_without"]["1"] == 1.0


def test_a_vessel_tree_keeps_its_raw_prediction():
    rng = np.random.default_rng(0)
    ref = (rng.random((48, 48)) > 0.7).astype(np.uint8)  # many small pieces, all real
    section = decide_component_rules([(ref.copy(), ref)], [1])
    assert section["components"] == {}
    np.testing.assert_array_equal(postprocess_labels(ref, section), ref)


def test_not_allowed_reports_dice_and_decides_nothing():
    section = decide_component_rules([(_two_lungs(), _two_lungs(spurious=False))], [1], allowed=False)
    assert section["components"] == {} and section["allowed"] is False
    assert section["dice_with"]["1"] == section["dice_without"]["1"]


def test_plans_from_before_component_rules_still_read():
    assert rules_of({"largest_component": [1, 3]}) == {1: ComponentRule(keep=1), 3: ComponentRule(keep=1)}
    assert rules_of({"largest_component": [1], "components": {"1": {"keep": 2}}})[1] == ComponentRule(keep=2)
    pred = _two_lungs()
    assert (postprocess_labels(pred, {"largest_component": [1]}) == 1).sum() == 800
