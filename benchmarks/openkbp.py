"""OpenKBP head-and-neck CT, 7 organs at risk with partial labels: fold 0 after a fixed number of training steps.

Usage (from the repository root, with ../shared/data beside it)::

    /usr/bin/time -v python benchmarks/openkbp.py --epochs 6 --iterations 20 --out runs/bench_openkbp

The dataset's self-configured plan is used as ``medsight plan`` writes it (CT clipping and z-score from the
foreground fingerprint; partial labels from ``contoured_structures.json``); training is medsight's
``SegmentationTrainer`` on fold 0 of the fixed 5-fold split (seed 12345), a fixed number of epochs and steps (not a
wall-time budget, so the result does not depend on the machine's load). In-training validation runs on the last
epoch only, on ``--val-max-cases`` cases. The fold's 24 validation cases are then predicted at native geometry with
the best checkpoint, without mirror TTA by default (``--tta`` to add it; the plan no longer mirrors OpenKBP, whose
labels hold a left/right pair, so it changes nothing there) and window overlap ``--overlap``, and scored per organ (Dice, HD95, volume error) with organs
that were not contoured in a case left out of that case. ``medsight train`` does the same with TTA and 50 % overlap.

Writes ``<out>/benchmark_<name>.json`` (command, machine, figures) and the run folder's ``fold_0/validation/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "openkbp_hn_ct"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_openkbp"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=20, help="optimiser steps per epoch")
    ap.add_argument("--base-filters", type=int, default=None)
    ap.add_argument("--target-spacing", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"),
                    help="re-plan for this target spacing (mm) instead of the fingerprint's median (a coarser, cheaper plan)")
    ap.add_argument("--voxel-budget", type=int, default=None, help="patch voxels x batch size when re-planning")
    ap.add_argument("--val-max-cases", type=int, default=4, help="cases of the in-training (last-epoch) validation")
    ap.add_argument("--tta", action="store_true", help="mirror TTA in the final validation")
    ap.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap of the final validation")
    ap.add_argument("--train-cases", type=int, default=None, help="use only the first N training cases of fold 0")
    ap.add_argument("--init-from", default=None, help="fine-tune from this checkpoint")
    ap.add_argument("--freeze-encoder-epochs", type=int, default=0)
    ap.add_argument("--hold-out", type=int, default=0,
                    help="leave the first N training cases of fold 0 out (kept for a fine-tuning experiment)")
    ap.add_argument("--name", default="fold_0", help="folder of this training inside --out (runs can share the cache)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of the training step (default 1: on a "
                    "2-core machine shared with other jobs, 2 OpenMP threads were 5x slower per step than 1)")
    ap.add_argument("--val-cases", type=int, default=None, help="score only the first N validation cases (smoke tests)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np

    from medsight.core.atomic import write_text
    from medsight.core.tables import json_safe
    from medsight.data.dataset import load_case
    from medsight.data.fingerprint import Fingerprint
    from medsight.data.splits import load_or_create_splits
    from medsight.engine.config import RunOptions
    from medsight.engine.run import BEST
    from medsight.metrics.summary import SegmentationEvaluator, rows_to_csv
    from medsight.tasks.segmentation.pipeline import load_segmentation_dataset, plan_dataset
    from medsight.tasks.segmentation.plan import Plan, make_plan
    from medsight.tasks.segmentation.predictor import Predictor
    from medsight.tasks.segmentation.trainer import SegmentationTrainer
    from medsight.transforms.cache import CaseCache, preprocess_dataset

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = load_segmentation_dataset(args.data)
    if (out / "plans.json").is_file():
        plan = Plan.load(out / "plans.json")
    else:
        plan = plan_dataset(args.data, out, base_filters=args.base_filters, voxel_budget=args.voxel_budget)
        if args.target_spacing:  # as if every case had been acquired at that spacing: the planner's rules on it
            fp = Fingerprint.from_dict(plan.fingerprint["full"])
            target = np.asarray(args.target_spacing, dtype=float)
            shapes = [list(np.asarray(sh) * np.asarray(sp) / target) for sh, sp in zip(fp.shapes, fp.spacings)]
            moved = make_plan(replace(fp, spacings=[list(target)] * fp.num_cases, shapes=shapes), dataset=plan.dataset,
                              labels=plan.labels, voxel_budget=args.voxel_budget,
                              base_filters=args.base_filters or plan.network.filters[0])
            plan = moved.with_changes(fingerprint=plan.fingerprint, absent_labels=plan.absent_labels,
                                      normalization=plan.normalization)
    plan = plan.with_changes(training=type(plan.training)(**{**plan.training.__dict__, "val_max_cases": args.val_max_cases}))
    plan.save(out / "plans.json")
    ids = preprocess_dataset(spec, plan, out / "preprocessed")
    t_pre = time.time() - t0
    splits = load_or_create_splits(out / "splits.json", ids, k=5)
    train_ids, val_ids = list(splits[0]["train"]), list(splits[0]["val"])
    if args.train_cases:  # the held-out cases first: --train-cases 10 with another run's --hold-out 10
        train_ids = train_ids[: args.train_cases]
    else:
        train_ids = train_ids[args.hold_out:]
    if args.val_cases:
        val_ids = val_ids[: args.val_cases]
    cache = CaseCache(out / "preprocessed", ids)
    config = RunOptions(epochs=args.epochs, iterations_per_epoch=args.iterations, seed=args.seed, device="cpu",
                        val_every=10**6, num_threads=args.threads, init_from=args.init_from, freeze_encoder_epochs=args.freeze_encoder_epochs)
    fold = out / args.name
    t1 = time.time()
    trainer = SegmentationTrainer(plan, cache, train_ids, val_ids, fold, config)
    fit = trainer.fit()
    t_train = time.time() - t1

    t2 = time.time()
    pred = Predictor.from_checkpoints([fold / BEST], device="cpu", tta=args.tta)
    pred.overlap = args.overlap
    ev = SegmentationEvaluator(plan.labels, absent=plan.absent_labels)
    for cid in val_ids:
        case = load_case(spec, spec.case(cid))
        labels, _ = pred.predict_case(case, with_probabilities=False)
        ev.add(cid, labels.array[0], case.label_array, spacing=case.image.spacing)
    vdir = fold / "validation"
    vdir.mkdir(parents=True, exist_ok=True)
    write_text(vdir / "per_case.csv", rows_to_csv(ev.rows))
    summary = ev.summary()
    write_text(vdir / "summary.json", json.dumps(json_safe(summary), indent=2))
    t_val = time.time() - t2

    per_organ = {}
    for name, lab in summary["labels"].items():
        m = lab["metrics"]
        per_organ[name] = {"dice": m["dice"]["mean"], "dice_ci": [m["dice"]["ci_low"], m["dice"]["ci_high"]],
                           "hd95_mm": m["hd95"]["mean"], "volume_error_ml": m["volume_error"]["mean"],
                           "volume_error_rel": m["volume_error_rel"]["mean"], "cases_scored": m["dice"]["n"],
                           "cases_unannotated": lab["unannotated"]}
    mean_dice = float(np.mean([v["dice"] for v in per_organ.values()]))
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "note": "2 shared CPU cores, measured under load: other developers' trainings and tests ran at "
                            "the same time (load average 5-11)"},
        "dataset": str(args.data), "fold": 0, "train_cases": len(train_ids), "val_cases": len(val_ids),
        "held_out_training_cases": 0 if args.train_cases else args.hold_out, "threads": args.threads,
        "partial_label_cases": len(plan.absent_labels),
        "plan": {"target_spacing": plan.target_spacing, "patch_size": plan.patch_size, "batch_size": plan.batch_size,
                 "filters": plan.network.filters, "normalization": [n.__dict__ for n in plan.normalization]},
        "training": {"epochs": fit["epochs"], "iterations_per_epoch": args.iterations,
                     "steps": fit["epochs"] * args.iterations, "seconds": round(t_train, 1),
                     "init_from": args.init_from, "freeze_encoder_epochs": args.freeze_encoder_epochs,
                     "init_report": {k: v for k, v in trainer.init_report.items() if k not in ("loaded", "skipped")}},
        "validation": {"tta": args.tta, "overlap": args.overlap, "seconds": round(t_val, 1),
                       "mean_organ_dice": mean_dice, "per_organ": per_organ},
        "preprocess_seconds": round(t_pre, 1), "total_seconds": round(time.time() - t0, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    write_text(out / f"benchmark_{args.name}.json", json.dumps(json_safe(result), indent=2) + "\n")
    print(f"fold 0: {len(train_ids)} training / {len(val_ids)} validation cases, {result['training']['steps']} steps "
          f"in {t_train:.0f} s; validation {t_val:.0f} s")
    for name, v in per_organ.items():
        print(f"  {name:<13} Dice {v['dice']:.3f}  HD95 {v['hd95_mm']:.1f} mm  volume error {v['volume_error_ml']:+.1f} ml "
              f"({v['cases_scored']} scored, {v['cases_unannotated']} not contoured)")
    print(f"mean organ Dice {mean_dice:.3f}; peak RSS {result['peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
