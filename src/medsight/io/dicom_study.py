"""Study folders: every series and object of a folder tree or DICOMDIR, what each is, and which one to read.

:func:`scan_study` reads the headers of a folder (searched recursively), a DICOMDIR (through pydicom's FileSet) or
one file, and sorts what it finds:

* **image series**, grouped by SeriesInstanceUID, each with a *kind*: ``"image"``; ``"localizer"`` (ImageType
  LOCALIZER, a SeriesDescription such as localizer/scout/survey/topogram/3-plane, or a single-slice series more than
  45 degrees from the study's main series); ``"secondary capture"`` (SOP class 1.2.840.10008.5.1.4.1.1.7*: screen
  shots, dose screens). Each carries the spacing and size of the volume medsight reads and its irregularities
  (gaps, uneven spacing, tilt; :mod:`medsight.io.dicom_regrid` says what reading does about them);
* **non-image objects** (:class:`ObjectInfo`): SEG, RTSTRUCT, RTDOSE/RTPLAN, SR (dose reports), presentation
  states, key objects, encapsulated documents, with the series they reference. SEG and RTSTRUCT are listed as
  objects, never read as images;
* **skipped files**: vendor index files and manifests (DICOMDIR, DIRFILE, LOCKFILE, VERSION, .txt/.xml,
  thumbnails), DICOM-encoded index files recognised from their content, other non-DICOM files.

None of these fails a scan; each kind gets one note (:meth:`StudyListing.notes`). :func:`choose_series` applies the
selection rule of ``read_image``/``medsight convert``/``predict`` (see its docstring).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import UID

from medsight.errors import MedsightError, require_exists, user_error
from medsight.io.dicom_files import SKIP_KINDS, dicomdir_files, find_dicom_files, is_dicom_file, is_dicomdir
from medsight.io.dicom_geometry import (
    Frame,
    StackGeometry,
    axes_from_orientation,
    frame_from_header,
    multiframe_frames,
    stack_geometry,
)
from medsight.io.dicom_header import FileHeader, get_str, read_dataset, scan_header
from medsight.io.dicom_regrid import SeriesGrid, plan_grid

#: SOP class UID (or prefix ending in ".") -> object kind. Instances of these classes are never read as images.
OBJECT_CLASSES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.5.1.4.1.1.66.4", "SEG"), ("1.2.840.10008.5.1.4.1.1.66.7", "SEG"),
    ("1.2.840.10008.5.1.4.1.1.66.5", "surface SEG"), ("1.2.840.10008.5.1.4.1.1.66.1", "REG"),
    ("1.2.840.10008.5.1.4.1.1.66.3", "REG"), ("1.2.840.10008.5.1.4.1.1.66.2", "FID"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data"), ("1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "RTDOSE"), ("1.2.840.10008.5.1.4.1.1.481.", "RTPLAN/RECORD"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "KO"), ("1.2.840.10008.5.1.4.1.1.88.", "SR"),
    ("1.2.840.10008.5.1.4.1.1.11.", "PR"), ("1.2.840.10008.5.1.4.1.1.104.", "DOC"),
    ("1.2.840.10008.5.1.4.1.1.9.", "waveform"),
)  # fmt: skip
_RT_IMAGE = "1.2.840.10008.5.1.4.1.1.481.1"  # RT Image is an image
OBJECT_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTDOSE", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "REG", "DOC", "FID"})
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_LOCALIZER_WORDS = re.compile(r"locali[sz]er|scout|survey|topogram|scanogram|surview|\b(3|tri)[- ]?pl(ane)?\b", re.I)
_ORTHOGONAL_COS = math.cos(math.radians(45.0))
_OBJECT_TAGS = (
    "ReferencedSeriesSequence", "ReferencedFrameOfReferenceSequence", "SegmentSequence", "StructureSetROISequence",
    "CurrentRequestedProcedureEvidenceSequence", "ReferencedInstanceSequence",
)  # fmt: skip
_KIND_NOTES = {"localizer": "localizer/scout series", "secondary capture": "secondary capture series"}


def object_kind(header: FileHeader) -> str | None:
    """The object kind of a non-image instance (``"SEG"``, ``"RTSTRUCT"``, ``"SR"``...), ``None`` for images."""
    sop = header.sop_class
    if sop and sop != _RT_IMAGE:
        for uid, kind in OBJECT_CLASSES:
            if sop == uid or (uid.endswith(".") and sop.startswith(uid)):
                return kind
    if header.modality.upper() in OBJECT_MODALITIES:
        return header.modality.upper()
    return None if header.is_image else "non-image"


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder. Holds no patient identifiers.

    Attributes:
        series_uid: SeriesInstanceUID (``""`` when the files have none).
        modality: Modality (``"CT"``, ``"MR"``...).
        description: SeriesDescription.
        num_files: number of files.
        num_frames: number of 2D frames (slices) over all files.
        rows, columns: image size of the first image file.
        folder: the deepest folder holding all of the series' files.
        study_uid: StudyInstanceUID.
        series_number: SeriesNumber, or ``None``.
        kind: ``"image"``, ``"localizer"`` or ``"secondary capture"`` (module docstring).
        spacing: ``(slice, row, column)`` mm of the volume medsight reads (``(row, column)`` for a 2D image).
        shape: ``(slices, rows, columns)`` of that volume (larger than the recorded stack when reconstructed).
        irregularities: missing slices, uneven spacing, gantry tilt (empty for a regular stack).
        reconstruction: what reading does about them (empty for a regular stack).
        problem: why the series cannot be read (several orientations, duplicate positions...), else ``""``.
    """

    series_uid: str
    modality: str
    description: str
    num_files: int
    num_frames: int
    rows: int
    columns: int
    folder: str
    study_uid: str
    series_number: int | None = None
    kind: str = "image"
    spacing: tuple[float, ...] = ()
    shape: tuple[int, ...] = ()
    irregularities: tuple[str, ...] = ()
    reconstruction: str = ""
    problem: str = ""

    def summary(self) -> str:
        """One line: ``UID  MODALITY  #N 'description'  [kind]  F files, S frames, ROWSxCOLUMNS, spacing ...``."""
        size = f"{self.rows}x{self.columns}" if self.rows else "no pixel data"
        number = f"#{self.series_number} " if self.series_number is not None else ""
        kind = f"[{self.kind}]  " if self.kind != "image" else ""
        spacing = f", spacing {' x '.join(f'{v:.4g}' for v in self.spacing)} mm" if self.spacing else ""
        state = "  (irregular: reconstructed)" if self.reconstruction else ""
        state = f"  (cannot be read: {self.problem.split(';')[0]})" if self.problem else state
        return (
            f"{self.series_uid or '(no SeriesInstanceUID)'}  {self.modality or '?'}  {number}{self.description!r}  "
            f"{kind}{self.num_files} files, {self.num_frames} frames, {size}{spacing}{state}"
        )


