"""``medsight deid``, ``quantify`` and ``detect``: the clinical workflow commands (thin wrappers).

Library side: :mod:`medsight.io.deid`, :mod:`medsight.evaluate.quantify`, :mod:`medsight.evaluate.lesion_folders`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medsight.cli.common import add_lesion_options

DEID_EPILOG = """\
examples:
  medsight deid pacs_export/ deid/                        new random key: UIDs consistent within this run
  medsight deid pacs_export/ deid/ --key ~/keys/study.key --shift-dates --keep-patient-characteristics
                                                          keep study.key private (outside IN_DIR and OUT_DIR):
                                                          same key, same new UIDs and date shifts next time

Deny by default (DICOM PS3.15 E.1.1): only the attributes needed to use the image are kept (see docs/security.md);
dates, times, free text, names, unknown and private attributes are removed at every depth, UIDs are replaced.
Files whose pixels may show text (BurnedInAnnotation = YES, or missing on US, SC, XC, OT, ES or Secondary Capture)
go to the quarantine folder (default <OUT_DIR>_quarantine, with QUARANTINE.csv), not to OUT_DIR, unless
--accept-burned-in. The audit CSV (default <OUT_DIR>_deid_audit.csv) lists every removed, emptied or replaced
element, never a value, and names inputs by SHA-256. OUT_DIR/DEID_INCOMPLETE stays when a run did not finish.
Exit code 1 when some DICOM files could not be read (they are not written).
"""

QUANTIFY_EPILOG = """\
examples:
  medsight quantify ct.nii.gz pred/ct.nii.gz --labels liver=1,tumour=2 --window liver
  medsight quantify ct_series/ ct_series_seg.dcm --out quant/      a DICOM series with its DICOM-SEG
"""

DETECT_EPILOG = """\
examples:
  medsight detect pred/ --prob-dir pred/ --min-volume 30           components of the label maps, scored by the
                                                                   highest probability inside them
  medsight detect pred/ --prob-dir pred/ --threshold 0.1           more candidates (components of p >= 0.1)
