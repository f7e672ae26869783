"""The field of view of raster photographs and the scale to the training camera, on the real DRIVE and Montgomery
images and on synthetic discs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.data.field_of_view import (
    Extent,
    extent_of,
    field_of_view,
    prediction_region,
    scale_to_training,
    training_extent,
)


def _disc(size: int, diameter: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    img = np.where(r < diameter / 2, 120 + 40 * np.sin(xx / 7.0), 3).astype(np.uint8)
    return np.stack([img, img // 2, img // 4])


def test_disc_is_found_and_measured():
    a = _disc(200, 160)
    mask = field_of_view(a)
    assert mask is not None and abs(mask.mean() - np.pi * 80**2 / 200**2) < 0.01
    assert extent_of(a) == Extent(pixels=pytest.approx(160, abs=2), measure="fov")
    region = prediction_region(a)
    assert region is not None and region.sum() < mask.sum() and not region[100, 19]  # the rim is dropped


def test_a_frame_filling_image_has_no_field_of_view():
    rng = np.random.default_rng(1)
    a = (60 + 100 * rng.random((1, 120, 90))).astype(np.uint8)
    assert field_of_view(a) is None and prediction_region(a) is None
    assert extent_of(a) == Extent(pixels=120, measure="image")


def test_scale_to_training_compares_like_with_like():
    train = training_extent([_disc(200, 160), _disc(210, 161)])
    assert train.measure == "fov"
    assert scale_to_training(_disc(200, 160), train) == 1.0  # the training camera: not resampled
    assert scale_to_training(_disc(340, 272), train) == pytest.approx(160 / 272, rel=0.02)
    # a varying outline (patients of different widths) is no scale: the image side is used
    side = training_extent([_disc(200, 100), _disc(200, 160), _disc(200, 130)])
    assert side == Extent(pixels=200, measure="image")
    assert scale_to_training(_disc(400, 160), side) == pytest.approx(0.5)


def _read(path) -> np.ndarray:
    a = np.asarray(PILImage.open(path))
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)


def test_real_drive_fov_matches_the_official_masks_and_resized_images_scale_back(shared_data):
    images = sorted((shared_data / "drive" / "test" / "images").glob("*.tif"))[:3]
    if not images:
        pytest.skip("DRIVE not in shared data")
    train = training_extent(_read(p) for p in sorted((shared_data / "drive" / "training" / "images").glob("*.tif"))[:5])
    assert train.measure == "fov" and 530 <= train.pixels <= 550
    for p in images:
        mask = field_of_view(_read(p))
        ref = _read(p.parent.parent / "mask" / p.name.replace(".tif", "_mask.gif"))[0] > 0
        assert mask is not None and (mask == ref).mean() > 0.98
        for factor in (1.7, 0.6):
            pil = PILImage.open(p)
            resized = np.moveaxis(np.asarray(pil.resize((round(pil.width * factor), round(pil.height * factor)),
                                                        PILImage.BICUBIC)), -1, 0)
            assert scale_to_training(resized, train) == pytest.approx(1 / factor, rel=0.02)


def test_real_chest_xrays_are_measured_by_their_side(shared_data):
    files = sorted((shared_data / "montgomery_cxr_lung_512" / "cxr").glob("*.png"))[:20]
    if not files:
        pytest.skip("Montgomery not in shared data")
    assert training_extent(_read(p) for p in files) == Extent(pixels=512, measure="image")
