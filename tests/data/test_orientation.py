"""The orientation a 2D dataset's labels show, and the augmentation the planner derives from it."""

from __future__ import annotations

import numpy as np

from medsight.data.fingerprint import ChannelStats, Fingerprint
from medsight.data.orientation import ORIENTATION_KEY, LabelAtlas, atlas_cells, consistent_transforms
from medsight.tasks.segmentation.plan import ORIENTED_ROTATION_DEG, make_plan


def _upright_lungs(rng: np.random.Generator, shape: tuple[int, int] = (96, 80)) -> np.ndarray:
    """Two lobes in the upper two thirds, narrow at the top, wide at the bottom, jittered per case."""
    h, w = shape
    lab = np.zeros(shape, np.uint8)
    top, bottom = int(h * 0.1) + rng.integers(-3, 4), int(h * 0.7) + rng.integers(-3, 4)
    for row in range(top, bottom):
        half = int((row - top) / (bottom - top) * w * 0.2) + 2
        for centre in (int(w * 0.28), int(w * 0.72)):
            c = centre + rng.integers(-1, 2)
            lab[row, max(c - half, 0):c + half] = 1
    return lab


def _random_blobs(rng: np.random.Generator, shape: tuple[int, int] = (96, 80)) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    for _ in range(12):
        r, c = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 8)
        lab[r:r + 8, c:c + 8] = 1
    return lab


def _scores(make, cases: int = 40) -> dict[str, float]:
    rng = np.random.default_rng(0)
    atlas = LabelAtlas()
    for i in range(cases):
        atlas.add(make(rng), i, [1])
    return atlas.scores()


def test_atlas_cells_are_the_foreground_share_of_each_cell() -> None:
    mask = np.zeros((64, 48), bool)
    mask[:32, :] = True  # the upper half of any frame size
    cells = atlas_cells(mask, size=4)
    assert np.allclose(cells[:2], 1.0) and np.allclose(cells[2:], 0.0)


def test_upright_images_allow_the_left_right_mirror_only() -> None:
    scores = _scores(_upright_lungs)
    assert consistent_transforms(scores) == {"flip1"}, scores
    assert scores["flip0"] < 0.7 and scores["rot90"] < 0.7


def test_labels_lying_any_way_allow_every_mirror_and_turn() -> None:
    scores = _scores(_random_blobs)
    assert consistent_transforms(scores) == {"flip0", "flip1", "rot90"}, scores


def test_too_few_cases_say_nothing() -> None:
    assert _scores(_upright_lungs, cases=4) == {"flip0": 1.0, "flip1": 1.0, "rot90": 1.0}


def _fingerprint(extra: dict) -> Fingerprint:
    channel = ChannelStats("gray", "other", 0.0, 1.0, -2.0, 2.0, 0.5, 1.0, -1.0, 2.0)
    return Fingerprint(dims=2, num_cases=20, spacings=[[1.0, 1.0]] * 20, shapes=[[512, 512]] * 20, channels=[channel],
                       label_voxels={1: 20_000}, label_cases={1: 20}, image_format="png", extra=extra)


def test_the_planner_augments_as_the_orientation_allows() -> None:
    labels = {"background": 0, "lung": 1}
    upright = make_plan(_fingerprint({ORIENTATION_KEY: {"flip0": 0.53, "flip1": 0.94, "rot90": 0.55}}), dataset="d", labels=labels)
    assert upright.augment.mirror_axes == (1,) and upright.augment.rotate_deg == ORIENTED_ROTATION_DEG
    free = make_plan(_fingerprint({ORIENTATION_KEY: {"flip0": 1.02, "flip1": 1.09, "rot90": 0.99}}), dataset="d", labels=labels)
    assert free.augment.mirror_axes == (0, 1) and free.augment.rotate_deg == 180.0
    unmeasured = make_plan(_fingerprint({}), dataset="d", labels=labels)  # a fingerprint saved before the atlas
    assert unmeasured.augment == free.augment
    sided = make_plan(_fingerprint({}), dataset="d", labels={"background": 0, "lung left": 1, "lung right": 2})
    assert sided.augment.mirror_axes == () and sided.augment.rotate_deg == ORIENTED_ROTATION_DEG


def test_the_plan_table_says_why_it_augments_as_it_does() -> None:
    scores = {"flip0": 0.53, "flip1": 0.94, "rot90": 0.55}
    plan = make_plan(_fingerprint({ORIENTATION_KEY: scores}), dataset="d", labels={"background": 0, "lung": 1})
    text = dict(plan.table())["augmentation"]
    assert text.startswith(f"rotation up to {ORIENTED_ROTATION_DEG:g} degrees, mirroring axes 1")
    assert "up-down 0.53" in text and "left-right 0.94" in text
