"""Synthetic cases written in the dataset's own format, marked synthetic in file names and metadata.

Layouts (from the plan's ``output``; every file name starts with ``synthetic_``):

* ``npz`` (MedMNIST): ``synthetic_<dataset>.npz`` with ``train_images`` ``(N, H, W[, 3])`` and ``train_labels`` ``(N, 1)``;
* ``csv`` (class CSVs, class folders): ``images/synthetic_NNNNN<suffix>`` and ``synthetic.csv`` (``image,label``);
* ``folders`` (image/mask folder pairs): ``images/``, ``labels/`` and, with a region of interest, ``mask/``;
* ``nnunet`` (nnU-Net v2 and MSD): ``imagesTr/synthetic_NNNNN_0000<ending>``, ``labelsTr/`` and ``dataset.json``.

Every folder gets ``synthetic_manifest.json`` (what generated each case, with which seed and deformation).
PNG files carry a ``Description`` text chunk, TIFF files an ``ImageDescription`` tag, NIfTI files a ``descrip``
header field and NRRD/MHA files a note saying they are synthetic; other formats (BMP) are marked by their names and
the manifest only.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.atomic import atomic_path, write_text
from medsight.core.image import Image
from medsight.io import WRITE_SUFFIXES, full_suffix, write_image
from medsight.io.itk import ITK_SUFFIXES, to_sitk
from medsight.io.raster import write_raster
from medsight.tasks.synthesis.plan import GanPlan
from medsight.transforms.synthetic import MANIFEST, PREFIX


def writable_suffix(suffix: str, dims: int) -> str:
    """The dataset's suffix when medsight can write it; else ``.png`` (2D) or ``.nii.gz`` (3D)."""
    return suffix if suffix in WRITE_SUFFIXES and suffix != ".mhd" else (".png" if dims == 2 else ".nii.gz")


def write_marked(image: Image, path: Path, description: str) -> Path:
    """Write ``image`` atomically with ``description`` in the file's metadata where the format has a place for it."""
    suffix = full_suffix(path)
    if suffix in (".png", ".tif", ".tiff"):
        from PIL import Image as PILImage
        from PIL.PngImagePlugin import PngInfo

        with atomic_path(path) as tmp:
            write_raster(image, tmp)
            with PILImage.open(tmp) as pil:
                pil.load()
                if suffix == ".png":
                    info = PngInfo()
                    info.add_text("Description", description)
                    info.add_text("Software", "medsight")
                    pil.save(tmp, format="PNG", pnginfo=info)
                else:
                    pil.save(tmp, format="TIFF", tiffinfo={270: description}, compression="tiff_lzw")
        return path
    if suffix in ITK_SUFFIXES:
        import SimpleITK as sitk

        img = to_sitk(image)
        img.SetMetaData("ITK_FileNotes", description[:79])  # NIfTI: the header's descrip field; NRRD/MHA: a note
        with atomic_path(path) as tmp:
            sitk.WriteImage(img, str(tmp), useCompression=suffix == ".nii.gz")
        return path
    return write_image(image, path)


