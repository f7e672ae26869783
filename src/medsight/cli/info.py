"""``medsight info`` and ``medsight convert``: look at a file or folder, and convert between formats.

Both commands parse arguments, call one library function (:func:`medsight.io.export.describe_path`,
:func:`medsight.io.export.convert`) and print the result. Heavy imports happen inside the functions so that
``medsight --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

INFO_EPILOG = """\
examples:
  medsight info scans/ct_series/                 one DICOM series: shape, spacing (mm), orientation, range
  medsight info export/                          a study folder tree: every series (UID, description, modality,
                                                 slices, spacing, size, irregularities) and every SEG/RTSTRUCT/SR
  medsight info export/DICOMDIR                  the same, from the DICOMDIR's records
  medsight info export/ --series 1.2.840...      describe one series (UID, SeriesNumber or SeriesDescription)
  medsight info case_001.nii.gz --json           machine-readable output
  medsight info BreastMNIST.npz                  arrays, shapes and label counts of a MedMNIST archive

series choice (info, convert, predict): --series takes a SeriesInstanceUID, a SeriesNumber or a SeriesDescription.
Without it a folder must hold one image series: localizers/scouts, secondary captures (screenshots, dose screens)
and non-image objects (SEG, RTSTRUCT, SR dose reports, presentation states) do not count; vendor index files
(DIRFILE, DICOMDIR, LOCKFILE, VERSION, .txt/.xml, thumbnails) are skipped with one note per kind.
irregular series (gantry tilt, uneven spacing, a missing slice) are reconstructed onto a regular grid from the
recorded slice positions; a gap wider than 2 x the median slice step needs --allow-irregular (before the command).
"""

CONVERT_EPILOG = """\
examples:
  medsight convert dicom_folder/ ct.nii.gz                      DICOM series -> NIfTI (values and geometry kept)
  medsight convert ct.nii.gz ct.nrrd                            NIfTI -> NRRD (or .mha)
  medsight convert ct.nii.gz png_slices/ --slices --window 40,400
                                                                one 8-bit PNG per slice, soft-tissue window (HU)
  medsight convert ct.nii.gz out/axial.png                      a volume to a raster: out/axial_000.png, ...
  medsight convert --window=-600,1500 ct.nii.gz lung/ --slices  negative levels need the '=' form
  medsight convert ct.nii.gz lung/ --slices --window lung       a named CT preset (level -600, width 1500)

