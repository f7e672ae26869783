"""A hospital DICOM export, scanned: every file classified, image series grouped, SEG/RTSTRUCT objects paired.

:func:`scan_export` walks a folder tree (headers only, pixels are not read): it reads the ``DICOMDIR`` indexes it
finds (through :mod:`pydicom.fileset`, to note what they list and what is missing) and every other file, and sorts
each file into one kind: an image of a series, a DICOM-SEG, an RTSTRUCT, or something an import leaves out with a
reason (non-DICOM file, DICOMDIR index, secondary capture, structured report, presentation state, RT dose/plan,
localizer, unreadable header, ...). :func:`pair_objects` then gives each SEG and RTSTRUCT its image series:

1. the series it references (SEG: ``ReferencedSeriesSequence``; RTSTRUCT: ``ReferencedFrameOfReferenceSequence``
   -> ``RTReferencedStudySequence`` -> ``RTReferencedSeriesSequence``); a referenced series that is not in the
   export leaves the object out ("referenced series absent"), it is never guessed;
2. without a series reference, the series holding the instances it references (SEG: ``SourceImageSequence`` of
   its frames; RTSTRUCT: ``ContourImageSequence``);
3. without either, the one image series of its study in its frame of reference; two or more candidates leave the
   object out ("two candidate image series").

Nothing here raises for a bad file: each problem becomes the object's reason, so one broken file never stops an
import. Patient names and IDs are never read into these records.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom.dataset import Dataset

from medsight.errors import MedsightError, require_exists, user_error
from medsight.io.dicom_files import dicomdir_files, find_dicom_files, is_dicomdir
from medsight.io.dicom_header import read_dataset
from medsight.io.dicom_seg import SEG_SOP_CLASS_UIDS
from medsight.io.rtstruct import RTSTRUCT_SOP_CLASS_UID

logger = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

IMAGE, SEG, RTSTRUCT = "image", "SEG", "RTSTRUCT"
LABEL_KINDS = (SEG, RTSTRUCT)

#: SOP class UID (or prefix ending in '.') -> the kind an import leaves out.
_SKIPPED_SOP_CLASSES: tuple[tuple[str, str], ...] = (
    (DICOMDIR_SOP_CLASS, "DICOMDIR index"),
    ("1.2.840.10008.5.1.4.1.1.7", "secondary capture"),
    ("1.2.840.10008.5.1.4.1.1.7.", "secondary capture"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "key object selection"),
    ("1.2.840.10008.5.1.4.1.1.88.", "structured report"),
    ("1.2.840.10008.5.1.4.1.1.11.", "presentation state"),
    ("1.2.840.10008.5.1.4.1.1.104.", "encapsulated document"),
    ("1.2.840.10008.5.1.4.1.1.481.1", "RT image"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "RT dose"),
    ("1.2.840.10008.5.1.4.1.1.481.5", "RT plan"),
    ("1.2.840.10008.5.1.4.1.1.481.8", "RT plan"),
    ("1.2.840.10008.5.1.4.1.1.481.", "RT treatment record"),
    ("1.2.840.10008.5.1.4.1.1.66.5", "surface segmentation"),
    ("1.2.840.10008.5.1.4.1.1.66.1", "spatial registration"),
    ("1.2.840.10008.5.1.4.1.1.66.3", "spatial registration"),
    ("1.2.840.10008.5.1.4.1.1.66.2", "spatial fiducials"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data"),
    ("1.2.840.10008.5.1.4.1.1.67", "real world value mapping"),
    ("1.2.840.10008.5.1.4.1.1.9.", "waveform"),
)
_SKIPPED_MODALITIES = {"SR": "structured report", "KO": "key object selection", "PR": "presentation state",
                       "DOC": "encapsulated document", "REG": "spatial registration", "RTDOSE": "RT dose",
                       "RTPLAN": "RT plan", "RTRECORD": "RT treatment record"}


@dataclass(frozen=True)
class DicomObject:
    """One file of the export, classified. Holds no patient identifiers.

    Attributes:
        path: the file.
        kind: ``"image"``, ``"SEG"``, ``"RTSTRUCT"``, or the kind an import leaves out (``"secondary capture"``...).
        study_uid, series_uid, sop_uid, sop_class, modality, frame_of_reference: from the header (``""`` if absent).
        series_number: SeriesNumber or ``None``.
        referenced_series: the series UIDs a SEG/RTSTRUCT references.
        referenced_instances: the SOP instance UIDs its frames/contours reference.
        referenced_frames: the frame of reference UIDs an RTSTRUCT references (a SEG's own FrameOfReferenceUID).
        structures: ROI names (RTSTRUCT) or segment labels (SEG), in file order.
        alternatives: structure name -> a second name to match it by (a SEG segment's coded property type, with
            its left/right modifier: ``"Kidney Left"``).
        created: content (SEG) or structure set (RTSTRUCT) date and time, ``YYYYMMDDHHMMSS``; newer objects win
            when two give the same structure to one series.
        reason: why the file is left out (kinds other than image/SEG/RTSTRUCT).
    """

    path: Path
    kind: str
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    sop_class: str = ""
    modality: str = ""
    frame_of_reference: str = ""
    series_number: int | None = None
    referenced_series: tuple[str, ...] = ()
    referenced_instances: tuple[str, ...] = ()
    referenced_frames: tuple[str, ...] = ()
    structures: tuple[str, ...] = ()
    alternatives: tuple[tuple[str, str], ...] = ()
    created: str = ""
    reason: str = ""


@dataclass
class ImageSeries:
    """The image files of one series (and what pairing gave it)."""

    key: str
    study_uid: str
    series_uid: str
    modality: str
    series_number: int | None
    files: list[Path] = field(default_factory=list)
    sop_uids: set[str] = field(default_factory=set)
    frames_of_reference: set[str] = field(default_factory=set)
    labels: list[DicomObject] = field(default_factory=list)


@dataclass
class LabelPairing:
    """A SEG/RTSTRUCT object and the image series it belongs to (``series_key`` ``None``: left out)."""

    obj: DicomObject
    series_key: str | None
    reason: str


@dataclass
class ExportScan:
    """What :func:`scan_export` found under ``root``."""

    root: Path
    objects: list[DicomObject]
    notes: list[str]
    dicomdirs: list[Path]

    def of_kind(self, *kinds: str) -> list[DicomObject]:
        return [o for o in self.objects if o.kind in kinds]

    def skipped_kinds(self) -> Counter[str]:
        """Kind -> number of files an import leaves out whatever the pairing."""
        return Counter(o.kind for o in self.objects if o.kind not in (IMAGE, *LABEL_KINDS))


def _str(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except (ValueError, TypeError, KeyError, AttributeError):  # a malformed element reads as absent
        return ""
    return str(value or "").strip()


def _items(ds: Dataset | None, keyword: str) -> list[Dataset]:
    if ds is None:
        return []
    try:
        return list(ds.get(keyword, None) or [])
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


def sop_class_of(ds: Dataset) -> str:
    """SOPClassUID, or the file meta's MediaStorageSOPClassUID when the dataset's is empty (anonymisers do that)."""
    value = _str(ds, "SOPClassUID")
    meta = getattr(ds, "file_meta", None)
    return value or (_str(meta, "MediaStorageSOPClassUID") if meta is not None else "")


def _skipped_kind(sop_class: str, modality: str) -> str | None:
    for uid, kind in _SKIPPED_SOP_CLASSES:
        if sop_class == uid or (uid.endswith(".") and sop_class.startswith(uid)):
            return kind
    return _SKIPPED_MODALITIES.get(modality.upper())


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _seg_references(ds: Dataset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    series = [_str(item, "SeriesInstanceUID") for item in _items(ds, "ReferencedSeriesSequence")]
    for study in _items(ds, "StudiesContainingOtherReferencedInstancesSequence"):
        series += [_str(item, "SeriesInstanceUID") for item in _items(study, "ReferencedSeriesSequence")]
    instances = [_str(src, "ReferencedSOPInstanceUID") for src in _items(ds, "SourceImageSequence")]
    groups = _items(ds, "PerFrameFunctionalGroupsSequence") + _items(ds, "SharedFunctionalGroupsSequence")
    for group in groups:
        for derivation in _items(group, "DerivationImageSequence"):
            instances += [_str(src, "ReferencedSOPInstanceUID") for src in _items(derivation, "SourceImageSequence")]
    return _unique(series), _unique(instances)


def _seg_structures(ds: Dataset) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    names, alternatives = [], []
    for segment in _items(ds, "SegmentSequence"):
        label = str(segment.get("SegmentLabel", "") or "")  # exact, as the SEG reader names it
        names.append(label)
        types = _items(segment, "SegmentedPropertyTypeCodeSequence")
        meaning = _str(types[0], "CodeMeaning") if types else ""
        modifiers = _items(types[0], "SegmentedPropertyTypeModifierCodeSequence") if types else []
        side = _str(modifiers[0], "CodeMeaning") if modifiers else ""
        if meaning:
            alternatives.append((label, f"{meaning} {side}".strip()))
    return _unique(names), tuple(alternatives)


def _rtstruct_references(ds: Dataset) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    series, frames, instances = [], [], []
    for frame in _items(ds, "ReferencedFrameOfReferenceSequence"):
        frames.append(_str(frame, "FrameOfReferenceUID"))
        for study in _items(frame, "RTReferencedStudySequence"):
            for item in _items(study, "RTReferencedSeriesSequence"):
                series.append(_str(item, "SeriesInstanceUID"))
                instances += [_str(c, "ReferencedSOPInstanceUID") for c in _items(item, "ContourImageSequence")]
    frames += [_str(roi, "ReferencedFrameOfReferenceUID") for roi in _items(ds, "StructureSetROISequence")]
    for roi in _items(ds, "ROIContourSequence"):
        for contour in _items(roi, "ContourSequence"):
            instances += [_str(c, "ReferencedSOPInstanceUID") for c in _items(contour, "ContourImageSequence")]
    return _unique(series), _unique(frames), _unique(instances)


def classify(path: Path, ds: Dataset) -> DicomObject:
    """Classify one parsed file (header only) as an image, a SEG, an RTSTRUCT or a kind to leave out."""
    sop_class = sop_class_of(ds)
    meta = getattr(ds, "file_meta", None)
    sop_uid = _str(ds, "SOPInstanceUID") or (_str(meta, "MediaStorageSOPInstanceUID") if meta is not None else "")
    modality = _str(ds, "Modality")
    try:
        number = int(ds.get("SeriesNumber")) if ds.get("SeriesNumber") not in (None, "") else None
    except (TypeError, ValueError):
        number = None
    base = DicomObject(path=path, kind=IMAGE, study_uid=_str(ds, "StudyInstanceUID"),
                       series_uid=_str(ds, "SeriesInstanceUID"), sop_uid=sop_uid, sop_class=sop_class,
                       modality=modality, frame_of_reference=_str(ds, "FrameOfReferenceUID"), series_number=number)
    if sop_class in SEG_SOP_CLASS_UIDS or (not sop_class and modality == "SEG"):
        series, instances = _seg_references(ds)
        names, alternatives = _seg_structures(ds)
        created = _str(ds, "ContentDate") + _str(ds, "ContentTime")[:6]
        return replace(base, kind=SEG, referenced_series=series, referenced_instances=instances,
                       referenced_frames=_unique([base.frame_of_reference]), structures=names,
                       alternatives=alternatives, created=created or _str(ds, "SeriesDate"))
    if sop_class == RTSTRUCT_SOP_CLASS_UID or (not sop_class and modality == "RTSTRUCT"):
        series, frames, instances = _rtstruct_references(ds)
        names = _unique(str(roi.get("ROIName", "") or "") for roi in _items(ds, "StructureSetROISequence"))
        created = _str(ds, "StructureSetDate") + _str(ds, "StructureSetTime")[:6]
        return replace(base, kind=RTSTRUCT, referenced_series=series, referenced_instances=instances,
                       referenced_frames=frames, structures=names, created=created or _str(ds, "SeriesDate"))
    skipped = _skipped_kind(sop_class, modality)
    if skipped:
        return replace(base, kind=skipped, reason="not an image series, SEG or RTSTRUCT")
    if "Rows" not in ds or "Columns" not in ds:
        return replace(base, kind="non-image object", reason=f"no pixel data (SOP class {sop_class or '?'})")
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])] if "ImageType" in ds else []
    if "LOCALIZER" in image_type:
        return replace(base, kind="localizer", reason="a localizer (scout) image")
    return base


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (as given, when it lies elsewhere), for reports."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _skipped_objects(skipped: dict[str, list[Path]]) -> list[DicomObject]:
    out = []
    for kind, paths in skipped.items():
        for f in paths:
            if is_dicomdir(f):
                out.append(DicomObject(path=f, kind="DICOMDIR index", reason="read for its listing"))
            elif kind == "index":
                out.append(DicomObject(path=f, kind="index file", reason="a vendor index, manifest or thumbnail file "
                                       "(by its name)"))
            else:
                out.append(DicomObject(path=f, kind="non-DICOM file", reason="not a DICOM file"))
    return out


def _read_dicomdirs(dicomdirs: list[Path], root: Path, notes: list[str]) -> set[Path]:
    """The files the DICOMDIRs list (resolved); one note per DICOMDIR on what it lists and what is missing."""
    listed: set[Path] = set()
    for dicomdir in dicomdirs:
        rel = relative_path(dicomdir, root)
        try:
            files, missing = dicomdir_files(dicomdir)
        except MedsightError as exc:
            notes.append(f"DICOMDIR {rel} is unreadable as a file-set ({str(exc).split('; ')[0][:160]}); the files "
                         "beside it were read one by one")
            continue
        notes.append(f"DICOMDIR {rel}: {len(files)} file(s) listed"
                     + (f", {len(missing)} missing (e.g. {missing[0]})" if missing else ""))
        listed |= {f.resolve() for f in files}
    return listed


def export_folder(path: str | Path) -> Path:
    """The folder an export lives in: ``path`` itself, or the folder of a ``DICOMDIR`` given as the entry point."""
    p = require_exists(path, "DICOM export folder")
    return p.parent if is_dicomdir(p) else p


def scan_export(root: str | Path, *, exclude: Iterable[Path] = ()) -> ExportScan:
    """Classify every file under ``root`` (headers only); see the module docstring.

    Files are found as every medsight reader finds them (:func:`medsight.io.dicom_files.find_dicom_files`: hidden
    files, vendor index files and manifests by name, and non-DICOM files are skipped and reported), plus what a
    DICOMDIR lists.

    Args:
        root: the export folder (or its DICOMDIR).
        exclude: folders not to read (an import's own output folder when it lies inside ``root``).

    Raises:
        MedsightError: ``root`` does not exist, is not a folder, or holds no DICOM image or label object (one line).
    """
    root = export_folder(root)
    if not root.is_dir():
        raise user_error("a folder holding a DICOM export", f"the file {root.name}", root,
                         "pass the folder (the one holding the DICOMDIR or the study folders)")
    skip = [Path(p).resolve() for p in exclude]

    def kept(f: Path) -> bool:
        resolved = f.resolve()
        return not any(s == resolved or s in resolved.parents for s in skip)

    skipped: dict[str, list[Path]] = {}
    files = [f for f in find_dicom_files(root, skipped=skipped) if kept(f)]
    skipped = {kind: [f for f in paths if kept(f)] for kind, paths in skipped.items()}
    dicomdirs = [f for f in skipped.get("index", []) if is_dicomdir(f)]
    notes: list[str] = []
    listed = _read_dicomdirs(dicomdirs, root, notes)
    walked = {f.resolve() for f in files}
    unlisted = sum(1 for f in files if f.resolve() not in listed and any(d.parent in f.parents for d in dicomdirs))
    if unlisted:
        notes.append(f"{unlisted} DICOM file(s) under a DICOMDIR's folder are not listed in it; read as well")
    objects = _skipped_objects(skipped)
    for f in [*files, *sorted(p for p in listed if p not in walked)]:
        try:
            ds = read_dataset(f, stop_before_pixels=True)
        except (MedsightError, OSError) as exc:
            objects.append(DicomObject(path=f, kind="unreadable DICOM", reason=str(exc).split("; ")[0][:200]))
            continue
        objects.append(classify(f, ds))
    if not any(o.kind in (IMAGE, *LABEL_KINDS) for o in objects):
        kinds = Counter(o.kind for o in objects)
        found = ", ".join(f"{n} {k}" for k, n in kinds.most_common(4)) or "no files"
        raise user_error("DICOM image series under the export folder", found, root,
                         "pass the folder that holds the studies (or their DICOMDIR)")
    return ExportScan(root=root, objects=objects, notes=notes, dicomdirs=dicomdirs)


def _series_key(obj: DicomObject, root: Path) -> str:
    if obj.series_uid:
        return obj.series_uid
    return f"(no SeriesInstanceUID) {relative_path(obj.path.parent, root)}"


def group_series(scan: ExportScan) -> dict[str, ImageSeries]:
    """Image files grouped into series (files without SeriesInstanceUID: one series per folder)."""
    series: dict[str, ImageSeries] = {}
    for obj in scan.of_kind(IMAGE):
        key = _series_key(obj, scan.root)
        study = obj.study_uid or f"(no StudyInstanceUID) {relative_path(obj.path.parent, scan.root)}"
        entry = series.setdefault(key, ImageSeries(key=key, study_uid=study, series_uid=obj.series_uid,
                                                   modality=obj.modality, series_number=obj.series_number))
        entry.files.append(obj.path)
        if obj.sop_uid:
            entry.sop_uids.add(obj.sop_uid)
        if obj.frame_of_reference:
            entry.frames_of_reference.add(obj.frame_of_reference)
    return dict(sorted(series.items(), key=lambda kv: (kv[1].study_uid, kv[1].series_number is None,
                                                       kv[1].series_number or 0, kv[0])))


def _describe(series: list[ImageSeries]) -> str:
    return ", ".join(f"{s.series_uid or s.key} ({s.modality or '?'}, {len(s.files)} files)" for s in series)


def _pair_one(obj: DicomObject, series: dict[str, ImageSeries]) -> LabelPairing:
    if obj.referenced_series:
        found = [series[uid] for uid in obj.referenced_series if uid in series]
        missing = [uid for uid in obj.referenced_series if uid not in series]
        if not found:
            return LabelPairing(obj, None, f"referenced series {missing[0]} is not in the export"
                                + (f" (nor {len(missing) - 1} other(s))" if len(missing) > 1 else ""))
        if len(found) > 1:
            return LabelPairing(obj, None, f"references {len(found)} image series ({_describe(found)}); "
                                "expected one")
        return LabelPairing(obj, found[0].key, "by referenced series UID"
                            + (f" ({len(missing)} other referenced series absent)" if missing else ""))
    if obj.referenced_instances:
        wanted = set(obj.referenced_instances)
        found = [s for s in series.values() if s.sop_uids & wanted]
        if len(found) == 1:
            return LabelPairing(obj, found[0].key, "by referenced instances (the object names no series)")
        if len(found) > 1:
            return LabelPairing(obj, None, f"its referenced instances lie in {len(found)} image series "
                                f"({_describe(found)}); expected one")
    frames = set(obj.referenced_frames)
    study = [s for s in series.values() if s.study_uid == obj.study_uid] if obj.study_uid else []
    found = [s for s in study if s.frames_of_reference & frames]
    if not found:
        what = "no series reference and no image series of its frame of reference in its study" if frames \
            else "no series, instance or frame of reference reference"
        return LabelPairing(obj, None, what)
    if len(found) > 1:
        return LabelPairing(obj, None, f"{len(found)} candidate image series by frame of reference "
                            f"({_describe(found)}) and no series reference; re-export it with its series reference")
    return LabelPairing(obj, found[0].key, "by frame of reference UID within the study (the object names no series)")


def pair_objects(scan: ExportScan) -> tuple[dict[str, ImageSeries], list[LabelPairing]]:
    """Group the image series and pair every SEG/RTSTRUCT with one (see the module docstring)."""
    series = group_series(scan)
    pairings = [_pair_one(obj, series) for obj in scan.of_kind(*LABEL_KINDS)]
    for pairing in pairings:
        if pairing.series_key is not None:
            series[pairing.series_key].labels.append(pairing.obj)
    for entry in series.values():  # newest first: it wins a structure that two objects give one series
        entry.labels.sort(key=lambda o: (o.created, str(o.path)), reverse=True)
    return series, pairings


__all__ = ["IMAGE", "LABEL_KINDS", "RTSTRUCT", "SEG", "DicomObject", "ExportScan", "ImageSeries", "LabelPairing",
           "classify", "export_folder", "group_series", "pair_objects", "relative_path", "scan_export",
           "sop_class_of"]
