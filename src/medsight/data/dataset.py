"""Dataset specs: the layouts users already have, read into one :class:`DatasetSpec`.

Supported (detected from the path, see :func:`load_dataset`):

* nnU-Net v2: ``dataset.json`` with ``channel_names``, ``labels`` (name -> value) and ``file_ending``;
  ``imagesTr/<case>_<XXXX><ending>``, ``labelsTr/<case><ending>``, optional ``imagesTs/``.
* MSD: ``dataset.json`` with a ``training`` list of ``{"image", "label"}`` and ``labels`` (value -> name).
* Folder pairs: a folder with an image folder (``images``/``imagesTr``/``img``) and a label folder
  (``labels``/``masks``/``labelsTr``/``1st_manual``/``label``), matched by file stem, or by the leading
  token before ``_`` when stems differ (DRIVE: ``21_training.tif`` <-> ``21_manual1.gif``), or by the
  ``{id}`` patterns of a medsight ``dataset.json`` (``"layout": "folders"``). An optional region-of-interest
  folder (``mask``/``fov``) is matched the same way.
* CSV for classification: columns ``image`` (or ``path``/``file``) and ``label``; paths relative to the CSV.
* MedMNIST NPZ: ``train_images``/``train_labels``, ``val_*``, ``test_*``.

Partial labels (structures not annotated in a case) come from ``dataset.json``'s ``"absent_structures"``,
``absent_structures.json`` or ``contoured_structures.json`` beside it (:mod:`medsight.data.partial_labels`) into
:attr:`DatasetSpec.absent`.

A spec lists cases without reading voxels; :func:`load_case` reads one case into a :class:`~medsight.core.case.Case`.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.case import Case
from medsight.core.image import Image, SourceInfo
from medsight.core.tables import read_json_object
from medsight.data.npz import load_npz_spec, npz_image
from medsight.data.partial_labels import read_absent_structures
from medsight.data.spec import CaseRef, DatasetSpec
from medsight.errors import InputNotFoundError, MedsightError, user_error
from medsight.io import read_image

log = logging.getLogger(__name__)

IMAGE_DIR_NAMES = ("imagesTr", "images", "image", "img", "imgs", "cxr")
LABEL_DIR_NAMES = ("labelsTr", "labels", "label", "masks", "mask_labels", "1st_manual", "gt", "groundtruth")
ROI_DIR_NAMES = ("mask", "fov", "roi")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".bmp", ".dcm")


# ---------------------------------------------------------------------------------------------- detection
def load_dataset(path: str | Path) -> DatasetSpec:
    """Read a dataset spec from a folder, a ``dataset.json``, a CSV or a MedMNIST NPZ.

    Raises:
        MedsightError: when the layout is not recognised, naming what was looked for.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"Expected an existing dataset folder or file, got {p} which does not exist; check the path")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".npz":
            return load_npz_spec(p)
        if suffix == ".csv":
            return _load_csv(p)
        if suffix == ".json":
            return _load_json_spec(p)
        raise user_error("a dataset folder, dataset.json, .csv or .npz", f"file {p.name}", p, "point at the dataset folder")
    if (p / "dataset.json").is_file():
        return _load_json_spec(p / "dataset.json")
    return _load_folders(p)


def _labels_from_json(raw: Any, path: Path) -> dict[str, int]:
    """nnU-Net labels are name -> value; MSD labels are value (as string) -> name. Accept both."""
    if not isinstance(raw, dict) or not raw:
        raise user_error("'labels' as a non-empty object", repr(raw)[:60], path, 'write e.g. "labels": {"background": 0, "tumour": 1}')
    out: dict[str, int] = {}
    for k, v in raw.items():
        if isinstance(v, bool):
            raise user_error("integer label values", f"{k}: {v!r}", path, "use integers")
        if isinstance(v, int):
            out[str(k)] = v
        elif isinstance(v, str) and re.fullmatch(r"-?\d+", str(k)):
            out[v] = int(k)
        elif isinstance(v, list) and v and all(isinstance(x, int) for x in v):
            raise user_error("one value per label", f"region label {k}: {v}", path, "region-based labels are not supported; split them")
        else:
            raise user_error("labels as name -> integer", f"{k}: {v!r}", path, 'write e.g. "labels": {"background": 0, "tumour": 1}')
    if 0 not in out.values():
        out = {"background": 0, **out}
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def _channel_names(raw: Any, path: Path) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(str(k).isdigit() for k in raw):
        raise user_error(
            "'channel_names' (or 'modality') as an object of index -> name", repr(raw)[:60], path, 'write e.g. {"0": "CT"}'
        )
    return tuple(str(raw[k]) for k in sorted(raw, key=lambda k: int(k)))


