"""``medsight dataset``: check a dataset file by file, or write an editable dataset.json for folder pairs.

* ``medsight dataset check DATASET [--json] [--quiet]``: exit 0 when no errors, 1 when the dataset has errors.
* ``medsight dataset init DIR [--out FILE] [--labels name=value,...] [--force]``.
* ``medsight dataset import DICOM_ROOT OUT [--mapping FILE] [--keep-unmapped] [--modality M] [--name NAME]
  [--force]``: a hospital DICOM export (studies, DICOMDIR or not, with SEG/RTSTRUCT) -> an nnU-Net v2 dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from medsight.cli.common import parse_labels
from medsight.errors import user_error

if TYPE_CHECKING:
    from medsight.data.check import CheckReport

#: Show a progress bar from this many cases on.
PROGRESS_MIN_CASES = 50


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``medsight dataset`` and its subcommands."""
    parser = subparsers.add_parser(
        "dataset", help="check a dataset, write a dataset.json for image/label folders, or import a DICOM export",
        description="Check a dataset file by file (check), write an editable dataset.json for a folder of "
                    "image/label pairs (init), or turn a DICOM export with SEG/RTSTRUCT objects into an nnU-Net v2 "
                    "dataset (import). DATASET may be a folder, a dataset.json, a .csv or a MedMNIST .npz.",
    )
    sub = parser.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda _args: _print_help(parser))

    check = sub.add_parser(
        "check", help="read every case and report problems, naming each file at fault",
        description="Read every case and report every problem (unreadable files, missing pairs, shape/geometry "
                    "mismatches, undeclared or empty labels, NaN voxels, ...). Exit code 0: no errors; "
                    "1: the dataset has errors; 2: bad arguments.",
    )
    check.add_argument("dataset", type=Path, metavar="DATASET", help="dataset folder, dataset.json, .csv or .npz")
    check.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    check.add_argument("--quiet", dest="check_quiet", action="store_true",
                       help="no progress bar and no warnings; errors and the summary only")
    check.set_defaults(func=run_check)

    init = sub.add_parser(
        "init", help="write a dataset.json for a folder of image/label pairs",
        description="Infer the layout of a folder of image/label pairs and write it as a medsight dataset.json "
                    "(layout, folders, file-name patterns, labels, channel names) to edit and reuse.",
    )
    init.add_argument("dir", type=Path, metavar="DIR", help="the dataset folder")
    init.add_argument("--out", type=Path, default=None, help="output file (default: DIR/dataset.json)")
    init.add_argument("--labels", default=None, metavar="NAME=VALUE,...",
                      help="label names and values, e.g. background=0,vessel=1 (default: inferred from the files)")
    init.add_argument("--overwrite", "--force", dest="force", action="store_true",
                      help="replace an existing output file (--force is the older name)")
    init.set_defaults(func=run_init)

    imp = sub.add_parser(
        "import", help="turn a DICOM export (studies with SEG/RTSTRUCT) into an nnU-Net v2 dataset",
        description="Walk a DICOM export (a folder tree of studies, with or without DICOMDIR), pair each image "
                    "series with the SEG and RTSTRUCT objects that reference it, map the structure names to labels "
                    "(built-in synonyms for head-and-neck organs at risk and common organs, or --mapping), and "
                    "write OUT as an nnU-Net v2 dataset (dataset.json, imagesTr/, labelsTr/) with cases.csv "
                    "(case -> study/series UIDs), absent_structures.json (structures a case lacks: unlabelled, "
                    "not background), label_mapping.json (the table used, to edit) and import_report.csv (one row "
                    "per object: paired or skipped, and why). OUT is written to a temporary folder and renamed "
                    "when complete; an existing non-empty OUT is only replaced with --force, and only when it is a "
                    "dataset (holds a dataset.json).",
    )
    imp.add_argument("root", type=Path, metavar="DICOM_ROOT", help="the export folder")
    imp.add_argument("out", type=Path, metavar="OUT", help="the dataset folder to write")
    imp.add_argument("--mapping", type=Path, default=None, metavar="FILE",
                     help="structure name -> label table (JSON, or YAML with PyYAML); default: built-in synonyms, "
                          "labels numbered in the order of the table; OUT/label_mapping.json is a starting point")
    imp.add_argument("--keep-unmapped", action="store_true",
                     help="add structures the table does not know as new labels (default: leave them out, reported)")
    imp.add_argument("--modality", default=None,
                     help="import image series of this modality only (default: the most common labelled one)")
    imp.add_argument("--name", default=None, help="dataset name in dataset.json (default: OUT's folder name)")
    imp.add_argument("--overwrite", "--force", dest="force", action="store_true",
                     help="replace a previous dataset in OUT (a folder with dataset.json) once the new one is complete "
                          "(--force is the older name)")
    imp.set_defaults(func=run_import)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


