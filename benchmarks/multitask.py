"""Does joint learning help? Multi-task vs segmentation-only vs classification-only on Montgomery chest X-rays.

Usage (from the repository root, with ../shared/data beside it)::

    python benchmarks/multitask.py --budget 180s --seeds 0,1,2 --max-size 64 --threads 1 --val-every 2 \\
        --json docs/results/multitask_montgomery_cpu.json

Montgomery (138 chest X-rays, lung masks, TB label = the file name's last digit) is planned once with
``medsight plan --task multitask --label-from-name`` at a low resolution (``--max-size``). The three arms share that
plan, its preprocessed cache and one fixed split (fold 0 of a 3-fold split stratified by class, seed 12345: 92
training / 46 validation cases) and differ only in ``tasks``:

* ``multitask``: segmentation + classification, learned uncertainty weighting (the plan's default);
* ``segmentation``: the segmentation decoder alone (the classification head is not trained);
* ``classification``: the encoder and classification head alone (the decoder is not run).

The encoder is the same DynUNet in every arm. Each run trains for the same wall-time budget (validation included)
with one seed (``--epochs N`` instead gives every run the same number of updates); the validation fold's masks are
scored at the native 512 x 512 resolution (mean Dice, after the postprocessing decision) and its calibrated class
probabilities by AUC. Prints a table and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "montgomery_cxr_lung_512"
ARMS = {"multitask": ["segmentation", "classification"], "segmentation": ["segmentation"], "classification": ["classification"]}


def _prepare(out: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """The shared plan and split (planned and preprocessed once)."""
    from medsight.data.splits import load_or_create_splits
    from medsight.tasks.multitask.data import NAME_PATTERN, load_multitask_dataset
    from medsight.tasks.multitask.pipeline import plan_multitask
    from medsight.transforms.cache import preprocess_dataset

    base = out / "shared"
    if not (base / "plans.json").is_file():
        plan_multitask(args.data, base, label_from_name=NAME_PATTERN, base_filters=args.base_filters, max_size=args.max_size)
    from medsight.tasks.multitask.plan import MultitaskPlan

    plan = MultitaskPlan.load(base / "plans.json")
    data = load_multitask_dataset(args.data, label_from_name=NAME_PATTERN)
    ids = preprocess_dataset(data.spec, plan.segmentation_plan(), base / "preprocessed")
    load_or_create_splits(base / "splits.json", ids, k=3, strata=[f"{data.classes.get(c, -1)}/{data.has_mask(c)}" for c in ids])
    return base, base / "plans.json"


def _run(out: Path, base: Path, arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from medsight.engine.config import RunOptions
    from medsight.tasks.multitask.data import NAME_PATTERN
    from medsight.tasks.multitask.pipeline import train_multitask
    from medsight.tasks.multitask.plan import MultitaskPlan

    run = out / f"{arm}_seed{seed}"
    done = run / "benchmark_result.json"
    if done.is_file():  # resume an interrupted benchmark
        return json.loads(done.read_text())
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    MultitaskPlan.load(base / "plans.json").with_changes(tasks=ARMS[arm]).save(run / "plans.json")
    shutil.copyfile(base / "splits.json", run / "splits.json")
    (run / "preprocessed").symlink_to((base / "preprocessed").resolve(), target_is_directory=True)
    config = RunOptions(time_budget_s=None if args.epochs else args.budget, epochs=args.epochs, seed=seed, device="cpu",
                         num_threads=args.threads, val_every=args.val_every)
    t0 = time.perf_counter()
    summary = train_multitask(args.data, run, folds=[0], config=config, num_folds=3, label_from_name=NAME_PATTERN)
    fold = summary["trained_now"]["0"]
    result = {"arm": arm, "seed": seed, "tasks": ARMS[arm], "epochs": fold["epochs"], "train_seconds": round(fold["seconds"], 1),
              "wall_seconds": round(time.perf_counter() - t0, 1), "best_epoch": fold["best_epoch"],
              "dice": (summary.get("segmentation") or {}).get("mean_dice"),
              "auc": (summary.get("classification") or {}).get("auc"),
              "validation_cases": fold["validation"]["cases"]}
    done.write_text(json.dumps(result, indent=2))
    return result


def _stats(values: list[float | None]) -> dict[str, Any]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not v.size:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)), 4) if v.size > 1 else None,
            "min": round(float(v.min()), 4), "max": round(float(v.max()), 4), "n": int(v.size)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("/tmp/medsight_bench_multitask"))
    ap.add_argument("--budget", default="180s", help="wall time per run (training + per-epoch validation)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--epochs", type=int, help="train this many epochs instead of a wall-time budget (equal updates)")
    ap.add_argument("--max-size", type=int, default=64, help="longest side of the network input (px)")
    ap.add_argument("--base-filters", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (on a busy 2-core machine 1 is faster than 2)")
    ap.add_argument("--val-every", type=int, default=2, help="validate every N epochs during training")
    ap.add_argument("--json", type=Path, help="write the results here too (e.g. docs/results/multitask_montgomery_cpu.json)")
    args = ap.parse_args()

    from medsight.cli.common import parse_duration

    args.budget = parse_duration(args.budget)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    base, _ = _prepare(args.out, args)
    runs = [_run(args.out, base, arm, seed, args) for seed in seeds for arm in arms]
    from medsight.tasks.multitask.plan import MultitaskPlan

    plan = MultitaskPlan.load(base / "plans.json")
    splits = json.loads((base / "splits.json").read_text())
    import torch

    result = {
        "benchmark": "multitask_montgomery", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": args.threads,
                    "torch": torch.__version__, "device": "cpu", "note": "2 cores shared with other jobs",
                    "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)}},
        "budget_seconds_per_run": None if args.epochs else args.budget, "epochs_per_run": args.epochs, "seeds": seeds,
        "plan": {"input": plan.patch_size, "target_spacing": plan.target_spacing, "filters": plan.network.filters,
                 "batch_size": plan.batch_size, "loss_weighting": plan.loss_weighting, "classes": plan.class_names,
                 "class_counts": plan.class_counts},
        "split": {"fold": 0, "folds": 3, "train": len(splits[0]["train"]), "validation": len(splits[0]["val"])},
        "runs": runs,
        "summary": {arm: {"dice": _stats([r["dice"] for r in runs if r["arm"] == arm]),
                          "auc": _stats([r["auc"] for r in runs if r["arm"] == arm]),
                          "epochs": _stats([r["epochs"] for r in runs if r["arm"] == arm])} for arm in arms},
    }
    text = json.dumps(result, indent=2)
    (args.out / "benchmark.json").write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(f"{'arm':<16}{'Dice mean ± SD':<22}{'AUC mean ± SD':<22}epochs")
    for arm, s in result["summary"].items():
        def fmt(d: dict[str, Any]) -> str:
            return "n/a" if d["mean"] is None else f"{d['mean']:.4f} ± {d['sd'] if d['sd'] is not None else 0:.4f}"
        print(f"{arm:<16}{fmt(s['dice']):<22}{fmt(s['auc']):<22}{s['epochs']['mean']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