def _load_json_spec(spec_path: Path) -> DatasetSpec:
    data = read_json_object(spec_path, fix="wrap the fields in { ... }")
    root = spec_path.parent
    if data.get("layout") == "folders" or "images_dir" in data:
        raw = data.get("root")
        if raw is not None and not isinstance(raw, str):
            raise user_error("'root' as a path string", repr(raw), spec_path, "fix dataset.json")
        folder = root if raw is None else (Path(raw) if Path(raw).is_absolute() else root / raw)
        return _load_folders(folder, spec=data, spec_path=spec_path)
    labels = _labels_from_json(data.get("labels"), spec_path)
    name = str(data.get("name") or root.name)
    if "training" in data:  # MSD
        if not isinstance(data["training"], list):
            raise user_error("'training' as a list of {image, label}", type(data["training"]).__name__, spec_path, "fix dataset.json")
        channels = _channel_names(data.get("modality") or data.get("channel_names"), spec_path) or ("image",)
        cases = []
        for i, entry in enumerate(data["training"]):
            if not isinstance(entry, dict) or "image" not in entry:
                raise user_error("training entries with 'image' and 'label'", repr(entry)[:60], spec_path, f"fix entry {i}")
            if not isinstance(entry["image"], str) or not isinstance(entry.get("label") or "", str):
                raise user_error("training entries whose 'image' and 'label' are paths", repr(entry)[:60], spec_path,
                                 f"fix entry {i}")
            img = (root / entry["image"]).resolve()
            lab = (root / entry["label"]).resolve() if entry.get("label") else None
            cases.append(CaseRef(case_id=file_stem(img), images=(img,), label=lab))
        tests = []
        raw_tests = data.get("test") or []
        if not isinstance(raw_tests, list):
            raise user_error("'test' as a list of image paths", type(raw_tests).__name__, spec_path, "fix dataset.json")
        for i, entry in enumerate(raw_tests):
            if not isinstance(entry, str) and not (isinstance(entry, dict) and isinstance(entry.get("image"), str)):
                raise user_error("test entries that are image paths", repr(entry)[:60], spec_path, f"fix test entry {i}")
            img = (root / str(entry if isinstance(entry, str) else entry["image"])).resolve()
            tests.append(CaseRef(case_id=file_stem(img), images=(img,)))
        return DatasetSpec(name=name, root=root, layout="msd", task="segmentation", channel_names=channels, labels=labels,
                           cases=tuple(cases), test_cases=tuple(tests), spec_file=spec_path,
                           absent=read_absent_structures(data, spec_path, labels, [c.case_id for c in cases]))
    if "channel_names" in data or "file_ending" in data:  # nnU-Net v2
        channels = _channel_names(data.get("channel_names"), spec_path)
        if not channels:
            raise user_error("'channel_names' in an nnU-Net dataset.json", "none", spec_path, 'add e.g. "channel_names": {"0": "CT"}')
        ending = data.get("file_ending", ".nii.gz")
        if not isinstance(ending, str) or not ending.startswith("."):
            raise user_error("'file_ending' like '.nii.gz'", repr(ending), spec_path, "fix dataset.json")
        cases = _nnunet_cases(root / "imagesTr", root / "labelsTr", ending, len(channels), spec_path)
        tests = _nnunet_cases(root / "imagesTs", None, ending, len(channels), spec_path) if (root / "imagesTs").is_dir() else []
        n_declared = data.get("numTraining")
        if isinstance(n_declared, int) and n_declared != len(cases):
            log.warning("%s declares numTraining=%d but imagesTr holds %d cases", spec_path, n_declared, len(cases))
        return DatasetSpec(name=name, root=root, layout="nnunet", task="segmentation", channel_names=channels,
                           labels=labels, cases=tuple(cases), test_cases=tuple(tests), spec_file=spec_path,
                           absent=read_absent_structures(data, spec_path, labels, [c.case_id for c in cases]))
    raise user_error(
        "an nnU-Net v2 (channel_names, labels, file_ending), MSD (training list) or medsight (layout: folders) dataset.json",
        f"keys {sorted(data)[:8]}", spec_path, "add the missing fields",
    )