@dataclass(frozen=True)
class ObjectInfo:
    """A non-image DICOM object (SEG, RTSTRUCT, SR...). Holds no patient identifiers.

    Attributes:
        kind: ``"SEG"``, ``"RTSTRUCT"``, ``"RTDOSE"``, ``"SR"``, ``"PR"``, ``"KO"``, ``"DOC"``, ... or ``"non-image"``.
        sop_class: the SOP class name (or UID).
        path: the file.
        series_uid, study_uid, modality, description: its own series.
        references: SeriesInstanceUIDs it references (the image series a SEG or RTSTRUCT was drawn on).
        frame_of_reference: FrameOfReferenceUID it is drawn in (RTSTRUCT's referenced frame; SEG's own).
        contents: segment labels (SEG) or ROI names (RTSTRUCT).
    """

    kind: str
    sop_class: str
    path: str
    series_uid: str
    study_uid: str
    modality: str
    description: str
    references: tuple[str, ...] = ()
    frame_of_reference: str = ""
    contents: tuple[str, ...] = ()

    def summary(self, series: Sequence[SeriesInfo] = ()) -> str:
        """One line: kind, file, what it holds and which series it references (and whether they are present)."""
        known = {s.series_uid: s for s in series}
        refs = []
        for uid in self.references:
            s = known.get(uid)
            refs.append(f"{uid} ({s.modality} #{s.series_number} {s.description!r})" if s else f"{uid} (not present)")
        content = f"  {len(self.contents)} {'segments' if self.kind == 'SEG' else 'ROIs'}: {', '.join(self.contents)}" \
            if self.contents else ""
        ref_text = f"  references {'; '.join(refs)}" if refs else ""
        return f"{self.kind}  {Path(self.path).name}  {self.description!r}{content}{ref_text}"