class SyntheticWriter:
    """Writes synthetic cases as they come (``add_class_image`` / ``add_pair``); :meth:`close` writes what is
    collected (NPZ, CSV, dataset.json) and the manifest, and returns every written file."""

    def __init__(self, out: str | Path, plan: GanPlan, manifest: dict[str, Any]) -> None:
        self.out, self.plan = Path(out), plan
        self.layout = plan.output["layout"]
        self.manifest = {**manifest, "synthetic": True, "task": "classification" if plan.kind == "class" else "segmentation",
                         "layout": self.layout, "cases": []}
        self.description = f"medsight synthetic image (GAN {plan.kind}-conditional, not a real patient) from {plan.dataset}"
        self.image_suffix = writable_suffix(plan.output["image_suffix"], plan.dims)
        self.label_suffix = writable_suffix(plan.output.get("label_suffix") or self.image_suffix, plan.dims)
        self.written: list[Path] = []
        self._arrays: list[np.ndarray] = []
        self._classes: list[int] = []
        self.out.mkdir(parents=True, exist_ok=True)

    def _write(self, image: Image, path: Path) -> str:
        self.written.append(write_marked(image, path, self.description))
        return str(path.relative_to(self.out))

    def add_class_image(self, case_id: str, array: np.ndarray, class_index: int, record: dict[str, Any]) -> None:
        """One generated image ``(C, H, W)`` (in the dataset's dtype) of class ``class_index``."""
        entry = {"case_id": case_id, "class": self.plan.class_names[class_index], **record}
        if self.layout == "npz":
            self._arrays.append(array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1))
            self._classes.append(class_index)
            entry["index"] = len(self._arrays) - 1
        else:
            entry["image"] = self._write(Image(array), self.out / "images" / f"{case_id}{self.image_suffix}")
            self._classes.append(class_index)
        self.manifest["cases"].append(entry)

    def add_pair(self, case_id: str, image: Image, label: Image, roi: Image | None, record: dict[str, Any]) -> None:
        """One generated ``(image, label map)`` pair on the same grid (and its region of interest)."""
        if image.shape != label.shape or not image.same_geometry(label):
            raise ValueError(f"Expected an image and label map on one grid for {case_id}, got {image.shape} and {label.shape}")
        if self.label_suffix in (".png", ".tif", ".tiff", ".bmp") and self.plan.output.get("binary_masks"):
            label = label.with_array((label.array > 0).astype(np.uint8) * 255)
        entry: dict[str, Any] = {"case_id": case_id, **record}
        if self.layout == "nnunet":
            names = self.plan.output.get("channel_names") or []
            if len(names) == image.num_channels and image.num_channels > 1:
                entry["image"] = [self._write(image.with_array(image.array[c:c + 1]),
                                              self.out / "imagesTr" / f"{case_id}_{c:04d}{self.image_suffix}")
                                  for c in range(image.num_channels)]
            else:
                entry["image"] = self._write(image, self.out / "imagesTr" / f"{case_id}_0000{self.image_suffix}")
            entry["label"] = self._write(label, self.out / "labelsTr" / f"{case_id}{self.image_suffix}")
        else:
            entry["image"] = self._write(image, self.out / "images" / f"{case_id}{self.image_suffix}")
            entry["label"] = self._write(label, self.out / "labels" / f"{case_id}{self.label_suffix}")
            if roi is not None:
                on = 255 if self.label_suffix in (".png", ".tif", ".tiff", ".bmp") else 1
                entry["roi"] = self._write(roi.with_array((roi.array > 0).astype(np.uint8) * on),
                                           self.out / "mask" / f"{case_id}{self.label_suffix}")
        self.manifest["cases"].append(entry)

    def close(self) -> list[Path]:
        """Write the collected outputs and ``synthetic_manifest.json``; returns every file written."""
        if self.layout == "npz":
            name = f"{PREFIX}{self.plan.dataset}.npz"
            with atomic_path(self.out / name) as tmp:
                np.savez_compressed(tmp, train_images=np.stack(self._arrays),
                                    train_labels=np.asarray(self._classes, dtype=np.uint8).reshape(-1, 1))
            self.written.append(self.out / name)
            self.manifest["dataset_file"] = name
        elif self.layout == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["image", "label"])
            for entry in self.manifest["cases"]:
                w.writerow([entry["image"], entry["class"]])
            self.written.append(write_text(self.out / f"{PREFIX}cases.csv", buf.getvalue()))
            self.manifest["dataset_file"] = f"{PREFIX}cases.csv"
        elif self.layout == "nnunet":
            names = self.plan.output.get("channel_names") or ["image"]
            spec = {"name": f"{PREFIX}{self.plan.dataset}", "channel_names": {str(i): n for i, n in enumerate(names)},
                    "labels": self.plan.labels, "numTraining": len(self.manifest["cases"]), "file_ending": self.image_suffix,
                    "synthetic": True, "description": self.description}
            self.written.append(write_text(self.out / "dataset.json", json.dumps(spec, indent=2)))
            self.manifest["dataset_file"] = "dataset.json"
        else:
            spec = {"layout": "folders", "name": f"{PREFIX}{self.plan.dataset}", "images_dir": "images", "labels_dir": "labels",
                    **({"roi_dir": "mask"} if self.plan.roi else {}), "labels": self.plan.labels,
                    **({"channel_names": {str(i): n for i, n in enumerate(self.plan.output["channel_names"])}}
                       if self.plan.output.get("channel_names") else {}),
                    "synthetic": True}
            self.written.append(write_text(self.out / "dataset.json", json.dumps(spec, indent=2)))
            self.manifest["dataset_file"] = "dataset.json"
        self.manifest["count"] = len(self.manifest["cases"])
        self.written.append(write_text(self.out / MANIFEST, json.dumps(self.manifest, indent=1)))
        return self.written