"""


def register(subparsers: Any) -> None:
    """Add the ``deid``, ``quantify`` and ``detect`` commands."""
    d = subparsers.add_parser(
        "deid", help="de-identify DICOM files (PS3.15 Annex E, deny by default)",
        description="Copy every DICOM file under IN_DIR to OUT_DIR de-identified as DICOM PS3.15 Annex E E.1.1 asks: "
        "attributes not on medsight's keep lists are removed or replaced at every sequence depth, Table E.1-1 "
        "decides the attributes it lists, UIDs are replaced consistently (series and studies still link), pixel "
        "data is kept and the preamble zeroed. IN_DIR is never modified.",
        epilog=DEID_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("in_dir", type=Path, metavar="IN_DIR")
    d.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    d.add_argument("--key", type=Path, metavar="FILE",
                   help="key file for UIDs, pseudonyms and date shifts (created when missing; keep it private, "
                   "outside IN_DIR and OUT_DIR)")
    d.add_argument("--shift-dates", action="store_true",
                   help="Retain Longitudinal Temporal Information with Modified Dates: shift each patient's dates back "
                   "by the same 365-3650 days and keep times (needs --key); default: dates and times removed")
    d.add_argument("--keep-patient-characteristics", action="store_true",
                   help="Retain Patient Characteristics: keep sex, age, size, weight, BMI, smoking and pregnancy status")
    d.add_argument("--keep-device-identity", action="store_true",
                   help="Retain Device Identity: keep station name, serial numbers, device UIDs and AE titles")
    d.add_argument("--clean-descriptors", action="store_true",
                   help="Clean Descriptors: keep study/series descriptions, protocol name... when they are short, "
                   "hold no date, long number or identifying value of the file; otherwise removed")
    d.add_argument("--accept-burned-in", action="store_true",
                   help="write files with a burned-in annotation risk to OUT_DIR (default: quarantined); only after "
                   "checking their pixels")
    d.add_argument("--quarantine", type=Path, metavar="DIR",
                   help="folder for files with a burned-in annotation risk (default <OUT_DIR>_quarantine)")
    d.add_argument("--audit", type=Path, metavar="CSV",
                   help="audit file, outside IN_DIR and OUT_DIR (default <OUT_DIR>_deid_audit.csv)")
    d.add_argument("--overwrite", action="store_true",
                   help="write into an OUT_DIR with files in it and replace an existing audit CSV (default: refused, "
                   "unless OUT_DIR holds the DEID_INCOMPLETE marker of an unfinished run)")
    d.set_defaults(func=run_deid)

    q = subparsers.add_parser(
        "quantify", help="volumes, diameters and intensities per label and per lesion",
        description="Measure a label map on its image: per label and per connected lesion, voxel count, volume (ml), "
        "bounding box, centroid (LPS mm), longest axial diameter (mm), intensity mean/SD/min/max (HU for CT). "
        "Writes quantification.csv and quantification.html (with overlays).",
        epilog=QUANTIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("image", type=Path, metavar="IMAGE", help="image file or DICOM series folder")
    q.add_argument("labels", type=Path, metavar="LABELS", help="label map on the image grid, or a DICOM-SEG")
    q.add_argument("--out", type=Path, metavar="DIR", help="output folder (default <LABELS stem>_quantification)")
    q.add_argument("--labels", dest="label_names", metavar="NAME=VALUE,...", help="label names, e.g. liver=1,tumour=2")
    q.add_argument("--window", metavar="PRESET|LEVEL,WIDTH",
                   help="overlay window: lung, mediastinum, abdomen, soft_tissue, liver, bone, brain, ... or 40,400 "
                   "(default soft_tissue for CT)")
    q.add_argument("--series", metavar="UID", help="SeriesInstanceUID when the image folder holds several")
    q.add_argument("--overwrite", action="store_true", help="replace quantification.csv/.html of an earlier run")
    q.set_defaults(func=run_quantify)

    t = subparsers.add_parser(
        "detect", help="lesion list (centre, size, score) from segmentation outputs",
        description="Connected components of predicted label maps as detections, scored by the highest probability "
        "inside them (1.0 without probabilities); one CSV row per lesion.",
        epilog=DETECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("pred", type=Path, metavar="PRED", help="a label map or a folder of them")
    t.add_argument("--prob-dir", type=Path, metavar="DIR", help="<case>[_probabilities].npz files for the scores")
    t.add_argument("--out", type=Path, metavar="CSV", help="output CSV (default PRED_DIR/lesions.csv)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing output CSV (never an input)")
    add_lesion_options(t)
    t.set_defaults(func=run_detect)


def run_deid(args: argparse.Namespace) -> int:
    """Run ``medsight deid``."""
    from medsight.cli.progress import case_bar
    from medsight.errors import user_error
    from medsight.io.deid import DeidKey, DeidOptions
    from medsight.io.deid_folder import check_locations, deidentify_folder

    check_locations(args.in_dir, args.out_dir, audit_csv=args.audit, key_file=args.key,
                    quarantine_dir=args.quarantine, overwrite=args.overwrite)
    key = None
    if args.key is not None:
        key, created = DeidKey.load_or_create(args.key)
        if created:
            print(f"new key written to {args.key}: keep it private, and reuse it to get the same UIDs and shifts")
    elif args.shift_dates:
        raise user_error("--key FILE with --shift-dates", "no key", None,
                         "add --key deid.key (created if missing) so the shift can be repeated")
    options = DeidOptions(shift_dates=args.shift_dates, patient_characteristics=args.keep_patient_characteristics,
                          device_identity=args.keep_device_identity, clean_descriptors=args.clean_descriptors,
                          accept_burned_in=args.accept_burned_in)
    result = deidentify_folder(args.in_dir, args.out_dir, key=key, options=options, audit_csv=args.audit,
                               quarantine_dir=args.quarantine, progress=case_bar("deid", args.quiet),
                               overwrite=args.overwrite)
    print(f"de-identified {len(result.written)} file(s) into {args.out_dir}")
    print(f"audit: {result.audit_csv}")
    if result.quarantined:
        print(f"quarantined {len(result.quarantined)} file(s) with a burned-in annotation risk into "
              f"{result.quarantine_dir} (not in {args.out_dir}; see its QUARANTINE.csv): check their pixels, or rerun "
              "with --accept-burned-in")
    if result.accepted_burned_in:
        print(f"warning: {len(result.accepted_burned_in)} file(s) with a burned-in annotation risk written to "
              f"{args.out_dir} (--accept-burned-in): their pixels are not cleaned", file=sys.stderr)
    if result.ignored:
        print(f"note: {result.ignored} non-DICOM file(s) in {args.in_dir} were not copied")
    if result.skipped:
        print(f"{len(result.skipped)} unreadable DICOM file(s) not written, e.g. {result.skipped[0][0]} "
              f"({result.skipped[0][1]}); {result.incomplete_marker} says so", file=sys.stderr)
        return 1
    return 0


def run_quantify(args: argparse.Namespace) -> int:
    """Run ``medsight quantify``."""
    from medsight.cli.common import parse_labels
    from medsight.evaluate.quantify import write_quantification
    from medsight.io import strip_suffix

    out = args.out or args.labels.parent / f"{strip_suffix(args.labels)}_quantification"
    result = write_quantification(args.image, args.labels, out, label_names=parse_labels(args.label_names),
                                  window=args.window, series_uid=args.series, overwrite=args.overwrite)
    for r in result.rows:
        if r["level"] != "label":
            continue
        lesions = sum(1 for x in result.rows if x["level"] == "lesion" and x["label"] == r["label"])
        size = f"{r['volume_ml']:.3f} ml" if r["volume_ml"] is not None else f"{r['area_mm2']:.1f} mm²"
        print(f"{r['name']} ({r['label']}): {size}, {lesions} lesion(s), longest diameter "
              f"{r['longest_diameter_mm']:.1f} mm, mean {r['mean']:.1f} {r['unit']}".rstrip())
    if not result.rows:
        print("no labelled voxels")
    print(f"table:   {result.csv}")
    print(f"summary: {result.html}")
    return 0


def run_detect(args: argparse.Namespace) -> int:
    """Run ``medsight detect``."""
    from medsight.evaluate.lesion_folders import detect_folder

    pred = args.pred
    out = args.out or (pred if pred.is_dir() else pred.parent) / "lesions.csv"
    path = detect_folder(pred, out, prob_dir=args.prob_dir, value=args.lesion_label, threshold=args.threshold,
                         min_volume=args.min_volume, overwrite=args.overwrite)
    print(path)
    return 0