outputs: .nii.gz/.nii/.nrrd/.mha keep values and geometry. PNG/TIFF/BMP of a volume give one file per slice
(<stem>_000.png ...), values mapped to 0..255 with one range for the whole volume (min-max, or the window);
a 2D uint8/uint16 image keeps its values, other 2D images are mapped to 0..255 with a note.
overwriting: an existing output file is replaced only with --overwrite (the input never), and then whole: every
output file is written under a temporary name and renamed when complete. Existing slice files of an earlier,
longer export are not deleted; the command says when some are left over.
"""


def register(subparsers: Any) -> None:
    """Add the ``info`` and ``convert`` commands."""
    info = subparsers.add_parser(
        "info",
        help="describe an image, a DICOM file/folder or an NPZ archive",
        description="Describe an image file, a DICOM file, series or study folder, DICOMDIR, or an NPZ archive: shape,\n"
        "channels, spacing (mm), origin (mm, LPS), orientation, dtype, intensity range, non-finite voxels, modality\n"
        "and series UID. A folder or DICOMDIR with several DICOM series lists them, with the non-image objects.",
        epilog=INFO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("path", type=Path, help="image file, DICOM file, folder or DICOMDIR, or .npz archive")
    info.add_argument(
        "--series", metavar="UID|NUMBER|DESCRIPTION",
        help="the series to describe when a folder holds several (SeriesInstanceUID, SeriesNumber or description)",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=run_info)

    convert = subparsers.add_parser(
        "convert",
        help="convert between DICOM, NIfTI, NRRD, MHA, PNG and TIFF",
        description="Read any supported input (DICOM series folder or file, NIfTI, NRRD, MHA, PNG, TIFF, JPEG)\n"
        "and write OUT in the format given by its suffix.",
        epilog=CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("input", type=Path, help="input file, DICOM folder or DICOMDIR")
    convert.add_argument(
        "output", type=Path, help="output file, folder (with --slices) or NAME.png slice pattern"
    )
    convert.add_argument(
        "--series", metavar="UID|NUMBER|DESCRIPTION",
        help="the DICOM series to read when there are several (SeriesInstanceUID, SeriesNumber or description)",
    )
    convert.add_argument(
        "--slices", action="store_true", help="write one 8-bit PNG per slice (OUT is a folder)"
    )
    convert.add_argument(
        "--window",
        metavar="PRESET|LEVEL,WIDTH",
        help="map LEVEL-WIDTH/2..LEVEL+WIDTH/2 to 0..255 for PNG/TIFF output (e.g. 40,400 in HU), or a CT preset: "
        "lung, mediastinum, abdomen, soft_tissue, liver, bone, brain, subdural, stroke, temporal_bone",
    )
    convert.add_argument(
        "--reference", type=Path, metavar="SERIES",
        help="for a DICOM-SEG or RTSTRUCT input: the image series to place the label map on (its grid, voxel for "
        "voxel; required for an RTSTRUCT; a SEG without it keeps its own frame grid)",
    )
    convert.add_argument(
        "--overlaps", choices=["error", "last", "separate"], default="error",
        help="a SEG whose segments overlap: refuse (default), the higher segment wins, or one channel per segment",
    )
    convert.add_argument("--overwrite", action="store_true",
                         help="replace OUT if it exists (the input is never written over)")
    convert.set_defaults(func=run_convert)


# --------------------------------------------------------------------------------------------------- info
def run_info(args: argparse.Namespace) -> int:
    """Describe ``args.path`` on stdout (text or JSON)."""
    from medsight.io.export import describe_path

    facts = describe_path(args.path, series_uid=args.series)
    if args.json:
        print(json.dumps(facts, indent=2, default=str))
        return 0
    if facts["kind"] == "npz":
        _print_npz(facts)
        return 0
    if facts["kind"] == "rtstruct":
        _aligned([("path", facts["path"]), ("format", "dicom-rtstruct"), ("ROIs", ", ".join(facts["rois"]) or "none"),
                  ("referenced series", facts["referenced_series"] or "none"),
                  ("frame of reference", facts["frame_of_reference"] or "none"),
                  ("referenced images", str(facts["referenced_images"]))])
        return 0
    series = facts.get("series") or []
    objects = facts.get("objects") or []
    if len(series) > 1 or objects or facts.get("skipped") or facts["image"] is None:
        _print_study(facts, args.path)
        if facts["image"] is None:
            if series:
                print("pass --series UID|NUMBER|DESCRIPTION to describe one")
            return 0
        print()
    _print_image(facts["image"])
    return 0


def _print_study(facts: dict[str, Any], path: Path) -> None:
    """The series, objects and skipped files of a DICOM folder or DICOMDIR."""
    from medsight.io.dicom_files import SKIP_KINDS
    from medsight.io.dicom_study import ObjectInfo, SeriesInfo

    series = [SeriesInfo(**s) for s in facts.get("series") or []]
    objects = [ObjectInfo(**o) for o in facts.get("objects") or []]
    print(f"{len(series)} series, {len(objects)} non-image object(s) in {path}:")
    for s in series:
        print(f"  {s.summary()}")
        for irregularity in s.irregularities:
            print(f"      irregular: {irregularity}")
        if s.reconstruction:
            print(f"      read as: {s.reconstruction}")
    if objects:
        print("objects:")
        for o in objects:
            print(f"  {o.summary(series)}")
    for kind, files in (facts.get("skipped") or {}).items():
        names = sorted({Path(f).name for f in files})
        print(f"skipped: {len(files)} {SKIP_KINDS.get(kind, kind)} (e.g. {', '.join(names[:3])})")
    if facts.get("missing"):
        print(f"missing: {len(facts['missing'])} file(s) the DICOMDIR lists (e.g. {facts['missing'][0]})")


def _fmt_numbers(values: list[float], sep: str = " x ") -> str:
    return sep.join(f"{v:g}" for v in values)


def _aligned(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _print_image(d: dict[str, Any]) -> None:
    extra = d.get("extra", {})
    value_range = "empty" if d["min"] is None else f"{d['min']:g} .. {d['max']:g}"
    rows = [
        ("path", d["path"]),
        ("format", d["format"]),
        ("shape", " x ".join(str(s) for s in d["shape"])),
        ("channels", str(d["channels"])),
        ("spacing (mm)", _fmt_numbers(d["spacing_mm"])),
        ("origin (mm)", _fmt_numbers(d["origin_mm"], ", ")),
        ("orientation", d["orientation"]),
        ("dtype", d["dtype"]),
        ("range", value_range),
        ("non-finite", str(d["non_finite_voxels"])),
    ]
    if d.get("modality"):
        rows.append(("modality", d["modality"]))
    if d.get("series_uid"):
        rows.append(("series UID", d["series_uid"]))
    if d.get("description"):
        rows.append(("description", d["description"]))
    labels = {
        "num_slices": "slices",
        "transfer_syntax": "transfer syntax",
        "rescale": "rescale",
        "photometric_interpretation": "photometric",
        "monochrome1": "MONOCHROME1",
        "color": "color",
        "pixel_spacing_source": "spacing from",
        "gantry_tilt_deg": "gantry tilt (deg)",
        "recorded_slices": "recorded slices",
        "reconstruction": "reconstruction",
        "sorted_by": "sorted by",
        "segments": "segments",
        "referenced_series": "referenced series",
    }
    rows += [(label, str(extra[key])) for key, label in labels.items() if key in extra]
    rows += [("warning", w) for w in d.get("warnings", [])]
    _aligned(rows)


def _print_npz(d: dict[str, Any]) -> None:
    _aligned([("path", d["path"]), ("format", "npz"), ("arrays", str(len(d["arrays"])))])
    if not d["arrays"]:
        return
    name_w = max(len(a["name"]) for a in d["arrays"])
    shape_w = max(len(str(tuple(a["shape"]))) for a in d["arrays"])
    for a in d["arrays"]:
        line = f"  {a['name']:<{name_w}}  {str(tuple(a['shape'])):<{shape_w}}  {a['dtype']:<7}"
        if "label_counts" in a:
            line += "  labels " + ", ".join(f"{k}: {v}" for k, v in a["label_counts"].items())
        elif "positives" in a:
            line += "  positives per label " + ", ".join(str(v) for v in a["positives"])
        print(line.rstrip())


# ------------------------------------------------------------------------------------------------ convert
def _slice_bar(*, quiet: bool) -> Any:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr for stacks of 20 slices or more."""
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if quiet or total < 20:
            return
        if "bar" not in state:
            state["bar"] = tqdm(
                total=total, desc="slices", unit="slice", file=sys.stderr, leave=False, disable=None
            )
        state["bar"].update(done - state["bar"].n)
        if done >= total:
            state["bar"].close()

    return update


def run_convert(args: argparse.Namespace) -> int:
    """Convert ``args.input`` to ``args.output``; print what was written."""
    from medsight.io.export import convert, parse_window

    window = parse_window(args.window) if args.window is not None else None
    result = convert(
        args.input,
        args.output,
        series_uid=args.series,
        slices=args.slices,
        window=window,
        progress=_slice_bar(quiet=args.quiet),
        reference=args.reference,
        overlaps=args.overlaps,
        overwrite=args.overwrite,
    )
    image = result.image
    shape = " x ".join(str(s) for s in image.shape)
    if len(result.outputs) == 1:
        print(
            f"wrote {result.outputs[0]} ({shape}, {image.num_channels} channel(s), spacing "
            f"{_fmt_numbers(list(image.spacing))} mm)"
        )
    else:
        print(
            f"wrote {len(result.outputs)} slices to {result.outputs[0].parent} "
            f"({result.outputs[0].name} .. {result.outputs[-1].name})"
        )
    for note in result.notes:
        print(f"note: {note}")
    return 0
