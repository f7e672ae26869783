"""Segmentation quality under a fixed CPU/GPU wall-time budget, on the shared real datasets.

Usage (from the repository root, with ../shared/data beside it)::

    python benchmarks/segmentation_budget.py hippocampus --budget 20m --out runs/bench_hippocampus
    python benchmarks/segmentation_budget.py drive --budget 20m
    python benchmarks/segmentation_budget.py montgomery --budget 20m
    python benchmarks/segmentation_budget.py openkbp --budget 20m

Hippocampus, Montgomery and OpenKBP: fold 0 of medsight's fixed, saved 5-fold split (seed 12345); the score is the validation
fold's mean Dice per label (predicted with mirror TTA, at native geometry). DRIVE: trains on the 20 training images
(fold "all"), predicts the 20 test images and scores F1 and pixel AUC inside the FOV masks against 1st_manual.
Settings are chosen on validation data only; test splits are never used for choices. The script prints a table and
writes ``<out>/benchmark.json`` with the command, the machine and the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "hippocampus": DATA / "msd_task04_hippocampus_cropped",
    "drive": DATA / "drive" / "training",
    "montgomery": DATA / "montgomery_cxr_lung_512",
    "openkbp": DATA / "openkbp_hn_ct",
}


def _plan_summary(path: Path) -> dict | None:
    if not path.is_file():
        return None
    plan = json.loads(path.read_text())
    return {"patch": plan["patch_size"], "batch": plan["batch_size"], "filters": plan["network"]["filters"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=sorted(DATASETS))
    ap.add_argument("--budget", default="20m")
    ap.add_argument("--out")
    ap.add_argument("--base-filters", type=int)
    ap.add_argument("--plan", type=Path, help="train with this plans.json (e.g. an edited network) instead of planning")
    ap.add_argument("--device")
    ap.add_argument("--iterations", type=int, default=None, help="iterations per epoch (default: the plan's)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="training arithmetic")
    ap.add_argument("--evaluate-only", action="store_true", help="reuse the trained run in --out; only predict and score")
    ap.add_argument("--epochs", type=int, help="a fixed number of epochs instead of the time budget (equal-step comparisons)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: every core)")
    ap.add_argument("--min-batch", type=int, help="plan with this min_batch (default: the planner's, see make_plan)")
    ap.add_argument("--strided-first-stage", choices=["on", "off"], help="plan with (on) or without (off) a strided "
                    "first stage (default: the planner's: on in 2D, off in 3D; see make_plan)")
    ap.add_argument("--fold", choices=["0", "all"], help="DRIVE: 0 scores its validation fold (4 of the 20 training "
                    "images) instead of the test set; the default is 'all' for DRIVE, 0 for the others")
    args = ap.parse_args()
    if args.fold == "all" and args.dataset != "drive":
        ap.error("--fold all is for DRIVE (scored on its test set); the other datasets are scored on fold 0")

    from medsight.cli.common import parse_duration
    from medsight.engine.config import RunOptions
    from medsight.tasks.segmentation.pipeline import predict, train

    out = Path(args.out or ROOT / "runs" / f"bench_{args.dataset}")
    budget = None if args.epochs else parse_duration(args.budget)
    config = RunOptions(time_budget_s=budget, epochs=args.epochs, device=args.device, iterations_per_epoch=args.iterations,
                        precision=args.precision, seed=args.seed, num_threads=args.threads)
    t0 = time.time()
    fold: list[int] | str = [0] if (args.fold or ("all" if args.dataset == "drive" else "0")) == "0" else "all"
    plan_path = args.plan
    if args.plan and (args.min_batch or args.base_filters or args.strided_first_stage):
        ap.error("--plan fixes the network and batch: leave out --min-batch, --base-filters and --strided-first-stage")
    if (args.min_batch or args.strided_first_stage) and not args.evaluate_only:
        from medsight.tasks.segmentation.pipeline import plan_dataset

        out.mkdir(parents=True, exist_ok=True)
        plan_path = out / "plans.json"
        strided = None if args.strided_first_stage is None else args.strided_first_stage == "on"
        plan_dataset(DATASETS[args.dataset], plan_path, base_filters=args.base_filters, min_batch=args.min_batch,
                     strided_first_stage=strided)
    if args.evaluate_only:
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
        key = "all" if fold == "all" else "0"
        rows = list(csv.DictReader((out / f"fold_{key}" / "metrics.csv").open()))
        summary["trained_now"] = {key: {"epochs": int(rows[-1]["epoch"]), "seconds": float(rows[-1]["seconds"])}}
        if fold != "all":
            from medsight.data.dataset import load_dataset
            from medsight.tasks.segmentation.pipeline import validate_fold

            val_ids = json.loads((out / "splits.json").read_text())[0]["val"]
            summary["trained_now"]["0"]["validation"] = validate_fold(load_dataset(DATASETS[args.dataset]), out,
                                                                      out / "fold_0", val_ids, device=args.device)
    else:
        summary = train(DATASETS[args.dataset], out, folds=fold, config=config, base_filters=args.base_filters,
                        plan_path=plan_path)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                    "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "budget_s": config.time_budget_s,
        "epochs": config.epochs,
        "seed": config.seed,
        "precision": config.precision,
        "plan": _plan_summary(out / "plans.json"),
        "trained": summary.get("trained_now"),
    }
    if fold == "all":
        from medsight.evaluate.folders import evaluate_folders

        test = DATA / "drive" / "test"
        predict(out, test / "images", out / "test_predictions", save_probabilities=True, device=args.device)
        ev = evaluate_folders(out / "test_predictions", test / "1st_manual", roi_dir=test / "mask",
                              prob_dir=out / "test_predictions", out_dir=out / "test_evaluation", distances=False)
        fg = next(iter(ev.summary["labels"].values()))["metrics"]
        result["test"] = {"f1": fg["dice"]["mean"], "auc": fg["auc"]["mean"], "cases": len(ev.rows)}
        print(f"DRIVE test (20 images, inside FOV): F1 {fg['dice']['mean']:.4f}  AUC {fg['auc']['mean']:.4f}")
    else:
        val = summary["trained_now"]["0"]["validation"]
        vsum = json.loads((out / "fold_0" / "validation" / "summary.json").read_text())
        per_label = {k: v["metrics"]["dice"]["mean"] for k, v in vsum["labels"].items()}
        result["validation_fold0"] = {"mean_dice": val["mean_dice"], "per_label_dice": per_label, "cases": val["cases"]}
        print(f"{args.dataset} fold 0 validation ({val['cases']} cases): mean Dice {val['mean_dice']:.4f}  {per_label}")
    result["wall_s"] = round(time.time() - t0, 1)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"written: {out / 'benchmark.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
