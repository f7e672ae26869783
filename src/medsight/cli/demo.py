"""``medsight demo``: the main job end to end on a real sample shipped inside the package.

Trains a small 3D U-Net on 16 Hippocampus MRI cases (CC BY-SA 4.0, see the sample's ATTRIBUTION.md) for a
short CPU budget, predicts the 4 held-out cases, scores them and writes the HTML report.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, predict, evaluate and report on the bundled Hippocampus sample (a few minutes on CPU)")
    p.add_argument("--out", default="medsight_demo", help="output folder (default ./medsight_demo)")
    p.add_argument("--time-budget", default="3m", help="training wall time (default 3m)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.set_defaults(func=cmd_demo)


def demo_dataset() -> Path:
    """Folder of the bundled sample (nnU-Net layout with imagesTs/labelsTs held out)."""
    from importlib import resources

    return Path(str(resources.files("medsight") / "resources" / "demo_hippocampus"))


def cmd_demo(args: argparse.Namespace) -> int:
    from medsight.cli.common import parse_duration
    from medsight.cli.progress import TrainingProgress
    from medsight.engine.config import RunOptions
    from medsight.evaluate.folders import evaluate_folders
    from medsight.tasks.segmentation.pipeline import predict, train

    data = demo_dataset()
    out = Path(args.out)
    run = out / "run"
    print(f"medsight demo: 3D hippocampus segmentation on {data} (16 training + 4 held-out MRI volumes)")
    config = RunOptions(time_budget_s=parse_duration(args.time_budget), iterations_per_epoch=25, seed=0, device=args.device)
    train(data, run, folds=[0], config=config, base_filters=16, progress=TrainingProgress(quiet=args.quiet))
    preds = predict(run, data / "imagesTs", out / "predictions", device=args.device)
    from medsight.tasks.segmentation.plan import Plan

    labels = Plan.load(run / "plans.json").labels
    result = evaluate_folders(out / "predictions", data / "labelsTs", labels=labels, out_dir=out / "evaluation",
                              distances=True, bootstrap=200)
    report = run / "report.html"  # written by train() with the validation overlays
    print(f"\nheld-out cases: {len(preds)}  (predictions in {out / 'predictions'})")
    for name, lab in result.summary.get("labels", {}).items():
        m = lab["metrics"]
        print(f"  {name:<10} Dice {m['dice']['mean']:.3f}   HD95 {m['hd95']['mean']:.2f} mm")
    print(f"report: {report}")
    return 0