@dataclass(frozen=True)
class StudyListing:
    """Everything a scan found (see the module docstring).

    Attributes:
        path: the folder, DICOMDIR or file scanned.
        series: the image series, ordered by study, SeriesNumber and UID.
        objects: the non-image objects, in path order.
        skipped: skipped files by kind (``"index"``, ``"non-dicom"``).
        missing: files a DICOMDIR lists that are not there.
    """

    path: str
    series: tuple[SeriesInfo, ...]
    objects: tuple[ObjectInfo, ...] = ()
    skipped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    def notes(self, *, read: str | None = None) -> list[str]:
        """One note per kind of thing skipped (and, with ``read`` = the series read, per kind of series left out)."""
        out = []
        for kind, words in SKIP_KINDS.items():
            files = self.skipped.get(kind, ())
            if files:
                names = sorted({Path(f).name for f in files})
                out.append(f"skipped {len(files)} {words} in {self.path} (e.g. {', '.join(names[:3])})")
        if self.missing:
            out.append(f"the DICOMDIR {self.path} lists {len(self.missing)} file(s) that are missing (e.g. "
                       f"{self.missing[0]}); read what is there")
        if read is not None:
            for kind, words in _KIND_NOTES.items():
                left = [s for s in self.series if s.kind == kind and s.series_uid != read]
                if left:
                    out.append(f"skipped {len(left)} {words} ({', '.join(repr(s.description) for s in left[:3])})")
            objects = [o for o in self.objects if o.series_uid != read]  # the series' own: read_series warns
            if objects:
                kinds = Counter(o.kind for o in objects)
                listed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                out.append(f"skipped {len(objects)} non-image object(s) ({listed}); medsight info lists them")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"path", "series": [...], "objects": [...], "skipped": {kind: [paths]}, "missing"}``."""
        return {
            "path": self.path,
            "series": [asdict(s) for s in self.series],
            "objects": [asdict(o) for o in self.objects],
            "skipped": {k: list(v) for k, v in self.skipped.items()},
            "missing": list(self.missing),
        }


@dataclass(frozen=True)
class StudyScan:
    """A :class:`StudyListing` and the headers behind it (``groups``: series UID -> headers of its files)."""

    listing: StudyListing
    groups: dict[str, list[FileHeader]]


def _files(path: Path) -> tuple[list[Path], dict[str, list[Path]], list[str]]:
    skipped: dict[str, list[Path]] = {}
    if path.is_dir():
        files = find_dicom_files(path, skipped=skipped)
        if not files:
            raise user_error(
                "a folder holding DICOM files",
                "no DICOM files",
                path,
                "point at the folder that holds the series (files with the DICM marker or .dcm files)",
            )
        return files, skipped, []
    if is_dicomdir(path):
        files, missing = dicomdir_files(path)
        if not files:
            raise user_error("a DICOMDIR that lists image files", "none of its files present", path,
                             "copy the whole file-set (the DICOMDIR and the folders beside it)")
        return files, skipped, missing
    if not is_dicom_file(path):
        raise user_error(
            "a DICOM file",
            "a file without the DICM marker that pydicom cannot read as DICOM",
            path,
            "check that it is a DICOM file (not text, ZIP or an image export)",
        )
    return [path], skipped, []


def frames_of(headers: Sequence[FileHeader]) -> list[Frame]:
    """The frames of image files (multi-frame files expanded with their per-frame geometry)."""
    frames: list[Frame] = []
    for h in headers:
        if h.frames > 1:
            frames += multiframe_frames(read_dataset(h.path, stop_before_pixels=True), h)
        else:
            frames.append(frame_from_header(h))
    return frames


def is_planar(frames: Sequence[Frame]) -> bool:
    """A lone frame without position or orientation: a 2D image (X-ray)."""
    return len(frames) == 1 and (frames[0].position is None or frames[0].orientation is None)


def grid_of(frames: Sequence[Frame], geometry: StackGeometry, headers: Sequence[FileHeader], where: str) -> SeriesGrid:
    """The :class:`SeriesGrid` of sorted frames, with each slice's file, frame number and SOPInstanceUID."""
    by_path = {h.path: h for h in headers}
    ordered = [frames[i] for i in geometry.order]
    first = headers[0]
    return plan_grid(
        geometry, int(first.rows or 0), int(first.columns or 0), where=where,
        files=[str(f.path) for f in ordered], frames=[f.index for f in ordered],
        sop_instances=[by_path[f.path].sop_instance for f in ordered],
    )


