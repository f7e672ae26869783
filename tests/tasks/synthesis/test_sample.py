"""Sampling: reproducible with a seed, written in the dataset's own format, marked synthetic, masks aligned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image as PILImage

from medsight.data.dataset import load_case, load_dataset
from medsight.data.synthetic import write_phantom_dataset
from medsight.errors import MedsightError
from medsight.tasks.synthesis.data import condition_tensor
from medsight.tasks.synthesis.networks import MaskGenerator
from medsight.tasks.synthesis.pipeline import train_gan
from medsight.tasks.synthesis.plan import load_gan_plan
from medsight.tasks.synthesis.sample import Deformation, deform, sample_gan
from medsight.transforms.synthetic import MANIFEST

from .tiny import FAST, tiny_plan


def _trained(dataset: Path, gan: Path) -> Path:
    tiny_plan(dataset, gan)
    train_gan(dataset, gan, config=FAST)
    return gan


@pytest.fixture
def class_gan(tiny_npz: Path, tmp_path: Path) -> Path:
    return _trained(tiny_npz, tmp_path / "class_gan")


@pytest.fixture
def mask_gan(roi_folders: Path, tmp_path: Path) -> Path:
    return _trained(roi_folders, tmp_path / "mask_gan")


def _npz(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "synthetic_tinymnist.npz") as z:
        return {k: np.asarray(z[k]) for k in z.files}


def test_class_samples_are_reproducible_readable_and_marked(class_gan: Path, tmp_path: Path) -> None:
    sample_gan(class_gan, 10, tmp_path / "a", seed=7)
    sample_gan(class_gan, 10, tmp_path / "b", seed=7)
    sample_gan(class_gan, 10, tmp_path / "c", seed=8)
    a, b, c = _npz(tmp_path / "a"), _npz(tmp_path / "b"), _npz(tmp_path / "c")
    assert a["train_images"].shape == (10, 16, 16) and a["train_images"].dtype == np.uint8
    assert np.array_equal(a["train_images"], b["train_images"]) and np.array_equal(a["train_labels"], b["train_labels"])
    assert not np.array_equal(a["train_images"], c["train_images"])
    spec = load_dataset(tmp_path / "a" / "synthetic_tinymnist.npz")  # medsight's own loader reads it
    assert spec.task == "classification" and len(spec.cases) == 10
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert manifest["synthetic"] is True and manifest["seed"] == 7 and manifest["count"] == 10
    assert all(e["case_id"].startswith("synthetic_") for e in manifest["cases"])
    sample_gan(class_gan, 6, tmp_path / "only1", seed=0, class_name="1")
    assert set(_npz(tmp_path / "only1")["train_labels"].ravel().tolist()) == {1}
    with pytest.raises(MedsightError, match="known class"):
        sample_gan(class_gan, 2, tmp_path / "bad", class_name="7x")
    with pytest.raises(MedsightError, match="new output folder"):
        sample_gan(class_gan, 2, tmp_path / "a")


def test_mask_samples_are_aligned_pairs_in_the_dataset_format(mask_gan: Path, tmp_path: Path) -> None:
    written = sample_gan(mask_gan, 3, tmp_path / "syn", seed=1)
    again = sample_gan(mask_gan, 3, tmp_path / "again", seed=1)
    for f, g in zip(written, again):
        if f.suffix == ".png":
            assert np.array_equal(np.asarray(PILImage.open(f)), np.asarray(PILImage.open(g))), f.name
    spec = load_dataset(tmp_path / "syn")
    assert spec.task == "segmentation" and spec.layout == "folders" and spec.binary_masks and len(spec.cases) == 3
    for ref in spec.cases:
        case = load_case(spec, ref)
        assert ref.case_id.startswith("synthetic_") and case.image.num_channels == 3
        assert case.label_map is not None and case.label_map.shape == case.image.shape
        assert case.label_map.same_geometry(case.image) and case.mask is not None
        assert set(np.unique(case.label_array).tolist()) <= {0, 1} and case.label_array.any()
        assert (case.label_array.astype(bool) & ~case.mask.array[0].astype(bool)).sum() <= 0.02 * case.label_array.size
    with PILImage.open(tmp_path / "syn" / "images" / "synthetic_00000.png") as im:
        assert "synthetic" in im.info["Description"]
    manifest = json.loads((tmp_path / "syn" / MANIFEST).read_text())
    assert manifest["cases"][0]["source_case"].endswith("_training") and "matrix" in manifest["cases"][0]["deformation"]


def test_deformation_moves_mask_and_roi_together() -> None:
    yy, xx = np.mgrid[:40, :48]
    roi = (np.hypot(yy - 20, xx - 24) <= 15).astype(np.uint8)
    mask = roi.copy()  # the label fills the ROI: after one shared transform they must still coincide
    gen = torch.Generator().manual_seed(3)
    warped, warped_roi, record = deform(mask, roi, Deformation(rotate_deg=20, elastic_magnitude=0.05).augment_config(), gen)
    assert warped.shape == (1, 1, 40, 48) and warped_roi is not None and record["elastic"]
    a, b = warped[0, 0].numpy() > 0, warped_roi[0, 0].numpy() > 0
    assert not np.array_equal(a, mask > 0)  # it did deform
    assert (a & b).sum() / (a | b).sum() > 0.95


def test_the_mask_is_the_generator_condition() -> None:
    torch.manual_seed(0)
    g = MaskGenerator(spatial_dims=2, condition_channels=2, out_channels=1, channels=[4, 8]).eval()
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    moved = mask.clone()
    mask[..., 4:8, 4:8] = 1
    moved[..., 8:12, 8:12] = 1
    noise = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        out_a = g(condition_tensor(mask, None, 2), noise)
        out_b = g(condition_tensor(moved, None, 2), noise)
        out_c = g(condition_tensor(mask, None, 2), noise)
    assert out_a.shape == (1, 1, 16, 16) and torch.equal(out_a, out_c)
    assert not torch.allclose(out_a, out_b)


@pytest.mark.slow
def test_3d_mask_gan_writes_nifti_marked_synthetic(tmp_path: Path) -> None:
    data = write_phantom_dataset(tmp_path / "vol", num_cases=3, shape=(16, 20, 18), seed=0)
    gan = _trained(data, tmp_path / "gan3d")
    plan = load_gan_plan(gan)
    assert plan.dims == 3 and plan.output["layout"] == "nnunet" and plan.intensity["mode"] == "per_image"
    written = sample_gan(gan, 2, tmp_path / "syn", seed=0)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(written[0]))
    reader.ReadImageInformation()
    assert "synthetic" in reader.GetMetaData("descrip")
    spec = load_dataset(tmp_path / "syn")
    case = load_case(spec, spec.cases[0])
    assert case.image.shape == case.label_map.shape == (16, 20, 18) and case.label_map.same_geometry(case.image)  # type: ignore[union-attr]
    assert set(np.unique(case.label_array).tolist()) <= {0, 1, 2}
