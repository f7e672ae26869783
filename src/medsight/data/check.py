"""Check a dataset file by file before training: every problem named with the exact file at fault.

:func:`check_dataset` reads every case once (one case in memory at a time) and collects :class:`Problem` s
instead of stopping at the first one: unreadable or missing files, images without labels and labels
without images, shape and geometry mismatches, undeclared or empty labels, NaN/Inf voxels, mixed
dimensionality or channel counts, missing nnU-Net channel files and out-of-range class indices.

:func:`infer_spec_json` turns a folder-pairs dataset into an editable medsight ``dataset.json``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.image import Image
from medsight.data.dataset import IMAGE_SUFFIXES, CaseRef, DatasetSpec, file_stem, load_case
from medsight.errors import MedsightError
from medsight.io import read_image
from medsight.io.nifti_check import nifti_integrity

log = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"

#: Every problem kind with its severity. Warnings are reported but do not make a dataset fail.
KINDS: dict[str, str] = {
    "missing_file": ERROR,  # a file the spec lists does not exist
    "missing_channel": ERROR,  # an nnU-Net channel file (case_XXXX) is absent
    "missing_pair": ERROR,  # image without label file, or label file without image
    "unreadable": ERROR,  # the reader refused the file (corrupt, truncated, wrong format)
    "invalid_label": ERROR,  # label map with several channels, NaN/Inf or fractional values
    "shape_mismatch": ERROR,  # label/ROI/channel file on another grid than the image
    "geometry_mismatch": ERROR,  # spacing/origin/direction differ beyond tolerance (not for raster files)
    "undeclared_labels": ERROR,  # label values that are not in spec.labels
    "non_finite": ERROR,  # NaN/Inf voxels in an image
    "mixed_dimensionality": ERROR,  # 2D and 3D images in one dataset
    "mixed_channels": ERROR,  # images with different channel counts
    "channel_count": ERROR,  # channel count differs from the declared channel_names
    "class_out_of_range": ERROR,  # classification label outside the declared classes
    "empty_label": WARNING,  # label map with background only
    "no_foreground": ERROR,  # every label map of a segmentation dataset is background only
    "ignored_file": WARNING,  # an image file in the dataset folders that no case uses
}


ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Problem:
    """One problem with one file.

    Attributes:
        file: the exact file at fault (for NPZ cases: ``archive.npz:split[index]``).
        case_id: the case it belongs to (the file's stem for files that belong to no case).
        kind: one of :data:`KINDS` (``"unreadable"``, ``"shape_mismatch"``, ...).
        message: one line saying what is wrong and how to fix it.
        severity: ``"error"`` or ``"warning"``.
    """

    file: str
    case_id: str
    kind: str
    message: str
    severity: str = ERROR

    def __post_init__(self) -> None:
        if self.severity not in (ERROR, WARNING):
            raise ValueError(f"Expected severity 'error' or 'warning', got {self.severity!r}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        dataset: the dataset's name.
        num_cases: labelled (training pool) cases checked.
        num_test_cases: test cases checked.
        problems: every problem, in the order found.
        counts: summary counts: ``dim_2d``/``dim_3d`` (images per dimensionality), ``channels_<n>``,
            ``dtype_<name>``, ``label_<value>`` (label maps holding the value, or cases of the class),
            ``images_read``, ``labels_read``.
        task: ``"segmentation"`` or ``"classification"``.
        layout: the dataset layout (``"folders"``, ``"nnunet"``, ...).
        labels: label name -> value of the spec.
        labels_declared: whether the labels come from a spec file rather than from the files.
        root: the dataset folder or file.
        ranges: ``spacing_mm`` and ``shape`` as ``[[min per axis], [max per axis]]`` over the images of the
            most common dimensionality, and ``intensity`` as ``[min, max]`` over finite voxels.
    """

    dataset: str
    num_cases: int
    num_test_cases: int
    problems: tuple[Problem, ...]
    counts: dict[str, int]
    task: str = ""
    layout: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    labels_declared: bool = True
    root: str = ""
    ranges: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == WARNING)

    @property
    def ok(self) -> bool:
        """True when no problem is an error (warnings allowed)."""
        return not self.errors

    def problem_counts(self) -> dict[str, int]:
        """Number of problems per kind, most frequent first."""
        return dict(Counter(p.kind for p in self.problems).most_common())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``json.dumps(report.to_dict())``)."""
        return {
            "dataset": self.dataset,
            "root": self.root,
            "task": self.task,
            "layout": self.layout,
            "ok": self.ok,
            "num_cases": self.num_cases,
            "num_test_cases": self.num_test_cases,
            "labels": dict(self.labels),
            "labels_declared": self.labels_declared,
            "num_errors": len(self.errors),
            "num_warnings": len(self.warnings),
            "problem_counts": self.problem_counts(),
            "problems": [p.to_dict() for p in self.problems],
            "counts": dict(self.counts),
            "ranges": dict(self.ranges),
        }


# ---------------------------------------------------------------------------------------------- helpers
def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _geometry_difference(a: Image, b: Image, atol: float) -> str:
    """Describe how ``a``'s geometry differs from ``b``'s (``""`` when equal within ``atol``)."""
    diffs = []
    if not np.allclose(a.spacing, b.spacing, atol=atol):
        diffs.append(f"spacing {_fmt(a.spacing)} mm vs {_fmt(b.spacing)} mm")
    if not np.allclose(a.origin, b.origin, atol=atol):
        diffs.append(f"origin {_fmt(a.origin)} mm vs {_fmt(b.origin)} mm")
    if not np.allclose(a.direction, b.direction, atol=atol):
        diffs.append(f"direction {a.orientation} vs {b.orientation}"
                     + (" (oblique)" if a.orientation == b.orientation else ""))
    return "; ".join(diffs)


def _label_values(raw: Image, *, binary: bool) -> tuple[np.ndarray | None, str]:
    """The label map's integer values as ``load_case`` would see them, or ``(None, reason)``.

    Mirrors :func:`medsight.data.dataset.read_label_map` (which raises instead of explaining) so that a
    single read of the file gives both the readability and the content checks.
    """
    arr = raw.array
    if arr.shape[0] != 1:
        if arr.shape[0] == 3 and np.array_equal(arr[0], arr[1]) and np.array_equal(arr[1], arr[2]):
            arr = arr[:1]
        else:
            return None, f"{arr.shape[0]} channels (an RGB mask?); save it as grayscale with one integer value per label"
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            return None, f"{int((~finite).sum())} NaN/Inf voxels in a label map; fix the label file"
        rounded = np.rint(arr)
        if not np.allclose(arr, rounded, atol=1e-3):
            return None, "fractional label values (interpolated?); save labels as integers, resample with nearest neighbour"
        arr = rounded
    if binary:
        if arr.max(initial=0) > 1:
            foreground = arr > 127
            if arr.any() and not foreground.any():
                values = _unique(arr[0].astype(np.int64))
                return None, (f"values {values} are all <= 127, so reading it as a 0/255 binary mask leaves no "
                              "foreground; if they are class values, declare them (medsight dataset init --labels ...)")
            arr = foreground
        else:
            arr = arr > 0
    return arr[0].astype(np.int64, copy=False), ""


def _unique(values: np.ndarray) -> list[int]:
    flat = values.ravel()
    if flat.size and flat.min() >= 0 and flat.max() < 65536:
        return np.flatnonzero(np.bincount(flat)).tolist()
    return np.unique(flat).astype(np.int64).tolist()


def _list_files(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return sorted(Path(e.path) for e in entries
                  if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES))


# ---------------------------------------------------------------------------------------------- checker
class _Checker:
    """Collects problems and summary statistics while the cases are read one at a time."""

    def __init__(self, spec: DatasetSpec, atol: float) -> None:
        self.spec = spec
        self.atol = atol
        self.problems: list[Problem] = []
        self._seen: set[tuple[str, str]] = set()
        self.counts: Counter[str] = Counter()
        self.images: list[tuple[str, str, int, int]] = []  # (file, case id, ndim, channels)
        self.spacing: dict[int, list[np.ndarray]] = {}
        self.shapes: dict[int, list[np.ndarray]] = {}
        self.intensity: list[float] = []
        self.declared = set(spec.labels.values())

    # ----------------------------------------------------------------- recording
    def add(self, file: str | Path, case_id: str, kind: str, message: str) -> None:
        key = (str(file), kind)
        if key in self._seen:
            return
        self._seen.add(key)
        self.problems.append(Problem(str(file), case_id, kind, message, KINDS[kind]))

    def _read(self, path: Path, case_id: str, missing_kind: str, missing_msg: str) -> tuple[Image | None, int]:
        """The image (``None`` after reporting why not) and its NaN/Inf voxel count on disk (NIfTI only)."""

        if not path.exists():
            self.add(path, case_id, missing_kind, missing_msg)
            return None, 0
        try:
            image = read_image(path, strict=False)  # NaN/Inf and irregular stacks are reported, not raised
            truncated, non_finite = nifti_integrity(path)
        except (MedsightError, OSError, EOFError, RuntimeError) as exc:
            self.add(path, case_id, "unreadable", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None, 0
        if truncated:
            self.add(path, case_id, "unreadable", f"{truncated}; re-export or re-download the file")
            return None, 0
        return image, non_finite

    def _note_image(self, file: str, case_id: str, image: Image, disk_non_finite: int = 0) -> None:
        arr = image.array
        self.images.append((file, case_id, image.ndim, image.num_channels))
        self.counts["images_read"] += 1
        self.counts[f"dim_{image.ndim}d"] += 1
        self.counts[f"channels_{image.num_channels}"] += 1
        self.counts[f"dtype_{arr.dtype}"] += 1
        self.spacing.setdefault(image.ndim, []).append(np.asarray(image.spacing))
        self.shapes.setdefault(image.ndim, []).append(np.asarray(image.shape))
        values = arr
        bad = disk_non_finite
        if arr.dtype.kind == "f":
            finite = np.isfinite(arr)
            bad = max(bad, int(arr.size - np.count_nonzero(finite)))
            values = arr[finite] if bad else arr
        if bad:
            self.add(file, case_id, "non_finite",
                     f"{bad} NaN/Inf voxels of {arr.size}; replace them (e.g. with the background value) and re-save")
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            self.intensity = [min(self.intensity[0], lo), max(self.intensity[1], hi)] if self.intensity else [lo, hi]

    # ----------------------------------------------------------------- one case
    def check_case(self, ref: CaseRef, *, test: bool) -> None:
        if ref.npz is not None:
            self._check_npz_case(ref)
            return
        image = self._check_images(ref)
        if self.spec.task == "classification":
            self._check_class(ref, str(ref.images[0]) if ref.images else ref.case_id)
            return
        if ref.label is not None:
            self._check_label(ref, ref.label, image, test=test)
        if ref.roi is not None:
            self._check_roi(ref, ref.roi, image)

    def _check_npz_case(self, ref: CaseRef) -> None:
        path, split, index = ref.npz  # type: ignore[misc]
        where = f"{path}:{split}[{index}]"
        try:
            case = load_case(self.spec, ref)
        except (MedsightError, OSError, EOFError, KeyError, IndexError) as exc:
            self.add(where, ref.case_id, "unreadable", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        self._note_image(where, ref.case_id, case.image)
        self._check_class(ref, where)

    def _check_images(self, ref: CaseRef) -> Image | None:
        nnunet = self.spec.layout == "nnunet"
        parts: list[tuple[Path, Image]] = []
        disk_non_finite: dict[Path, int] = {}
        failed = False
        for i, f in enumerate(ref.images):
            if nnunet:
                kind = "missing_channel"
                msg = (f"channel {i} ({self._channel_name(i)}) of case {ref.case_id} is missing; nnU-Net needs one file "
                       f"per channel named {ref.case_id}_XXXX with XXXX = 0000..{len(ref.images) - 1:04d}")
            else:
                kind = "missing_file"
                msg = "the image file listed for this case does not exist; fix the path in the spec or restore the file"
            img, disk_non_finite[f] = self._read(f, ref.case_id, kind, msg)
            if img is None:
                failed = True
            else:
                parts.append((f, img))
        if not parts:
            return None
        first_file, first = parts[0]
        for f, other in parts[1:]:
            self._compare_grid(
                f, ref.case_id, other, first,
                shape_msg=f"channel shape {other.shape} differs from {first_file.name} {first.shape}; "
                          "resample all channels of a case to one grid",
                geometry_msg=f"channel geometry differs from {first_file.name}: {{diff}}; resample it onto the first channel",
            )
        for f, img in parts:
            self._note_image(str(f), ref.case_id, img, disk_non_finite[f])
        channels = sum(img.num_channels for _, img in parts)
        expected = self._declared_channels()
        if not failed and expected and channels != len(expected):
            self.add(first_file, ref.case_id, "channel_count",
                     f"{channels} channel(s) while channel_names declares {len(expected)} ({', '.join(expected)}); "
                     "fix channel_names or the image files")
        return first  # all channels share the first one's grid (or were reported above)

    def _compare_grid(self, path: Path, case_id: str, img: Image, reference: Image, *, shape_msg: str,
                      geometry_msg: str) -> None:
        """Report ``img`` at ``path`` when its shape, or (non-raster files) its geometry, differs from ``reference``.

        ``geometry_msg`` may hold ``{diff}``, replaced by the difference found.
        """
        if img.shape != reference.shape:
            self.add(path, case_id, "shape_mismatch", shape_msg)
        elif not (img.is_raster or reference.is_raster):
            diff = _geometry_difference(img, reference, self.atol)
            if diff:
                self.add(path, case_id, "geometry_mismatch", geometry_msg.replace("{diff}", diff))

    def _channel_name(self, i: int) -> str:
        names = self.spec.channel_names
        return names[i] if i < len(names) else f"ch{i}"

    def _declared_channels(self) -> tuple[str, ...]:
        spec = self.spec
        if spec.layout == "msd" and spec.channel_names == ("image",):
            return ()  # default name given by the loader, not a declaration
        return spec.channel_names if spec.layout in ("nnunet", "msd", "folders") else ()

    def _check_label(self, ref: CaseRef, label_path: Path, image: Image | None, *, test: bool) -> None:
        if not label_path.exists():
            if not test:
                owner = ref.images[0] if ref.images else label_path
                self.add(owner, ref.case_id, "missing_pair",
                         f"no label file for this image (looked for {label_path}); add the label or remove the image")
            return
        raw, non_finite = self._read(label_path, ref.case_id, "missing_file", "label file does not exist")
        if raw is None:
            return
        self.counts["labels_read"] += 1
        values, reason = _label_values(raw, binary=self.spec.binary_masks)
        if non_finite:
            values, reason = None, f"{non_finite} NaN/Inf voxels in a label map; fix the label file"
        if values is None:
            self.add(label_path, ref.case_id, "invalid_label", reason)
            return
        if image is not None:
            self._compare_grid(
                label_path, ref.case_id, raw, image,
                shape_msg=f"label shape {raw.shape} differs from image shape {image.shape} "
                          f"({Path(image.source.path).name}); re-export the label on the image's grid",
                geometry_msg="label geometry differs from the image's: {diff}; resample the label onto the image "
                             "grid (nearest neighbour) or fix its header",
            )
        present = _unique(values)
        for v in present:
            self.counts[f"label_{v}"] += 1
        unknown = [v for v in present if v not in self.declared]
        if unknown:
            known = ", ".join(f"{k}={v}" for k, v in self.spec.labels.items())
            origin = "declared" if self.spec.labels_declared else "found in the other label files"
            self.add(label_path, ref.case_id, "undeclared_labels",
                     f"label value(s) {unknown} are not among the labels {origin} ({known}); fix the label file or "
                     "declare the values in dataset.json ('medsight dataset init' writes one)")
        if present == [0]:
            self.add(label_path, ref.case_id, "empty_label",
                     "label map holds background only; fine for negative cases, otherwise re-export the label")

    def _check_roi(self, ref: CaseRef, roi_path: Path, image: Image | None) -> None:
        raw, _ = self._read(roi_path, ref.case_id, "missing_file", "region-of-interest mask file does not exist")
        if raw is None or image is None:
            return
        if raw.shape != image.shape:
            self.add(roi_path, ref.case_id, "shape_mismatch",
                     f"ROI mask shape {raw.shape} differs from image shape {image.shape}; the mask would be ignored, "
                     "re-export it on the image's grid")

    def _check_class(self, ref: CaseRef, where: str) -> None:
        label = ref.class_label
        n = len(self.spec.labels)
        if label is None:
            return
        if isinstance(label, tuple):
            if len(label) != n or any(v not in (0, 1) for v in label):
                self.add(where, ref.case_id, "class_out_of_range",
                         f"multi-label vector {list(label)} is not {n} values of 0/1; fix the labels")
                return
            for i, v in enumerate(label):
                self.counts[f"label_{i}"] += int(v)
            return
        if not 0 <= int(label) < n:
            self.add(where, ref.case_id, "class_out_of_range",
                     f"class index {label} outside 0..{n - 1} ({n} classes); fix the label")
            return
        self.counts[f"label_{int(label)}"] += 1

    # ----------------------------------------------------------------- dataset level
    def check_dataset_level(self, refs: list[CaseRef]) -> None:
        self._check_mixed(2, "mixed_dimensionality", "{v}D image while {n} of {total} images are {m}D; "
                          "convert all images to one dimensionality (or split the dataset)")
        self._check_mixed(3, "mixed_channels", "{v} channel(s) while {n} of {total} images have {m}; "
                          "make every image hold the same channels")
        self._check_orphans(refs)
        empty = [p for p in self.problems if p.kind == "empty_label"]
        if self.spec.task == "segmentation" and empty and len(empty) == self.counts.get("labels_read", -1):
            folder = os.path.commonpath([p.file for p in empty]) if len(empty) > 1 else empty[0].file
            self.add(folder, "", "no_foreground", f"all {len(empty)} label maps are background only, so there is "
                     "nothing to learn; check that the labels folder holds the annotations (not empty masks)")

    def _check_mixed(self, field_index: int, kind: str, template: str) -> None:
        if not self.images:
            return
        counts = Counter(entry[field_index] for entry in self.images)
        if len(counts) < 2:
            return
        majority, n = counts.most_common(1)[0]
        total = len(self.images)
        if kind == "mixed_channels" and self.spec.layout == "nnunet":
            return  # per-channel files; the channel_count check covers nnU-Net
        for entry in self.images:
            if entry[field_index] != majority:
                self.add(entry[0], entry[1], kind, template.format(v=entry[field_index], n=n, total=total, m=majority))

    def _check_orphans(self, refs: list[CaseRef]) -> None:
        """Label files that match no image, and image files that no case uses."""
        used_labels = {r.label for r in refs if r.label is not None}
        label_dirs = {p.parent for p in used_labels}
        if self.spec.extra.get("labels_dir"):
            label_dirs.add(Path(self.spec.extra["labels_dir"]))
        if self.spec.layout == "nnunet":
            label_dirs.add(self.spec.root / "labelsTr")
        used_images = {f for r in refs for f in r.images}
        image_dirs = {f.parent for f in used_images}
        for folder in sorted(label_dirs):
            if folder in image_dirs:
                continue
            for f in _list_files(folder):
                if f not in used_labels:
                    self.add(f, file_stem(f), "missing_pair",
                             "label file matches no image; add its image, rename it to the image's name, or remove it")
        if self.spec.layout != "nnunet":
            return  # elsewhere a spec may list a subset on purpose (CSV, MSD training list)
        for folder in sorted(image_dirs - label_dirs):
            for f in _list_files(folder):
                if f not in used_images:
                    self.add(f, file_stem(f), "ignored_file",
                             f"image file is not part of any case and is ignored; nnU-Net channel files are named "
                             f"<case>_XXXX with XXXX < {max(len(self.spec.channel_names), 1):04d}")

    def ranges(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        if self.spacing:
            nd = max(self.spacing, key=lambda k: len(self.spacing[k]))
            sp = np.stack(self.spacing[nd])
            sh = np.stack(self.shapes[nd])
            out["spacing_mm"] = [np.round(sp.min(0), 6).tolist(), np.round(sp.max(0), 6).tolist()]
            out["shape"] = [sh.min(0).astype(int).tolist(), sh.max(0).astype(int).tolist()]
        if self.intensity:
            out["intensity"] = list(self.intensity)
        return out


def check_dataset(spec: DatasetSpec, *, progress: ProgressCallback | None = None, atol: float = 1e-2) -> CheckReport:
    """Read every case of ``spec`` and report every problem, naming the exact file at fault.

    Cases are read one at a time, so memory stays at one case. Training cases need their label; test cases
    are checked for what they have.

    Args:
        spec: the dataset, from :func:`medsight.data.dataset.load_dataset`.
        progress: called as ``progress(done, total)`` after each case (for progress bars).
        atol: tolerance (mm, and direction cosines) for comparing image and label geometry; raster files
            (PNG, TIFF, ...) store no geometry, so only their shapes are compared.

    Returns:
        The report; ``report.ok`` is true when no problem is an error.
    """
    checker = _Checker(spec, atol)
    refs = [*spec.cases, *spec.test_cases]
    total = len(refs)
    for done, ref in enumerate(refs, start=1):
        checker.check_case(ref, test=done > len(spec.cases))
        if progress is not None:
            progress(done, total)
    checker.check_dataset_level(refs)
    report = CheckReport(
        dataset=spec.name, num_cases=len(spec.cases), num_test_cases=len(spec.test_cases),
        problems=tuple(checker.problems), counts=dict(sorted(checker.counts.items())), task=spec.task,
        layout=spec.layout, labels=dict(spec.labels), labels_declared=spec.labels_declared, root=str(spec.root),
        ranges=checker.ranges(),
    )
    log.debug("checked %s: %d cases, %d problems", spec.name, total, len(report.problems))
    return report


__all__ = ["KINDS", "CheckReport", "Problem", "check_dataset", "nifti_integrity"]