def _series_info(headers: Sequence[FileHeader], kind: str) -> SeriesInfo:
    first = headers[0]
    sizes = Counter((h.rows or 0, h.columns or 0) for h in headers)
    rows, cols = sizes.most_common(1)[0][0]
    folder = os.path.commonpath([str(h.path.parent) for h in headers])
    info = SeriesInfo(
        series_uid=first.series_uid, modality=first.modality, description=first.description,
        num_files=len(headers), num_frames=sum(h.frames for h in headers), rows=rows, columns=cols,
        folder=folder, study_uid=first.study_uid, series_number=first.series_number, kind=kind,
    )
    if len(sizes) > 1:
        return _replace(info, problem=f"{len(sizes)} image sizes in one series")
    try:
        frames = frames_of(headers)
        if is_planar(frames):
            ps = frames[0].pixel_spacing or (1.0, 1.0)
            return _replace(info, spacing=tuple(ps), shape=(rows, cols))
        geometry = stack_geometry(frames, where=folder)
        grid = grid_of(frames, geometry, headers, folder)
    except MedsightError as exc:
        return _replace(info, problem=str(exc))
    return _replace(info, spacing=grid.regular.spacing, shape=grid.regular.shape,
                    irregularities=grid.irregularities, reconstruction=grid.summary())


def _replace(info: SeriesInfo, **changes: Any) -> SeriesInfo:
    return dataclasses.replace(info, **changes)


def _kind(headers: Sequence[FileHeader]) -> str:
    first = headers[0]
    if first.sop_class.startswith(SECONDARY_CAPTURE):
        return "secondary capture"
    if any("LOCALIZER" in h.image_type for h in headers) or _LOCALIZER_WORDS.search(first.description or ""):
        return "localizer"
    return "image"


def _normal(headers: Sequence[FileHeader]) -> np.ndarray | None:
    orientation = next((h.orientation for h in headers if h.orientation is not None), None)
    return axes_from_orientation(orientation)[2] if orientation is not None else None


def _orthogonal_singles(groups: dict[str, list[FileHeader]], kinds: dict[str, str]) -> None:
    """Mark single-slice series more than 45 degrees from their study's main series as localizers."""
    by_study: dict[str, list[str]] = {}
    for uid, hs in groups.items():
        by_study.setdefault(hs[0].study_uid, []).append(uid)
    for uids in by_study.values():
        main = max(uids, key=lambda u: sum(h.frames for h in groups[u]))
        main_normal = _normal(groups[main])
        if main_normal is None or sum(h.frames for h in groups[main]) < 2:
            continue
        for uid in uids:
            hs = groups[uid]
            normal = _normal(hs)
            if kinds[uid] == "image" and sum(h.frames for h in hs) == 1 and normal is not None \
                    and abs(float(normal @ main_normal)) < _ORTHOGONAL_COS:
                kinds[uid] = "localizer"


def _object_info(header: FileHeader, kind: str) -> ObjectInfo:
    ds = read_dataset(header.path, stop_before_pixels=True, specific_tags=_OBJECT_TAGS)
    refs: list[str] = []
    frames: list[str] = []
    for element in ds.iterall():
        if element.keyword == "SeriesInstanceUID" and element.value and str(element.value) not in refs:
            refs.append(str(element.value))
        elif element.keyword == "FrameOfReferenceUID" and element.value:
            frames.append(str(element.value))
    contents: list[str] = []
    for item in ds.get("SegmentSequence", None) or []:
        contents.append(get_str(item, "SegmentLabel") or f"segment {get_str(item, 'SegmentNumber')}")
    for item in ds.get("StructureSetROISequence", None) or []:
        contents.append(get_str(item, "ROIName") or f"ROI {get_str(item, 'ROINumber')}")
    refs = [r for r in refs if r != header.series_uid]
    sop = header.sop_class
    return ObjectInfo(
        kind=kind, sop_class=(UID(sop).name or sop) if sop else "", path=str(header.path),
        series_uid=header.series_uid, study_uid=header.study_uid, modality=header.modality,
        description=header.description, references=tuple(refs),
        frame_of_reference=frames[0] if frames else header.frame_of_reference, contents=tuple(contents),
    )


