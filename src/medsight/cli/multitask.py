"""``medsight plan/train/predict --task multitask``: helpers called from :mod:`medsight.cli.segmentation`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medsight.errors import MedsightError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The multi-task planning options (on ``plan`` and ``train``)."""
    g = parser.add_argument_group("multitask (joint segmentation + classification)")
    g.add_argument("--label-from-name", nargs="?", const=r"_([^_]+)$", metavar="REGEX",
                   help="take each case's class from its file name: the first group of REGEX (default: the last _ token, "
                        "as in Montgomery's MCUCXR_0387_1.png -> 1)")
    g.add_argument("--loss-weighting", choices=["uncertainty", "fixed"], default="uncertainty",
                   help="learned uncertainty weights (Kendall et al. 2018, default) or the fixed loss_weights of plans.json")
    g.add_argument("--heatmap", action="store_true", help="also train a lesion-centre heat-map head")
    g.add_argument("--max-size", type=int, help="longest side of the network input in voxels "
                   "(default 256 in 2D / 96 in 3D on a CPU, 512 / 128 with a GPU)")


def _planning(args: argparse.Namespace) -> dict[str, Any]:
    if args.max_size is not None and args.max_size < 8:
        raise MedsightError(f"Expected --max-size of at least 8 voxels, got {args.max_size}; e.g. --max-size 128")
    return {"label_from_name": args.label_from_name, "base_filters": args.base_filters, "max_size": args.max_size,
            "loss_weighting": args.loss_weighting, "heatmap": args.heatmap}


def plan_multitask_command(args: argparse.Namespace, out: Path) -> Any:
    from medsight.cli.progress import case_bar
    from medsight.multitask.pipeline import plan_multitask

    return plan_multitask(args.dataset, out, **_planning(args), progress=case_bar("fingerprint", args.quiet))


def _f(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def train_multitask_command(args: argparse.Namespace, config: Any, run: Path) -> int:
    from medsight.cli.progress import TrainingProgress
    from medsight.cli.segmentation import _folds
    from medsight.multitask.pipeline import train_multitask

    for flag in ("model", "tabular", "init_from"):
        if getattr(args, flag, None):
            raise MedsightError(f"Expected --{flag.replace('_', '-')} only with classification, got it with --task multitask; drop it")
    summary = train_multitask(args.dataset, run, folds=_folds(args.fold), config=config, plan_path=args.plan,
                              progress=TrainingProgress(quiet=args.quiet), **_planning(args))
    for fold, res in summary.get("trained_now", {}).items():
        val = res.get("validation") or {}
        print(f"fold {fold}: {res['epochs']} epochs in {res['seconds']:.0f}s" +
              (f"; validation mean Dice {_f(val.get('mean_dice'))}, AUC {_f(val.get('auc'))} on {val.get('cases')} cases" if val else ""))
    seg, cls = summary.get("segmentation"), summary.get("classification")
    if seg or cls:
        print(f"validation (folds {summary['folds_with_validation']}): mean Dice {_f((seg or {}).get('mean_dice'))}  "
              f"AUC {_f((cls or {}).get('auc'))}  accuracy {_f((cls or {}).get('accuracy'))}  thresholds {(cls or {}).get('thresholds')}")
    print(f"run folder: {run}  (report: {run / 'report.html'})")
    return 0


def predict_multitask_files(args: argparse.Namespace, folds: list[int] | None) -> list[Path]:
    """Run ``medsight predict`` for a multitask run; returns the files written."""
    from medsight.cli.progress import case_bar
    from medsight.multitask.predict import predict_multitask

    for flag, given in (("--dicom-seg", args.dicom_seg), ("--engine onnx", args.engine != "torch"), ("--split", args.split),
                        ("--strict", args.strict)):
        if given:
            raise MedsightError(f"Expected {flag} only for segmentation or classification runs, got it for a multitask run; drop it")
    return predict_multitask(args.run_dir, args.input, args.output, folds=folds, device=args.device, tta=not args.no_tta,
                             series_uid=args.series, save_probabilities=args.save_probabilities,
                             progress=case_bar("predict", args.quiet))


__all__ = ["add_arguments", "plan_multitask_command", "predict_multitask_files", "train_multitask_command"]
