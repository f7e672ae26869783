"""``medsight train --task classification`` (called from the train command) and ``medsight explain``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from medsight.errors import user_error


def train_classification_command(args: argparse.Namespace, config: Any, run: Path) -> int:
    from medsight.cli.progress import TrainingProgress
    from medsight.cli.segmentation import _columns, _folds
    from medsight.tasks.classification import plan_classification, train_classification

    if args.target_sensitivity is not None and not 0 < args.target_sensitivity < 1:
        raise user_error("--target-sensitivity in (0, 1)", args.target_sensitivity, None, "e.g. 0.9")
    if args.init_from and not Path(args.init_from).is_file():
        raise user_error("an existing checkpoint for --init-from", "no such file", args.init_from, "check the path")
    if args.target_sensitivity is not None and not (run / "plans.json").is_file() and not args.plan:
        plan = plan_classification(args.dataset, run, network=args.model, tabular=_columns(args.tabular))
        plan.with_changes(target_sensitivity=args.target_sensitivity, threshold_method="sensitivity").save(run / "plans.json")
    summary = train_classification(args.dataset, run, folds=_folds(args.fold), config=config, plan_path=args.plan, network=args.model,
                                   tabular=_columns(args.tabular), init_from=args.init_from, freeze_encoder=args.freeze_encoder,
                                   progress=TrainingProgress(quiet=args.quiet), synthetic=getattr(args, "synthetic", None),
                                   synthetic_ratio=getattr(args, "synthetic_ratio", 0.5), devices=getattr(args, "devices", None))
    from medsight.train import distributed

    if not distributed.finish():  # torchrun: only rank 0 reports
        return 0
    for fold, res in summary.get("trained_now", {}).items():
        val = res.get("validation") or {}
        auc = val.get("auc")
        stop = " (early stop)" if res.get("stopped_early") else ""
        print(f"fold {fold}: {res['epochs']} epochs{stop} in {res['seconds']:.0f}s" +
              (f"; validation AUC {auc:.4f} on {val.get('cases')} cases, temperature {val.get('temperature'):.2f}" if auc is not None else ""))
    cv = summary.get("cross_validation")
    if cv:
        print(f"validation ({cv.get('n')} cases, folds {summary['folds_with_validation']}): AUC {_f(cv.get('auc'))}  "
              f"accuracy {_f(cv.get('accuracy'))}  balanced accuracy {_f(cv.get('balanced_accuracy'))}  "
              f"thresholds {summary.get('thresholds')}")
    print(f"run folder: {run}  (report: {run / 'report.html'})")
    return 0


def _f(v: Any) -> str:
    if isinstance(v, dict):
        v = v.get("macro")
    return f"{v:.4f}" if isinstance(v, (int, float)) else "n/a"


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("explain", help="Grad-CAM / occlusion heat maps of a trained model on images")
    e.add_argument("model", help="a run folder (or one of its checkpoint files)")
    e.add_argument("input", help="an image file, a DICOM series folder, or a folder of images")
    e.add_argument("output", help="output folder for <case>_<method>.png and <case>_heatmap.npz")
    e.add_argument("--method", default="both", choices=["gradcam", "occlusion", "both"],
                   help="classification: which heat map (default both; occlusion only for networks without Grad-CAM)")
    e.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    e.add_argument("--label", type=int, help="segmentation: the label to explain (default: the first foreground label)")
    e.add_argument("--fold", default=None, help="which fold's network (default: the first trained)")
    e.add_argument("--device")
    e.set_defaults(func=cmd_explain)


def _checkpoint(model: str, fold: str | None) -> Path:
    p = Path(model)
    if p.is_file():
        return p
    if not p.is_dir():
        raise user_error("a run folder or a checkpoint file", "nothing", p, "check the path")
    found = sorted(p.glob(f"fold_{fold}/checkpoint_best.pt" if fold is not None else "fold_*/checkpoint_best.pt"))
    if not found:
        raise user_error("a trained fold (fold_*/checkpoint_best.pt)", "none", p, "train first, or check --fold")
    return found[0]


def cmd_explain(args: argparse.Namespace) -> int:
    from medsight.explain.apply import explain_classification, explain_segmentation
    from medsight.train.checkpoint import load_checkpoint

    ckpt = _checkpoint(args.model, args.fold)
    state = load_checkpoint(ckpt)
    out = Path(args.output)
    task = (state.get("plan") or {}).get("task", "segmentation")
    if task not in ("classification", "segmentation"):
        raise user_error("a segmentation or classification run", f"a {task} run", ckpt,
                         "explain works on those runs; for a multitask run, predict writes its masks and class "
                         "probabilities")
    if task == "classification":
        cal = ckpt.parent.parent / "calibration.json"  # the run's per-fold temperatures, when the run has them
        temps = json.loads(cal.read_text()).get("temperature") or {} if cal.is_file() else {}
        t = float(temps.get(ckpt.parent.name.removeprefix("fold_"), 1.0))
        written = explain_classification(state, args.input, out, target=args.target, method=args.method, device=args.device,
                                         temperature=t)
    else:
        written = explain_segmentation(state, args.input, out, label=args.label, device=args.device)
    for w in written:
        print(w)
    return 0


__all__ = ["cmd_explain", "register", "train_classification_command"]
