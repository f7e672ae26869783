"""Hippocampus atlas-to-subject registration: no registration vs classical (SimpleITK) vs learned (VoxelMorph-style).

The 260 cases are split with a seeded permutation into 20 held-out test subjects and a training pool of 240. The
learned network trains on the pool (fold 0 of a 5-fold split: 192 training / 48 validation cases, the atlas chosen
among the training cases) within a CPU time budget; the same atlas is then registered onto each test subject by each
method and its labels warped (nearest neighbour) and compared with the subject's labels.

    python benchmarks/registration.py --budget 10m --out /tmp/medsight_registration_bench

Prints a table and writes docs/results/registration_hippocampus.json. Training resumes from ``OUT/fold_0`` when it is
there (``--resume``), so a finished run is evaluated again without retraining.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medsight.cli.common import parse_duration
from medsight.data.dataset import load_case, load_dataset
from medsight.engine.config import RunOptions
from medsight.tasks.registration.classical import register_images
from medsight.tasks.registration.evaluate import evaluate_pair
from medsight.tasks.registration.learned import load_registration_model, predict_transform, train_registration
from medsight.tasks.registration.transforms import warp_image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "msd_task04_hippocampus_cropped"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--budget", default="10m", help="training time budget of the learned model")
    ap.add_argument("--test-cases", type=int, default=20)
    ap.add_argument("--out", default="/tmp/medsight_registration_bench", help="run folder of the learned model")
    ap.add_argument("--json", default=str(ROOT / "docs" / "results" / "registration_hippocampus.json"))
    args = ap.parse_args()

    spec = load_dataset(args.data)
    ids = sorted(c.case_id for c in spec.cases)
    order = np.random.default_rng(0).permutation(len(ids))
    test_ids = sorted(ids[i] for i in order[: args.test_cases])
    pool = sorted(ids[i] for i in order[args.test_cases:])

    budget = parse_duration(args.budget)
    t0 = time.perf_counter()
    summary = train_registration(args.data, args.out, config=RunOptions(time_budget_s=budget, seed=0, resume=True), folds=[0], case_ids=pool)
    wall_seconds = time.perf_counter() - t0
    trained = summary["trained_now"]["0"]
    model, plan = load_registration_model(args.out)
    atlas = load_case(spec, spec.case(plan.atlas))
    print(f"atlas {plan.atlas}; network grid {plan.shape} at {plan.spacing} mm; trained {trained['epochs']} epochs "
          f"in {trained['seconds']:.0f}s (this call: {wall_seconds:.0f}s, incl. preparing {len(pool)} cases)")

    methods = ("identity", "classical", "learned")
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    for cid in test_ids:
        subject = load_case(spec, spec.case(cid))
        for method in methods:
            t = time.perf_counter()
            if method == "identity":
                transform = sitk.Transform(3, sitk.sitkIdentity)
            elif method == "classical":
                transform, _ = register_images(subject.image, atlas.image)
            else:
                transform, _ = predict_transform(model, plan, subject.image, atlas.image)
            seconds = time.perf_counter() - t
            warped = warp_image(atlas.label_map, transform, reference=subject.image, labels=True)
            res = evaluate_pair(transform, subject.image, warped_labels=warped, fixed_labels=subject.label_map)
            rows[method].append({"case": cid, "seconds": seconds, **res})
        print(cid, "  ".join(f"{m} {rows[m][-1]['mean_dice']:.3f}" for m in methods), flush=True)

    result = {"dataset": "MSD Task04 Hippocampus (cropped)", "atlas": plan.atlas, "test_cases": test_ids,
              "training_pool": len(pool), "network_grid": plan.shape, "network_spacing_mm": plan.spacing,
              "learned": {"budget_s": budget, "train_seconds": round(trained["seconds"], 1), "epochs": trained["epochs"],
                          "best_val_dice": trained["best_val_dice"], "best_epoch": trained["best_epoch"],
                          "plan": plan.to_dict()},
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU",
              "methods": {}}
    print(f"\n{'method':<10} {'Dice 1':>8} {'Dice 2':>8} {'mean':>8} {'folding':>10} {'s/pair':>8}")
    for m in methods:
        r = rows[m]
        d1 = float(np.nanmean([x["dice"].get("1", np.nan) for x in r]))
        d2 = float(np.nanmean([x["dice"].get("2", np.nan) for x in r]))
        mean = float(np.mean([x["mean_dice"] for x in r]))
        sd = float(np.std([x["mean_dice"] for x in r]))
        fold = float(np.mean([x["folding_fraction"] for x in r]))
        sec = float(np.mean([x["seconds"] for x in r]))
        result["methods"][m] = {"dice_label_1": d1, "dice_label_2": d2, "mean_dice": mean, "mean_dice_sd": sd,
                                "folding_fraction": fold, "seconds_per_pair": sec, "per_case": r}
        print(f"{m:<10} {d1:8.3f} {d2:8.3f} {mean:8.3f} {fold:10.5f} {sec:8.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