# ---------------------------------------------------------------------------------------------- check
def run_check(args: argparse.Namespace) -> int:
    """``medsight dataset check``: returns 0 when the dataset has no errors, 1 when it has."""
    from medsight.data.check import check_dataset
    from medsight.data.dataset import load_dataset

    quiet = bool(args.check_quiet or getattr(args, "quiet", False))
    spec = load_dataset(args.dataset)
    total = len(spec.cases) + len(spec.test_cases)
    if quiet or total < PROGRESS_MIN_CASES:
        report = check_dataset(spec)
    else:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, pipes); update() keeps tqdm's rate limit
        with tqdm(total=total, desc=f"checking {spec.name}", unit="case", file=sys.stderr, leave=False,
                  disable=None) as bar:
            report = check_dataset(spec, progress=lambda _done, _total: bar.update(1))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report, warnings=not quiet))
    return 0 if report.ok else 1


def format_report(report: CheckReport, *, warnings: bool = True) -> str:
    """The human-readable report: one line per problem, then a summary."""
    lines = []
    for p in report.problems:
        if p.severity == "error":
            lines.append(f"ERROR {p.file}: {p.message}")
        elif warnings:
            lines.append(f"WARN {p.file}: {p.message}")
    if lines:
        lines.append("")
    labels = ", ".join(f"{k}={v}" for k, v in report.labels.items())
    source = "declared" if report.labels_declared else "inferred from the files"
    errors, warns = len(report.errors), len(report.warnings)
    by_kind = ", ".join(f"{k} {n}" for k, n in report.problem_counts().items())
    lines += [
        f"dataset     {report.dataset} ({report.root})",
        f"task        {report.task}, layout {report.layout}",
        f"cases       {report.num_cases}" + (f" (+{report.num_test_cases} test)" if report.num_test_cases else ", test cases 0"),
        f"labels      {labels} ({source})",
    ]
    facts = _facts(report)
    if facts:
        lines.append(f"images      {facts}")
    lines.append(f"problems    {errors} error(s), {warns} warning(s)" + (f": {by_kind}" if by_kind else ""))
    lines.append("result      OK" + (" (with warnings)" if warns else "") if report.ok
                 else f"result      FAILED: fix the {errors} error(s) above and run the check again")
    return "\n".join(lines)


def _facts(report: CheckReport) -> str:
    counts = report.counts
    dims = ", ".join(f"{n} {k[4:].upper()}" for k, n in counts.items() if k.startswith("dim_"))
    chans = ", ".join(f"{n} with {k[9:]} ch" for k, n in counts.items() if k.startswith("channels_"))
    parts = [p for p in (dims, chans) if p]
    spacing = report.ranges.get("spacing_mm")
    if spacing:
        lo, hi = spacing
        parts.append("spacing " + ("x".join(f"{v:g}" for v in lo) if lo == hi else
                                   f"{'x'.join(f'{v:g}' for v in lo)} to {'x'.join(f'{v:g}' for v in hi)}") + " mm")
    shape = report.ranges.get("shape")
    if shape:
        lo, hi = shape
        parts.append("shape " + ("x".join(map(str, lo)) if lo == hi else
                                 f"{'x'.join(map(str, lo))} to {'x'.join(map(str, hi))}"))
    return "; ".join(parts)


def run_init(args: argparse.Namespace) -> int:
    """``medsight dataset init``: write the inferred dataset.json; refuses to overwrite without ``--force``."""
    from medsight.core.atomic import write_text
    from medsight.data.dataset import load_dataset
    from medsight.data.spec_json import infer_spec_json
    from medsight.errors import require_exists

    folder = require_exists(args.dir, "dataset folder")
    if not folder.is_dir():
        raise user_error("a dataset folder", f"the file {folder.name}", folder, "pass the folder that holds the images")
    out = args.out if args.out is not None else folder / "dataset.json"
    if out.is_dir():
        raise user_error("an output file", "a folder", out, "pass a file name with --out")
    if out.exists() and not args.force:
        raise user_error("an output path that does not exist yet", "an existing file", out,
                         "pass --overwrite (or --force) to replace it, or --out to write elsewhere")
    labels = parse_labels(args.labels, background=True)
    spec = load_dataset(folder)
    data = infer_spec_json(spec, labels=labels)
    write_text(out, json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")
    print(f"  {len(spec.cases)} cases; images in {data['images_dir']}/"
          + (f", labels in {data['labels_dir']}/" if data.get("labels_dir") else ", no labels")
          + (f", ROI masks in {data['roi_dir']}/" if "roi_dir" in data else ""))
    print(f"  labels {', '.join(f'{k}={v}' for k, v in data['labels'].items())}"
          + ("" if labels is not None or spec.labels_declared else " (inferred: edit the names in the file)"))
    print(f"next: medsight dataset check {out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """``medsight dataset import``: write the dataset and print the summary."""
    from medsight.data.dicom_import import format_summary, import_dicom_dataset

    result = import_dicom_dataset(args.root, args.out, mapping=args.mapping, keep_unmapped=args.keep_unmapped,
                                  force=args.force, modality=args.modality, name=args.name)
    print(format_summary(result))
    return 0


__all__ = ["format_report", "register", "run_check", "run_import", "run_init"]