def _nnunet_cases(images: Path, labels: Path | None, ending: str, n_channels: int, spec_path: Path) -> list[CaseRef]:
    if not images.is_dir():
        raise user_error("an imagesTr folder beside dataset.json", "none", spec_path.parent, "put the images in imagesTr/")
    pattern = re.compile(r"^(.*)_(\d{4})" + re.escape(ending) + "$")
    by_case: dict[str, dict[int, Path]] = {}
    for f in sorted(images.iterdir()):
        m = pattern.match(f.name)
        if m:
            by_case.setdefault(m.group(1), {})[int(m.group(2))] = f
    cases = []
    for cid, chans in sorted(by_case.items()):
        files = tuple(chans.get(i, images / f"{cid}_{i:04d}{ending}") for i in range(n_channels))
        label = labels / f"{cid}{ending}" if labels is not None else None
        cases.append(CaseRef(case_id=cid, images=files, label=label))
    return cases


def file_stem(path: Path) -> str:
    """The file name without its image suffix (``case_0000.nii.gz`` -> ``case_0000``)."""
    name = path.name
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and f.name.lower().endswith(IMAGE_SUFFIXES))


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def match_files(images: list[Path], others: list[Path], pattern_img: str | None, pattern_other: str | None) -> tuple[dict[str, Path], str]:
    """Map image stems to the other folder's files. Returns ({image stem: file}, rule used)."""
    other_by_stem = {file_stem(f): f for f in others}
    if pattern_img and pattern_other:
        rx = re.compile("^" + re.escape(pattern_img).replace(re.escape("{id}"), "(?P<id>.+)") + "$")
        out = {}
        for f in images:
            m = rx.match(file_stem(f))
            if m:
                cand = other_by_stem.get(pattern_other.replace("{id}", m.group("id")))
                if cand is not None:
                    out[file_stem(f)] = cand
        return out, f"pattern {pattern_img} <-> {pattern_other}"
    exact = {file_stem(f): other_by_stem[file_stem(f)] for f in images if file_stem(f) in other_by_stem}
    if len(exact) >= max(1, len(images) // 2):
        return exact, "same file stem"
    # leading token rule: "21_training" <-> "21_manual1"
    def token(s: str) -> str:
        return re.split(r"[_\-.]", s, maxsplit=1)[0]

    other_by_token: dict[str, list[Path]] = {}
    for f in others:
        other_by_token.setdefault(token(file_stem(f)), []).append(f)
    lead = {file_stem(f): other_by_token[token(file_stem(f))][0] for f in images if len(other_by_token.get(token(file_stem(f)), [])) == 1}
    return (lead, "leading token before '_'") if len(lead) > len(exact) else (exact, "same file stem")


def _load_folders(root: Path, spec: dict[str, Any] | None = None, spec_path: Path | None = None) -> DatasetSpec:
    spec = spec or {}
    where = spec_path or root
    img_dir = root / spec["images_dir"] if "images_dir" in spec else _first_dir(root, IMAGE_DIR_NAMES)
    lab_dir = root / spec["labels_dir"] if "labels_dir" in spec else _first_dir(root, LABEL_DIR_NAMES)
    roi_dir = root / spec["roi_dir"] if "roi_dir" in spec else _first_dir(root, ROI_DIR_NAMES)
    if roi_dir is not None and lab_dir is not None and roi_dir == lab_dir:
        roi_dir = None
    if img_dir is None or not img_dir.is_dir():
        class_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")] if root.is_dir() else []
        if len(class_dirs) >= 2 and all(image_files(d) for d in class_dirs):
            return _load_class_folders(root, class_dirs)
        raise user_error(
            f"a dataset folder with dataset.json, or an image folder ({'/'.join(IMAGE_DIR_NAMES[:3])}) beside a label folder "
            f"({'/'.join(LABEL_DIR_NAMES[:4])}), or one folder per class",
            "none of these", where, "arrange the files so, or write a dataset.json (see 'medsight dataset --help')",
        )
    images = image_files(img_dir)
    if not images:
        raise user_error("image files", "an empty folder", img_dir, "add images (.nii.gz, .png, .tif, ...)")
    labels: dict[str, Path] = {}
    rule = "no labels"
    if lab_dir is not None:
        labels, rule = match_files(images, image_files(lab_dir), spec.get("image_pattern"), spec.get("label_pattern"))
    rois: dict[str, Path] = {}
    if roi_dir is not None:
        rois, _ = match_files(images, image_files(roi_dir), spec.get("image_pattern"), spec.get("roi_pattern"))
    cases = tuple(
        CaseRef(case_id=file_stem(f), images=(f,), label=labels.get(file_stem(f)) or (lab_dir / f.name if lab_dir else None), roi=rois.get(file_stem(f)))
        for f in images
    )
    raster = images[0].name.lower().endswith((".png", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".bmp"))
    declared = "labels" in spec
    if declared:
        label_map = _labels_from_json(spec["labels"], where)
    else:
        label_map = _infer_labels([c.label for c in cases if c.label is not None and c.label.exists()], raster)
    channels = _channel_names(spec.get("channel_names"), where) if spec.get("channel_names") else ()
    log.debug("folder dataset %s: %d images, labels matched by %s", root, len(images), rule)
    return DatasetSpec(
        name=str(spec.get("name") or _dataset_name(root)), root=root, layout="folders", task="segmentation",
        channel_names=channels, labels=label_map, labels_declared=declared, cases=cases, binary_masks=raster and set(label_map.values()) == {0, 1},
        spec_file=spec_path, extra={"images_dir": str(img_dir), "labels_dir": str(lab_dir) if lab_dir else "", "match_rule": rule},
        absent=read_absent_structures(spec, spec_path, label_map, [c.case_id for c in cases]) if spec_path else {},
    )


def _dataset_name(root: Path) -> str:
    name = root.resolve().name
    if name in ("training", "train", "Training") and root.resolve().parent.name:
        return f"{root.resolve().parent.name}_{name}"
    return name


def _infer_labels(label_files: list[Path], raster: bool, sample: int = 20) -> dict[str, int]:
    """Label values present in at least two of an evenly spaced sample of label files (all if fewer than 3 files).

    Raster masks with values in {0, 255} or {0, 1} are binary: ``{"background": 0, "foreground": 1}``.
    """
    if not label_files:
        return {"background": 0, "foreground": 1}
    idx = np.unique(np.linspace(0, len(label_files) - 1, min(sample, len(label_files))).round().astype(int))
    counts: dict[int, int] = {}

    for i in idx:
        try:
            arr = read_image(label_files[i]).array
        except MedsightError:
            continue
        vals = np.unique(arr[0]) if arr.shape[0] >= 1 else np.unique(arr)
        if raster and vals.max(initial=0) > 1 and np.mean((arr[0] == 0) | (arr[0] == 255)) > 0.99:
            vals = np.array([0, 1])  # binary 0/255 raster mask (anti-aliased edges are thresholded when read)
        for v in vals.tolist():
            if float(v).is_integer():
                counts[int(v)] = counts.get(int(v), 0) + 1
    need = 1 if len(idx) < 3 else 2
    values = sorted(v for v, c in counts.items() if c >= need) or [0, 1]
    if 0 not in values:
        values = [0, *values]
    return {("background" if v == 0 else ("foreground" if values == [0, 1] else f"label_{v}")): v for v in values}


def _load_class_folders(root: Path, class_dirs: list[Path]) -> DatasetSpec:
    labels = {d.name: i for i, d in enumerate(class_dirs)}
    cases = []
    for d in class_dirs:
        for f in image_files(d):
            cases.append(CaseRef(case_id=f"{d.name}/{file_stem(f)}", images=(f,), class_label=labels[d.name]))
    return DatasetSpec(name=root.name, root=root, layout="class_folders", task="classification", channel_names=(),
                       labels=labels, cases=tuple(cases))


MULTILABEL_SEPARATORS = (";", "|")


def _load_csv(path: Path) -> DatasetSpec:
    """A classification CSV: an image column (``image``/``path``/``file``/``filename``) and a label column
    (``label``/``class``/``target``). Several labels per case, separated by ``;`` or ``|``, make it multi-label.
    Other columns are kept per case (for ``--tabular``). Relative paths are relative to the CSV's folder."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise user_error("a UTF-8 CSV file", f"a read error ({exc})", path, "save it as UTF-8 CSV") from exc
    img_col = next((c for c in ("image", "path", "file", "filename") if c in fields), None)
    lab_col = next((c for c in ("label", "class", "target") if c in fields), None)
    if img_col is None or lab_col is None:
        raise user_error(
            "CSV columns 'image' (or path/file) and 'label'", f"columns {fields}", path, "rename the header row"
        )
    if not rows:
        raise user_error("at least one data row", "only a header", path, "add one row per image")
    orig = {f.strip().lower(): f for f in (reader.fieldnames or [])}

    def parts(text: str) -> list[str]:
        for sep in MULTILABEL_SEPARATORS:
            if sep in text:
                return [t.strip() for t in text.split(sep) if t.strip()]
        return [text.strip()] if text.strip() else []

    raw = [str(r.get(orig[lab_col]) or "") for r in rows]
    multilabel = any(len(parts(t)) > 1 for t in raw)
    if not multilabel and any(not t.strip() for t in raw):
        line = 2 + next(i for i, t in enumerate(raw) if not t.strip())
        raise user_error("a label in every row", f"an empty label on line {line}", path, "fill in the label or drop the row")
    names = sorted({n for t in raw for n in parts(t)})
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        names = sorted(names, key=int)
    labels = {n: i for i, n in enumerate(names)}
    cases, seen = [], set()
    for r, text in zip(rows, raw):
        img = Path(str(r.get(orig[img_col]) or "").strip())
        img = img if img.is_absolute() else (path.parent / img)
        cid = file_stem(img)
        if cid in seen:  # the same stem in two folders: keep ids unique
            cid = f"{img.parent.name}/{cid}"
        seen.add(cid)
        found = parts(text)
        cls: int | tuple[int, ...] = tuple(int(n in found) for n in names) if multilabel else labels[found[0]]
        other = tuple((k.strip(), str(v or "").strip()) for k, v in r.items()
                      if k is not None and k.strip().lower() not in (img_col, lab_col))
        cases.append(CaseRef(case_id=cid, images=(img,), class_label=cls, columns=other))
    return DatasetSpec(name=path.stem, root=path, layout="csv", task="classification", channel_names=(), labels=labels,
                       cases=tuple(cases), extra={"multilabel": multilabel})


def read_label_map(path: Path, *, binary: bool) -> Image:
    """Read a label map as one channel of integers; RGB masks are refused; binary raster masks become {0, 1}."""

    lab = read_image(path)
    arr = lab.array
    if arr.shape[0] != 1:
        if arr.shape[0] == 3 and np.array_equal(arr[0], arr[1]) and np.array_equal(arr[1], arr[2]):
            arr = arr[:1]
        else:
            raise user_error("a single-channel label map", f"{arr.shape[0]} channels (an RGB mask?)", path,
                             "save the mask as grayscale with one integer value per label")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise user_error("finite label values", "NaN/Inf voxels", path, "fix the label file")
        rounded = np.rint(arr)
        if not np.allclose(arr, rounded, atol=1e-3):
            raise user_error("integer label values", "fractional values", path, "save labels as integers (no interpolation)")
        arr = rounded
    if binary:
        arr = (arr > 127) if arr.max(initial=0) > 1 else (arr > 0)
    return lab.with_array(arr.astype(np.uint8 if arr.max(initial=0) < 256 and arr.min(initial=0) >= 0 else np.int16))


def load_case(spec: DatasetSpec, ref: CaseRef, *, with_label: bool = True) -> Case:
    """Read one case: channels stacked into one :class:`Image`, the label (map or class) and the ROI mask.

    Raises:
        MedsightError: unreadable files, channels of different shapes/geometry, label geometry not matching.
    """

    if ref.npz is not None:
        path, split, index = ref.npz
        arr = npz_image(path, split, index)
        image = Image(arr, source=SourceInfo(path=f"{path}:{split}[{index}]", format="npz"))
        return Case(case_id=ref.case_id, image=image, label=ref.class_label if with_label else None,
                    meta={"split": split, "source": str(path)})
    parts = [read_image(f) for f in ref.images]
    image = parts[0]
    for f, other in zip(ref.images[1:], parts[1:]):
        if other.shape != image.shape:
            raise user_error(f"channel files of shape {image.shape}", f"shape {other.shape}", f, "resample all channels to one grid")
    if len(parts) > 1:
        image = image.with_array(np.concatenate([p.array for p in parts], axis=0))
    label: Image | int | tuple[int, ...] | None = None
    if with_label and ref.label is not None and spec.task == "segmentation":
        lab = read_label_map(ref.label, binary=spec.binary_masks)
        if lab.shape != image.shape:
            raise user_error(f"a label map of the image's shape {image.shape}", f"shape {lab.shape}", ref.label,
                             "re-export the label on the image's grid")
        if not lab.same_geometry(image, atol=1e-2):
            if lab.source.format in ("png", "tiff", "gif", "jpeg", "bmp") or image.source.format in ("png", "tiff", "gif", "jpeg", "bmp"):
                lab = lab.with_array(lab.array, spacing=image.spacing, origin=image.origin, direction=image.direction)
            else:
                raise user_error("a label map with the image's spacing/origin/direction", "a different geometry", ref.label,
                                 "resample the label onto the image grid (nearest neighbour)")
        label = lab
    elif with_label and ref.class_label is not None:
        label = ref.class_label
    roi = None
    if ref.roi is not None:
        r = read_label_map(ref.roi, binary=True)
        roi = r.with_array(r.array, spacing=image.spacing, origin=image.origin, direction=image.direction) if r.shape == image.shape else None
    names = spec.channel_names if len(spec.channel_names) == image.num_channels else (
        ("R", "G", "B") if image.num_channels == 3 and image.source.format in ("png", "tiff", "jpeg", "bmp", "gif") else ()
    )
    return Case(case_id=ref.case_id, image=image, channel_names=names, label=label, mask=roi,
                meta={"image": str(ref.images[0])})



def read_mask(path: Path, *, binary_ok: bool) -> tuple[np.ndarray, Image]:
    """Read a label map as ``(*spatial)`` integers, with raster masks stored as 0/255 turned into 0/1.

    A raster file (PNG, GIF, TIFF, ...) whose largest value is 255 is a binary mask (anti-aliased edges are
    thresholded at 128) when ``binary_ok`` (the labels are unknown or are ``{1}``); label values are
    kept otherwise.

    Returns:
        ``(array (*spatial), image (1, *spatial))``.
    """
    image = read_label_map(path, binary=False)
    arr = image.array[0]
    if binary_ok and image.is_raster and arr.size and int(arr.max()) == 255:
        arr = (arr > 127).astype(np.uint8)
    return arr, image
