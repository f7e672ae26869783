"""``medsight demo``: the main job end to end on a real sample shipped inside the package.

Trains a small 3D U-Net on 16 Hippocampus MRI cases (CC BY-SA 4.0, see the sample's ATTRIBUTION.md) for a fixed
number of seeded epochs, predicts the 4 held-out cases, scores them and writes the HTML report.

The result is the same on every CPU machine: a fixed number of optimiser steps (not a wall-time budget, which would
give fewer steps on a slower or busier machine), one seed for weights, patch sampling and augmentation,
deterministic PyTorch kernels, and a fixed number of CPU threads (the sampler's prefetch thread always augments with
one). Only the time it takes depends on the machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Epochs x iterations of the default demo (see the README for its Dice and time on a 2-core CPU).
DEMO_EPOCHS = 12
DEMO_ITERATIONS = 25
#: Intra-op threads of the training step: fixed so that floating-point reductions run in the same order everywhere.
DEMO_THREADS = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, predict, evaluate and report on the bundled Hippocampus sample (a few minutes on CPU)")
    p.add_argument("--out", default="medsight_demo", help="output folder (default ./medsight_demo)")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"training epochs (default {DEMO_EPOCHS})")
    p.add_argument("--iterations", type=int, default=DEMO_ITERATIONS,
                   help=f"optimiser steps per epoch (default {DEMO_ITERATIONS})")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, sampling and augmentation (default 0)")
    p.add_argument("--time-budget", help="train for this wall time instead of --epochs (the result then depends on the "
                   "machine's speed and load)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present; the same Dice everywhere holds on a CPU)")
    p.set_defaults(func=cmd_demo)


def demo_dataset() -> Path:
    """Folder of the bundled sample (nnU-Net layout with imagesTs/labelsTs held out)."""
    from importlib import resources

    return Path(str(resources.files("medsight") / "resources" / "demo_hippocampus"))


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from medsight.cli.common import parse_duration
    from medsight.cli.progress import TrainingProgress
    from medsight.engine.config import RunOptions
    from medsight.errors import MedsightError
    from medsight.evaluate.folders import evaluate_folders
    from medsight.tasks.segmentation.pipeline import predict, train
    from medsight.tasks.segmentation.plan import Plan

    if args.epochs < 1 or args.iterations < 1:
        raise MedsightError(f"Expected --epochs and --iterations >= 1, got {args.epochs} and {args.iterations}; "
                            "give positive numbers")
    data = demo_dataset()
    out = Path(args.out)
    run = out / "run"
    budget = parse_duration(args.time_budget) if args.time_budget else None
    steps = "for " + args.time_budget if budget else f"{args.epochs} epochs x {args.iterations} steps, seed {args.seed}"
    print(f"medsight demo: 3D hippocampus segmentation on {data} (16 training + 4 held-out MRI volumes), {steps}")
    config = RunOptions(epochs=None if budget else args.epochs, time_budget_s=budget, iterations_per_epoch=args.iterations,
                        seed=args.seed, device=args.device, deterministic=True, num_threads=DEMO_THREADS,
                        resume=False, precision="fp32")  # float32: bfloat16 kernels differ between CPUs
    t0 = time.perf_counter()
    train(data, run, folds=[0], config=config, base_filters=16, progress=TrainingProgress(quiet=args.quiet))
    preds = predict(run, data / "imagesTs", out / "predictions", device=args.device, overwrite=True)
    labels = Plan.load(run / "plans.json").labels
    result = evaluate_folders(out / "predictions", data / "labelsTs", labels=labels, out_dir=out / "evaluation",
                              distances=True, bootstrap=200)
    report = run / "report.html"  # written by train() with the validation overlays
    print(f"\nheld-out cases: {len(preds)}  (predictions in {out / 'predictions'}); {time.perf_counter() - t0:.0f} s")
    for name, lab in result.summary.get("labels", {}).items():
        m = lab["metrics"]
        print(f"  {name:<10} Dice {m['dice']['mean']:.3f}   HD95 {m['hd95']['mean']:.2f} mm")
    print(f"report: {report}")
    return 0
