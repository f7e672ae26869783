"""Invariants of the data model: Image geometry conventions and Case channel names."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core.case import Case
from medsight.core.image import Image, SourceInfo


def _rotation_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("shape", [(8, 8), (1, 2, 3, 4, 5), (5,)])
def test_image_refuses_arrays_without_channel_axis(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="array\\[None\\]"):
        Image(np.zeros(shape))


def test_image_shape_facts_2d_and_3d() -> None:
    img2 = Image(np.zeros((3, 10, 12), np.uint8))
    assert (img2.ndim, img2.num_channels, img2.shape) == (2, 3, (10, 12))
    img3 = Image(np.zeros((1, 4, 5, 6), np.float32))
    assert (img3.ndim, img3.num_channels, img3.shape) == (3, 1, (4, 5, 6))
    assert img3.spacing == (1.0, 1.0, 1.0) and img3.origin == (0.0, 0.0, 0.0)
    assert img3.direction.shape == (3, 3)


def test_image_validates_geometry_lengths_and_values() -> None:
    arr = np.zeros((1, 4, 5, 6))
    with pytest.raises(ValueError, match="spacing"):
        Image(arr, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="origin"):
        Image(arr, origin=(0.0, 0.0))
    with pytest.raises(ValueError, match="direction"):
        Image(arr, direction=np.eye(2))
    with pytest.raises(ValueError, match="positive finite spacing"):
        Image(arr, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="positive finite spacing"):
        Image(arr, spacing=(1.0, float("nan"), 1.0))


def test_direction_is_read_only_copy() -> None:
    d = np.eye(3)
    img = Image(np.zeros((1, 2, 2, 2)), direction=d)
    d[0, 0] = -1.0
    assert img.direction[0, 0] == 1.0
    with pytest.raises(ValueError):
        img.direction[0, 0] = 5.0


# ---------------------------------------------------------------------------------------------- affine
def test_affine_maps_indices_to_physical_points() -> None:
    spacing = (2.5, 0.8, 0.6)  # (z, y, x) array axes
    origin = (-10.0, 20.0, 30.0)  # physical (x, y, z)
    direction = _rotation_z(30.0)[:, ::-1]  # columns: array axes z, y, x
    img = Image(np.zeros((1, 5, 6, 7)), spacing=spacing, origin=origin, direction=direction)
    idx = np.array([2.0, 3.0, 4.0])
    expected = np.asarray(origin) + direction @ (np.asarray(spacing) * idx)
    assert np.allclose((img.affine @ np.append(idx, 1.0))[:3], expected)
    assert np.allclose(img.affine[:3, 3], origin)
    assert np.allclose(np.linalg.norm(img.affine[:3, :3], axis=0), spacing)
    assert np.allclose(img.affine[3], [0, 0, 0, 1])


def test_default_direction_is_row_major_identity() -> None:
    img = Image(np.zeros((1, 4, 5, 6)), spacing=(3.0, 2.0, 1.0))
    # array axis 0 runs along physical z, axis 2 along x
    assert np.allclose(img.affine[:3, :3], [[0, 0, 1], [0, 2, 0], [3, 0, 0]])
    img2 = Image(np.zeros((1, 4, 5)), spacing=(2.0, 1.0))
    assert np.allclose(img2.affine[:2, :2], [[0, 1], [2, 0]])


# ---------------------------------------------------------------------------------------------- orientation
def test_orientation_codes() -> None:
    assert Image(np.zeros((1, 2, 2, 2))).orientation == "SPL"
    assert Image(np.zeros((1, 2, 2))).orientation == "PL"
    flipped = np.diag([-1.0, -1.0, 1.0])[:, ::-1]  # x -> R, y -> A, z -> S; columns z, y, x
    assert Image(np.zeros((1, 2, 2, 2)), direction=flipped).orientation == "SAR"
    axial_ras = np.diag([-1.0, -1.0, -1.0])
    assert Image(np.zeros((1, 2, 2, 2)), direction=axial_ras).orientation == "RAI"
    # oblique: the dominant component decides
    assert Image(np.zeros((1, 2, 2, 2)), direction=_rotation_z(20.0)[:, ::-1]).orientation == "SPL"


# ---------------------------------------------------------------------------------------------- geometry
def test_same_geometry() -> None:
    a = Image(np.zeros((1, 4, 5, 6)), spacing=(1.0, 1.0, 2.0), origin=(1.0, 2.0, 3.0))
    assert a.same_geometry(Image(np.ones((2, 4, 5, 6)), spacing=(1.0, 1.0, 2.0), origin=(1.0, 2.0, 3.0)))
    assert a.same_geometry(a.with_array(a.array, origin=(1.0, 2.0, 3.0005)))
    assert not a.same_geometry(a.with_array(a.array, origin=(1.0, 2.0, 3.1)))
    assert a.same_geometry(a.with_array(a.array, origin=(1.0, 2.0, 3.1)), atol=0.2)
    assert not a.same_geometry(a.with_array(np.zeros((1, 4, 5, 7))))
    assert not a.same_geometry(a.with_array(a.array, spacing=(1.0, 1.0, 1.0)))
    assert not a.same_geometry(a.with_array(a.array, direction=-np.asarray(a.direction)))


def test_with_array_keeps_geometry_and_source() -> None:
    src = SourceInfo(path="/x/a.nii.gz", format="nifti")
    a = Image(np.zeros((1, 3, 3, 3)), spacing=(2.0, 2.0, 2.0), origin=(5.0, 5.0, 5.0), source=src)
    b = a.with_array(np.ones((2, 3, 3, 3), np.int16))
    assert b.spacing == a.spacing and b.origin == a.origin and b.source is src
    assert np.array_equal(b.direction, a.direction) and b.num_channels == 2
    assert np.all(a.array == 0)  # the original is untouched


def test_describe_reports_facts_and_non_finite() -> None:
    arr = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    arr[0, 0, 0, 0] = np.nan
    arr[0, 1, 2, 3] = np.inf
    img = Image(arr, spacing=(3.0, 1.0, 0.5), source=SourceInfo(path="/d/ct.nii.gz", format="nifti", modality="CT"))
    d = img.describe()
    assert d["shape"] == [2, 3, 4] and d["channels"] == 1 and d["spacing_mm"] == [3.0, 1.0, 0.5]
    assert d["non_finite_voxels"] == 2
    assert d["min"] == 1.0 and d["max"] == 22.0
    assert d["orientation"] == "SPL" and d["dtype"] == "float32" and d["modality"] == "CT"
    ints = Image(np.array([[[0, 7]]], np.uint8)).describe()
    assert ints["non_finite_voxels"] == 0 and (ints["min"], ints["max"]) == (0.0, 7.0)
    assert "Image(shape=(1, 2, 3, 4)" in repr(img) and "ct.nii.gz" in repr(img)


# ---------------------------------------------------------------------------------------------- Case
def test_case_channel_names_default_and_validation() -> None:
    img = Image(np.zeros((3, 4, 4), np.uint8))
    assert Case("a", img).channel_names == ("ch0", "ch1", "ch2")
    assert Case("a", img, channel_names=("R", "G", "B")).channel_names == ("R", "G", "B")
    assert Case("a", img, channel_names=["R", "G", "B"]).channel_names == ("R", "G", "B")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 channel names"):
        Case("a", img, channel_names=("T1", "T2"))


def test_case_label_accessors() -> None:
    img = Image(np.zeros((1, 4, 4), np.float32))
    lab = Image(np.array([[[0, 1], [2, 0]]], np.uint8))
    seg = Case("s", img, label=lab)
    assert seg.label_map is lab
    assert seg.label_array is not None and seg.label_array.dtype == np.int64 and seg.label_array.shape == (2, 2)
    cls = Case("c", img, label=1)
    assert cls.label_map is None and cls.label_array is None
    assert Case("u", img).label_array is None