def scan_study(path: str | Path) -> StudyScan:
    """Scan a folder tree, a DICOMDIR or one DICOM file (see the module docstring).

    Raises:
        MedsightError: no DICOM files; a file that looks like DICOM but cannot be parsed, or is truncated (named).
    """
    p = require_exists(path, "DICOM file, folder or DICOMDIR")
    files, skipped, missing = _files(p)
    groups: dict[str, list[FileHeader]] = {}
    objects: list[ObjectInfo] = []
    for f in files:
        header = scan_header(f)
        if header is None:
            skipped.setdefault("index", []).append(f)
            continue
        groups.setdefault(header.series_uid, []).append(header)
    kinds: dict[str, str] = {}
    image_groups: dict[str, list[FileHeader]] = {}
    for uid, hs in groups.items():
        images = [h for h in hs if object_kind(h) is None]
        for h in hs:
            kind = object_kind(h)
            if kind is not None:
                objects.append(_object_info(h, kind))
        if images:
            image_groups[uid] = images
            kinds[uid] = _kind(images)
    _orthogonal_singles(image_groups, kinds)
    infos = sorted(
        (_series_info(hs, kinds[uid]) for uid, hs in image_groups.items()),
        key=lambda s: (s.study_uid, s.series_number is None, s.series_number or 0, s.series_uid),
    )
    listing = StudyListing(
        path=str(p), series=tuple(infos), objects=tuple(sorted(objects, key=lambda o: o.path)),
        skipped={k: tuple(str(f) for f in v) for k, v in skipped.items()}, missing=tuple(missing),
    )
    return StudyScan(listing=listing, groups=groups)


def list_study(path: str | Path) -> StudyListing:
    """The series, objects and skipped files of a folder tree, DICOMDIR or file (:func:`scan_study`)."""
    return scan_study(path).listing


def _choice(info: SeriesInfo) -> str:
    kind = f", {info.kind}" if info.kind != "image" else ""
    number = f"#{info.series_number}, " if info.series_number is not None else ""
    return f"{info.series_uid or '(none)'} ({info.modality or '?'}, {number}{info.description!r}, {info.num_files} files{kind})"


def match_series(series: Sequence[SeriesInfo], selector: str) -> list[SeriesInfo]:
    """The series a ``--series`` value names: its SeriesInstanceUID; else, for digits, its SeriesNumber; else its
    SeriesDescription (case and surrounding spaces ignored)."""
    exact = [s for s in series if s.series_uid == selector]
    if exact:
        return exact
    text = selector.strip()
    if text.isdigit():
        by_number = [s for s in series if s.series_number == int(text)]
        if by_number:
            return by_number
    return [s for s in series if s.description.strip().casefold() == text.casefold()]


def choose_series(listing: StudyListing, selector: str | None, where: Path) -> SeriesInfo:
    """The series ``read_image`` reads from a folder, DICOMDIR or file.

    The rule: with ``selector`` (``--series``), the one series it names (:func:`match_series`; a value that names
    several, e.g. a description shared by two series, is refused with their list). Without it, the one series of
    kind ``"image"`` (localizers, scouts and secondary captures are left out, as are non-image objects); when there
    is none, the one series of any kind. Several candidates are refused in one line that lists them with their
    UID, SeriesNumber and description, and says to pass ``--series``.

    Raises:
        MedsightError: no image series; several candidates; a selector that names none or several.
    """
    series = list(listing.series)
    if selector is not None:
        found = match_series(series, selector)
        if len(found) == 1:
            return found[0]
        if found:
            raise MedsightError(
                f"Expected one series named {selector!r} in {where}, got {len(found)}: "
                + "; ".join(_choice(s) for s in found) + "; pass its SeriesInstanceUID with --series"
            )
        close = difflib.get_close_matches(selector, [s.series_uid for s in series], n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise MedsightError(
            f"Expected a SeriesInstanceUID, SeriesNumber or SeriesDescription present in {where}, got {selector!r}; "
            f"{hint}choose one of: " + ", ".join(_choice(s) for s in series)
        )
    if not series:
        example = Path(listing.objects[0].path).name if listing.objects else "?"
        kinds = sorted({o.kind for o in listing.objects}) or ["SR/KO/PR"]
        raise user_error(
            "DICOM files with pixel data",
            f"only non-image objects ({'/'.join(kinds)}; e.g. {example})",
            where,
            "point at the folder of an image series (read a SEG or RTSTRUCT with the medsight commands for them)",
        )
    candidates = [s for s in series if s.kind == "image"] or series
    if len(candidates) > 1:
        raise MedsightError(
            f"Expected one DICOM series, got {len(candidates)} series in {where}: "
            + "; ".join(_choice(s) for s in candidates)
            + "; pass --series UID|NUMBER|DESCRIPTION (series_uid=... in Python) to choose one"
        )
    return candidates[0]


__all__ = [
    "OBJECT_CLASSES",
    "ObjectInfo",
    "SeriesInfo",
    "StudyListing",
    "StudyScan",
    "choose_series",
    "frames_of",
    "grid_of",
    "is_planar",
    "list_study",
    "match_series",
    "object_kind",
    "scan_study",
]
