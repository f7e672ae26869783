"""Round trips and refusals of the ITK (NIfTI/NRRD/MHA) and raster (PNG/TIFF/GIF) readers and writers."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from medsight.core.image import Image
from medsight.errors import MedsightError
from medsight.io import read_image, write_image

SPACING = (2.5, 0.8, 0.6)  # per array axis (z, y, x), mm
ORIGIN = (-10.5, 20.25, 30.0)  # physical LPS (x, y, z), mm
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _oblique_direction() -> np.ndarray:
    """A proper rotation (about z by 30 deg, then about x by 10 deg), as columns for array axes (z, y, x)."""
    a, b = np.deg2rad(30.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return (rx @ rz)[:, ::-1]


def _volume(dtype: str, shape: tuple[int, ...] = (5, 7, 6), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.normal(0.0, 100.0, size=shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def _assert_same_geometry(a: Image, b: Image, atol: float = 1e-4) -> None:
    assert np.allclose(a.spacing, b.spacing, atol=atol), (a.spacing, b.spacing)
    assert np.allclose(a.origin, b.origin, atol=atol), (a.origin, b.origin)
    assert np.allclose(a.direction, b.direction, atol=atol), (a.direction, b.direction)


# ---------------------------------------------------------------------------------------------- ITK formats
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32"])
def test_itk_round_trip_is_lossless(tmp_path: Path, suffix: str, dtype: str) -> None:
    image = Image(_volume(dtype)[None], spacing=SPACING, origin=ORIGIN, direction=_oblique_direction())
    path = write_image(image, tmp_path / f"vol{suffix}")
    back = read_image(path)
    assert back.array.dtype == np.dtype(dtype)
    assert back.array.shape == image.array.shape
    assert np.array_equal(back.array, image.array)
    _assert_same_geometry(back, image)
    assert np.allclose(back.affine, image.affine, atol=1e-4)
    assert back.orientation == image.orientation
    assert back.source.path == str(path)


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_image(Image(_volume("int16")[None]), tmp_path / "a.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_simpleitk_written_files_read_with_geometry(tmp_path: Path, suffix: str) -> None:
    arr = _volume("int16", shape=(4, 6, 5))
    ref = sitk.GetImageFromArray(arr)  # SimpleITK: array (z, y, x), spacing/origin in (x, y, z)
    direction_xyz = _oblique_direction()[:, ::-1]
    ref.SetSpacing((0.6, 0.8, 2.5))
    ref.SetOrigin(ORIGIN)
    ref.SetDirection(tuple(direction_xyz.ravel()))
    sitk.WriteImage(ref, str(tmp_path / f"ref{suffix}"))
    img = read_image(tmp_path / f"ref{suffix}")
    assert np.array_equal(img.array[0], arr)
    assert np.allclose(img.spacing, (2.5, 0.8, 0.6), atol=1e-5)
    assert np.allclose(img.origin, ORIGIN, atol=1e-4)
    assert np.allclose(img.direction, direction_xyz[:, ::-1], atol=1e-4)
    # the physical point of an index agrees with SimpleITK's own mapping
    idx_zyx = (3, 2, 1)
    physical = img.affine @ np.array([*idx_zyx, 1.0])
    assert np.allclose(physical[:3], ref.TransformIndexToPhysicalPoint(idx_zyx[::-1]), atol=1e-3)


def test_nifti_we_write_matches_nibabel(tmp_path: Path) -> None:
    arr = _volume("float32", shape=(5, 7, 6))
    image = Image(arr[None], spacing=SPACING, origin=ORIGIN, direction=_oblique_direction())
    write_image(image, tmp_path / "ours.nii.gz")
    nii = nib.load(tmp_path / "ours.nii.gz")
    # nibabel: array axes (i, j, k) = our axes reversed, affine to RAS
    expected = LPS_TO_RAS @ image.affine[:, [2, 1, 0, 3]]
    assert np.allclose(nii.affine, expected, atol=1e-4)
    assert np.array_equal(np.asarray(nii.dataobj), arr.transpose(2, 1, 0))


def test_nifti_4d_becomes_channels(tmp_path: Path) -> None:
    data = _volume("int16", shape=(6, 5, 4, 3))  # nibabel (x, y, z, t)
    affine = np.diag([0.9, 1.1, 2.0, 1.0])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "four.nii.gz")
    img = read_image(tmp_path / "four.nii.gz")
    assert img.num_channels == 3 and img.shape == (4, 5, 6)
    for c in range(3):
        assert np.array_equal(img.array[c], data[..., c].T)
    ras = LPS_TO_RAS @ img.affine[:, [2, 1, 0, 3]]
    assert np.allclose(ras, affine, atol=1e-4)


def test_multichannel_nifti_round_trip(tmp_path: Path) -> None:
    arr = np.stack([_volume("float32", seed=s) for s in range(2)])
    image = Image(arr, spacing=SPACING, origin=ORIGIN, direction=_oblique_direction())
    back = read_image(write_image(image, tmp_path / "two.nii.gz"))
    assert back.num_channels == 2
    assert np.array_equal(back.array, arr)
    _assert_same_geometry(back, image)


# ---------------------------------------------------------------------------------------------- raster
@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("kind", ["uint8", "uint16", "rgb"])
def test_raster_round_trip(tmp_path: Path, suffix: str, kind: str) -> None:
    if kind == "rgb":
        arr = _volume("uint8", shape=(3, 9, 11))
    else:
        arr = _volume(kind, shape=(1, 9, 11))
    back = read_image(write_image(Image(arr), tmp_path / f"r{suffix}"))
    assert back.array.dtype == arr.dtype
    assert np.array_equal(back.array, arr)
    assert back.ndim == 2 and back.spacing == (1.0, 1.0)


def test_raster_writer_refuses_floats_and_volumes(tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match="uint8"):
        write_image(Image(np.zeros((1, 4, 4), np.float32)), tmp_path / "f.png")
    with pytest.raises(MedsightError, match="2D image"):
        write_image(Image(np.zeros((1, 2, 4, 4), np.uint8)), tmp_path / "v.png")


def test_palette_gif_gray_and_colour(tmp_path: Path) -> None:
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    gray = PILImage.fromarray(idx, mode="P")
    gray.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255] + [0] * (253 * 3))
    gray.save(tmp_path / "gray.gif")
    img = read_image(tmp_path / "gray.gif")
    assert img.num_channels == 1
    assert np.array_equal(img.array[0], np.array([[0, 128, 255], [255, 128, 0]]))

    colour = PILImage.fromarray(idx, mode="P")
    colour.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    colour.save(tmp_path / "colour.gif")
    rgb = read_image(tmp_path / "colour.gif")
    assert rgb.num_channels == 3
    assert rgb.array[:, 0, 1].tolist() == [255, 0, 0] and rgb.array[:, 0, 2].tolist() == [0, 0, 255]


def test_multipage_tiff_is_a_volume(tmp_path: Path) -> None:
    pages = [PILImage.fromarray(np.full((4, 5), v, np.uint8)) for v in (10, 20, 30)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    img = read_image(tmp_path / "stack.tif")
    assert img.array.shape == (1, 3, 4, 5)
    assert img.array[0, :, 0, 0].tolist() == [10, 20, 30]


# ---------------------------------------------------------------------------------------------- refusals
def test_zero_byte_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(MedsightError, match="zero-byte") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_text_file_named_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(MedsightError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "volume.xyz"
    path.write_bytes(b"\x00\x01 not a known format " * 20)
    with pytest.raises(MedsightError, match="suffix") as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".png"])
def test_truncated_files_are_refused(tmp_path: Path, suffix: str) -> None:
    arr = _volume("uint8", shape=(1, 64, 64)) if suffix == ".png" else _volume("float32", shape=(20, 20, 20))[None]
    path = write_image(Image(arr), tmp_path / f"cut{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MedsightError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_truncated_nifti_is_refused(tmp_path: Path) -> None:
    path = write_image(Image(_volume("float32", shape=(20, 20, 20))[None]), tmp_path / "cut.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MedsightError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MedsightError, match="does not exist"):
        read_image(tmp_path / "nope.nii.gz")


def _forbid_voxel_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: sitk.ImageFileReader) -> None:
        raise AssertionError("voxel data was read before the memory check")

    monkeypatch.setattr(sitk.ImageFileReader, "Execute", boom)


@pytest.mark.parametrize("compressed", [False, True])
def test_nifti_header_claiming_huge_volume_is_refused_before_allocating(
    tmp_path: Path, compressed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "tiny.nii")
    raw = bytearray((tmp_path / "tiny.nii").read_bytes())
    # NIfTI-1 stores dim[8] as int16 at byte 40; 32767 is the largest size it can claim (~128 TiB of float32)
    raw[40:56] = struct.pack("<8h", 3, 32767, 32767, 32767, 1, 1, 1, 1)
    path = tmp_path / ("huge.nii.gz" if compressed else "huge.nii")
    path.write_bytes(gzip.compress(bytes(raw)) if compressed else bytes(raw))
    _forbid_voxel_reads(monkeypatch)
    with pytest.raises(MedsightError, match="fits in memory") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_nrrd_header_claiming_100000_cubed_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.nrrd"
    header = "NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\nendian: little\n\n"
    path.write_bytes(header.encode("ascii") + bytes(64))
    _forbid_voxel_reads(monkeypatch)
    with pytest.raises(MedsightError, match="fits in memory") as info:
        read_image(path)
    assert str(path) in str(info.value)
