"""``medsight dataset init``: an editable ``dataset.json`` inferred from a folder of images and label maps (file
patterns, labels, channel names)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medsight.data.dataset import file_stem
from medsight.data.spec import DatasetSpec
from medsight.errors import MedsightError, user_error
from medsight.io import read_image


# ---------------------------------------------------------------------------------------------- dataset.json
def _pair_patterns(pairs: list[tuple[str, str]]) -> tuple[str, str] | None:
    """``("{id}_training", "{id}_manual1")`` when every (image stem, other stem) pair follows one rule."""
    found = set()
    for img, other in pairs:
        prefix = os.path.commonprefix([img, other])
        if prefix == img:
            cut = len(img)
        else:
            cut = max(prefix.rfind(c) for c in "_-.")
            if cut <= 0:
                return None
        found.add(("{id}" + img[cut:], "{id}" + other[cut:]))
    return found.pop() if len(found) == 1 else None


def _other_pattern(image_pattern: str, pairs: list[tuple[str, str]]) -> str | None:
    """The pattern of the other file given the image pattern, when all pairs agree."""
    head, _, tail = image_pattern.partition("{id}")
    found = set()
    for img, other in pairs:
        if not (img.startswith(head) and img.endswith(tail)) or len(img) < len(head) + len(tail) + 1:
            return None
        case_id = img[len(head): len(img) - len(tail)]
        pos = other.find(case_id)
        if pos < 0:
            return None
        found.add(other[:pos] + "{id}" + other[pos + len(case_id):])
    return found.pop() if len(found) == 1 else None


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def infer_spec_json(spec: DatasetSpec, *, labels: dict[str, int] | None = None) -> dict[str, Any]:
    """A medsight ``dataset.json`` (``"layout": "folders"``) that reproduces ``spec``'s case matching.

    The result is meant to be written, edited (label names, channel names) and read back by
    :func:`~medsight.data.dataset.load_dataset`. File-name patterns (``"{id}_training"``) are written when
    images and labels do not share stems, so the matching no longer depends on guessing.

    The dataset folder is written as an absolute ``"root"``, so the file works wherever it is saved; edit
    it when the data move.

    Args:
        spec: a folder-pairs dataset (``layout == "folders"``).
        labels: label name -> value to write instead of the spec's (inferred) labels.

    Raises:
        MedsightError: when ``spec`` is not a folder-pairs dataset.
    """
    if spec.layout != "folders":
        raise user_error("a folder of image/label pairs", f"a dataset of layout {spec.layout!r}", spec.root,
                         "'dataset init' writes specs for folder pairs only; nnU-Net/MSD/CSV/NPZ datasets are already "
                         "described by their own files")
    root = Path(spec.root)
    images_dir = Path(spec.extra.get("images_dir") or spec.cases[0].images[0].parent)
    out: dict[str, Any] = {"name": spec.name, "layout": "folders", "root": str(root.resolve()),
                           "images_dir": _relative(images_dir, root)}
    labelled = [r for r in spec.cases if r.label is not None and r.label.exists()]
    if spec.extra.get("labels_dir"):
        out["labels_dir"] = _relative(Path(spec.extra["labels_dir"]), root)
    rois = [r for r in spec.cases if r.roi is not None]
    if rois:
        out["roi_dir"] = _relative(rois[0].roi.parent, root)  # type: ignore[union-attr]
    label_pairs = [(file_stem(r.images[0]), file_stem(r.label)) for r in labelled]  # type: ignore[arg-type]
    roi_pairs = [(file_stem(r.images[0]), file_stem(r.roi)) for r in rois]  # type: ignore[arg-type]
    image_pattern = None
    if any(a != b for a, b in label_pairs):
        found = _pair_patterns(label_pairs)
        if found is not None:
            image_pattern = found[0]
            out["image_pattern"], out["label_pattern"] = found
    if any(a != b for a, b in roi_pairs):
        roi_pattern = _other_pattern(image_pattern or "{id}", roi_pairs)
        if roi_pattern is not None:
            out["image_pattern"] = image_pattern or "{id}"
            out["roi_pattern"] = roi_pattern
    out["labels"] = dict(labels) if labels is not None else dict(spec.labels)
    out["channel_names"] = {str(i): n for i, n in enumerate(spec.channel_names or _guess_channel_names(spec))}
    return out


def _guess_channel_names(spec: DatasetSpec) -> tuple[str, ...]:
    """Channel names from the first readable image: R/G/B for colour raster files, else the modality or "image"."""

    for ref in spec.cases[:5]:
        try:
            image = read_image(ref.images[0])
        except (MedsightError, OSError):
            continue
        if image.num_channels == 3 and image.is_raster:
            return ("R", "G", "B")
        if image.num_channels == 1:
            return (image.source.modality or "image",)
        return tuple(f"ch{i}" for i in range(image.num_channels))
    return ("image",)
