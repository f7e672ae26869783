"""``medsight evaluate`` (score a prediction folder) and ``medsight report`` (HTML report of a run folder)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from medsight.cli.common import parse_labels
from medsight.errors import InputNotFoundError, MedsightError

_SHOWN = ("dice", "iou", "hd95", "assd", "sensitivity", "precision", "specificity", "accuracy", "auc",
          "ref_volume", "pred_volume")


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` and ``report`` commands."""
    p = subparsers.add_parser(
        "evaluate",
        help="score predicted label maps against references (Dice, IoU, HD95, ASSD, ...)",
        description=(
            "Pair prediction and reference files by name (same stem, or the leading number as in DRIVE: "
            "21_test.png <-> 21_manual1.gif), score each case and label, and write per_case.csv and "
            "summary.json (mean, SD, median, bootstrap 95 % CI). References without a prediction count as "
            "empty predictions (Dice 0)."
        ),
    )
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="folder of predicted label maps")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR", help="folder of reference label maps")
    p.add_argument("--labels", metavar="NAME=VALUE,...",
                   help="labels to score, e.g. liver=1,tumour=2 (default: every value found in GT_DIR)")
    p.add_argument("--roi-dir", type=Path, metavar="DIR",
                   help="region-of-interest masks (e.g. DRIVE field of view); metrics are computed inside them")
    p.add_argument("--prob-dir", type=Path, metavar="DIR",
                   help="<case>.npz files holding 'probabilities' (C, *spatial), for the pixel AUC")
    p.add_argument("--out", type=Path, metavar="DIR", help="where to write per_case.csv and summary.json (default PRED_DIR)")
    p.add_argument("--no-distances", action="store_true", help="skip HD95 and ASSD (much faster on large volumes)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace per_case.csv/summary.json (lesion outputs with --lesions) of an earlier evaluation "
                   "(an input file is never written over)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.add_argument("--lesions", action="store_true",
                   help="lesion-level evaluation instead: sensitivity, FP per case, FROC, CPM (see docs/clinical.md)")
    from medsight.cli.common import add_lesion_options

    add_lesion_options(p)
    p.set_defaults(func=run_evaluate)

    r = subparsers.add_parser(
        "report",
        help="write report.html for a training run folder",
        description="Write RUN_DIR/report.html: plan, training curves, validation metrics and overlays, self-contained.",
    )
    r.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder (runs/<name>)")
    r.add_argument("--images", type=Path, metavar="DIR",
                   help="image folder, to render best and worst validation cases when the run has no overlays")
    r.add_argument("--references", type=Path, metavar="DIR",
                   help="reference label folder for those overlays (default: the one recorded by evaluate)")
    r.set_defaults(func=run_report)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    v = float(value)
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 100 else f"{v:.4g}"


def format_summary(summary: dict[str, Any], units: dict[str, str] | None = None) -> str:
    """Readable per-label lines: ``metric  mean ± SD  [CI low, CI high]``."""
    units = units or {}
    lines = []
    blocks = list(summary.get("labels", {}).items())
    if len(blocks) > 1 and summary.get("foreground_mean"):
        blocks.append(("mean over labels", {"n_cases": summary.get("n_cases"), "metrics": summary["foreground_mean"]}))
    for name, info in blocks:
        value = f"value {info['value']}, " if info.get("value") is not None else ""
        lines.append(f"{name} ({value}{info.get('n_cases', 0)} cases)")
        for m in _SHOWN:
            stats = info.get("metrics", {}).get(m)
            if not stats:
                continue
            label = f"{m} ({units[m]})" if units.get(m) else m
            text = f"  {label:<22} {_fmt(stats.get('mean'))} ± {_fmt(stats.get('sd'))}"
            text += f"  [{_fmt(stats.get('ci_low'))}, {_fmt(stats.get('ci_high'))}]"
            if stats.get("n_nan"):
                text += f"  ({stats['n_nan']} NaN left out)"
            lines.append(text)
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``medsight evaluate``; returns the exit code."""
    from medsight.core.tables import json_safe
    from medsight.evaluate.folders import evaluate_folders

    if args.lesions:
        return run_lesion_evaluation(args)
    result = evaluate_folders(
        args.pred_dir, args.gt_dir, labels=parse_labels(args.labels), roi_dir=args.roi_dir,
        prob_dir=args.prob_dir, out_dir=args.out, distances=not args.no_distances, overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps(json_safe(result.summary), indent=2))
        return 0
    first = result.rows[0] if result.rows else {}
    units = {"hd95": first.get("distance_unit", ""), "assd": first.get("distance_unit", ""),
             "ref_volume": first.get("volume_unit", ""), "pred_volume": first.get("volume_unit", "")}
    print(f"{len({r['case'] for r in result.rows})} cases, files paired by {result.match_rule}; "
          f"mean ± SD [95% bootstrap CI]")
    print(format_summary(result.summary, units))
    if result.missing:
        print(f"missing predictions (scored as empty): {len(result.missing)}")
    print(f"per-case metrics: {result.per_case_csv}")
    print(f"summary:          {result.summary_json}")
    return 0


def run_lesion_evaluation(args: argparse.Namespace) -> int:
    """``medsight evaluate --lesions``: FROC and CPM (:mod:`medsight.evaluate.lesion_folders`)."""
    from medsight.evaluate.lesion_folders import evaluate_lesion_folders

    result = evaluate_lesion_folders(args.pred_dir, args.gt_dir, prob_dir=args.prob_dir, out_dir=args.out,
                                     value=args.lesion_label, threshold=args.threshold, min_volume=args.min_volume,
                                     overwrite=args.overwrite)
    summary = result.froc.as_dict()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    at = ", ".join(f"{k}: {v:.3f}" for k, v in summary["sensitivity_at_fp_per_case"].items())  # type: ignore[attr-defined]
    print(f"{summary['n_cases']} cases, {summary['n_reference_lesions']} reference lesions")
    print(f"sensitivity {_fmt(summary['sensitivity'])} at {_fmt(summary['fp_per_case'])} FP per case (all detections)")
    print(f"CPM {summary['cpm']:.4f}  (sensitivity at FP/case {at})")
    print(f"detections: {result.detections_csv}")
    print(f"FROC:       {result.froc_csv}, {result.froc_png}")
    print(f"summary:    {result.summary_json}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Run ``medsight report``: the run's task writes its report; returns the exit code."""
    from medsight.engine.run import plan_task, read_plan_json
    from medsight.tasks import TASKS, get_task
    from medsight.tasks.task import refuse_options

    run = Path(args.run_dir)
    if not run.is_dir():
        raise InputNotFoundError(f"Expected an existing run folder, got {run} which does not exist; check the path")
    task = get_task(plan_task(read_plan_json(run) if (run / "plans.json").is_file() else {}))
    if task.report is None:
        raise MedsightError(f"Expected a run with an HTML report, got a {task.name} run {run}; its summary.json says "
                            "what was trained")
    options = {k: v for k, v in (("images", args.images), ("references", args.references)) if v is not None}
    refuse_options(task, options, task.report_options, TASKS.values(), "'medsight report'")
    print(task.report(run, options))
    return 0
