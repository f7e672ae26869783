"""CPU deployment benchmark: latency per case of PyTorch eager vs onnxruntime (graph optimisation levels, dynamic int8
quantisation, intra-op threads), and what int8 costs in Dice / AUC.

Three small models are trained inside the benchmark under short wall-time budgets (so the absolute Dice and AUC are
those of minutes of CPU training, not of converged models; the point is the change between engines):

* ``xray2d`` - lung segmentation of Montgomery chest X-rays (2D, 512x512 PNG): trained on the first 40 images (fold
  ``all``), scored on the last 6;
* ``mri3d`` - hippocampus segmentation (MSD Task04, 3D MRI NIfTI): trained on the first 60 volumes, scored on the
  last 8;
* ``cls28`` - PneumoniaMNIST classification (2D chest X-ray, 28x28): trained on its train split (val split for
  calibration and threshold), scored on its 624-image test split.

Latency is the wall time of one case through the whole prediction path (preprocessing, sliding window, resampling
back, arg-max, postprocessing; images already in memory; no mirror TTA, which multiplies every engine's time by the
flips: 4 in 2D, 8 in 3D), after one warm-up case, over ``--repeats`` passes over ``--cases`` cases: median and 95th
percentile. Usage (from the repository root, run from a copy of the source so edits elsewhere cannot break it)::

    rm -rf /tmp/deploy_src && mkdir -p /tmp/deploy_src && cp -r src/medsight /tmp/deploy_src/
    PYTHONPATH=/tmp/deploy_src python benchmarks/deploy.py --out docs/results/deploy_cpu.json

It prints a table and writes the JSON (command, machine, load average, settings, figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: (label, engine, onnxruntime optimisation level, int8, threads) of the timed configurations.
CONFIGS = [
    ("torch eager", "torch", None, False, 1),
    ("torch eager", "torch", None, False, 2),
    ("onnxruntime, no graph optimisation", "onnx", "disable", False, 1),
    ("onnxruntime, basic optimisation", "onnx", "basic", False, 1),
    ("onnxruntime, all optimisations", "onnx", "all", False, 1),
    ("onnxruntime, all optimisations", "onnx", "all", False, 2),
    ("onnxruntime, all + dynamic int8", "onnx", "all", True, 1),
]


def _copy_pairs(src_images: Path, src_labels: Path, dest: Path, names: list[str], label_dir: str) -> Path:
    for sub, src in (("images", src_images), (label_dir, src_labels)):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copyfile(src / n, dest / sub / n)
    return dest


def _split(folder: Path, n_train: int, n_test: int) -> tuple[list[str], list[str]]:
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    return names[:n_train], names[-n_test:]


def _timed(fn: Callable[[Any], Any], items: list[Any], repeats: int) -> dict[str, Any]:
    fn(items[0])  # warm-up: first call allocates, onnxruntime finishes planning
    times = []
    for _ in range(repeats):
        for item in items:
            t0 = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(float(np.median(times)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2),
            "samples": len(times)}


def _segmentation(name: str, images: Path, labels: Path, label_dir: str, n_train: int, n_test: int,
                  args: argparse.Namespace) -> dict[str, Any]:
    from medsight.core.case import Case
    from medsight.deploy.export import export_run
    from medsight.engine.config import RunOptions
    from medsight.engine.networks import OnnxOptions
    from medsight.io import read_image
    from medsight.metrics.summary import SegmentationEvaluator
    from medsight.tasks.segmentation.pipeline import train
    from medsight.tasks.segmentation.predictor import segmentation_predictor

    work = args.work / name
    train_names, test_names = _split(images, n_train, n_test)
    dataset = _copy_pairs(images, labels, work / "data", train_names, label_dir)
    run = work / "run"
    t0 = time.time()
    train(dataset, run, folds="all", config=RunOptions(time_budget_s=args.budget, seed=0, device="cpu", num_threads=1))
    trained_s = time.time() - t0
    exports = {False: export_run(run, work / "onnx"), True: export_run(run, work / "onnx_int8", int8=True)}
    cases = [Case(case_id=n, image=read_image(images / n)) for n in test_names]
    refs = {n: read_image(labels / n).array[0] for n in test_names}
    rows, quality = [], {}
    for label, engine, level, int8, threads in CONFIGS:
        torch.set_num_threads(threads)
        source = run if engine == "torch" else exports[int8]
        pred = segmentation_predictor(source, engine=engine, device="cpu", tta=False,
                                      options=OnnxOptions(level or "all", threads))
        timing = _timed(lambda c, p=pred: p.predict_case(c, with_probabilities=False), cases[:args.cases], args.repeats)
        rows.append({"config": label, "engine": engine, "optimization": level, "int8": int8, "threads": threads, **timing})
        key = "torch" if engine == "torch" else "onnx_int8" if int8 else "onnx"
        if threads == 1 and key not in quality and (engine == "torch" or level == "all"):
            ev = SegmentationEvaluator(pred.plan.labels, distances=False)
            maps = {}
            for case in cases:
                lab = pred.predict_case(case, with_probabilities=False)[0].array[0]
                ref = refs[case.case_id]
                ev.add(case.case_id, lab, (ref > 127).astype(np.uint8) if ref.max() > 2 else ref, spacing=case.image.spacing)
                maps[case.case_id] = lab
            quality[key] = {"mean_dice": ev.summary(bootstrap=0)["foreground_mean"]["dice"]["mean"], "maps": maps}
    agreement = {k: float(np.mean([np.mean(quality[k]["maps"][c] == quality["torch"]["maps"][c]) for c in refs]))
                 for k in ("onnx", "onnx_int8")}
    plan = json.loads((run / "plans.json").read_text())
    return {
        "train_cases": len(train_names), "test_cases": len(test_names), "train_budget_s": args.budget,
        "train_wall_s": round(trained_s, 1), "patch_size": plan["patch_size"], "filters": plan["network"]["filters"],
        "image_shape": list(cases[0].image.shape),
        "model_bytes": {k: (v / "fold_all" / "model.onnx").stat().st_size for k, v in (("fp32", exports[False]), ("int8", exports[True]))},
        "dice": {k: round(v["mean_dice"], 4) for k, v in quality.items()},
        "label_agreement_with_torch": {k: round(v, 5) for k, v in agreement.items()},
        "latency": rows,
    }


def _classification(args: argparse.Namespace) -> dict[str, Any]:
    from medsight.data.dataset import load_case, load_dataset
    from medsight.deploy.export import export_run
    from medsight.engine.config import RunOptions
    from medsight.tasks.classification.pipeline import (
        ClassificationPredictor,
        predict_classification,
        train_classification,
    )
    from medsight.tasks.classification.plan import load_plan
    from medsight.transforms.classification import prepare_image

    npz = DATA / "pneumoniamnist" / "pneumoniamnist.npz"
    work = args.work / "cls28"
    run = work / "run"
    t0 = time.time()
    torch.set_num_threads(1)
    train_classification(npz, run, folds=[0], network="smallcnn",
                         config=RunOptions(time_budget_s=args.budget, seed=0, device="cpu", num_threads=1))
    trained_s = time.time() - t0
    exports = {False: export_run(run, work / "onnx"), True: export_run(run, work / "onnx_int8", int8=True)}
    auc = {}
    for key, source, engine in (("torch", run, "torch"), ("onnx", exports[False], "onnx"), ("onnx_int8", exports[True], "onnx")):
        predict_classification(source, npz, work / f"test_{key}", split="test", engine=engine, tta=False)
        metrics = json.loads((work / f"test_{key}" / "metrics.json").read_text())
        auc[key] = {"auc": round(metrics["auc"], 4), "accuracy": round(metrics["accuracy"], 4), "n": metrics["n"]}
    spec, plan = load_dataset(npz), load_plan(run / "plans.json")
    images = [prepare_image(load_case(spec, ref).image, plan)[None] for ref in spec.test_cases[:args.cases]]
    rows = []
    for label, engine, level, int8, threads in CONFIGS:
        if engine == "onnx" and level != "all":
            continue  # classification networks run through the default session options
        torch.set_num_threads(threads)
        pred = ClassificationPredictor(run if engine == "torch" else exports[int8], engine=engine, tta=False)
        timing = _timed(pred.probabilities, images, args.repeats * 10)
        rows.append({"config": label, "engine": engine, "optimization": level, "int8": int8, "threads": threads, **timing})
    return {"train_split": "train (fold 0 = MedMNIST train/val)", "train_budget_s": args.budget, "train_wall_s": round(trained_s, 1),
            "network": "smallcnn", "test": auc, "latency": rows}


def _print(results: dict[str, Any]) -> None:
    for name, res in results["datasets"].items():
        quality = res.get("dice") or {k: v["auc"] for k, v in res["test"].items()}
        metric = "Dice" if "dice" in res else "AUC"
        print(f"\n{name}: {metric} torch {quality['torch']}  onnx {quality['onnx']}  onnx int8 {quality['onnx_int8']}")
        base = res["latency"][0]["median_ms"]
        print(f"{'configuration':<38} {'threads':>7} {'median ms':>10} {'p95 ms':>9} {'speed-up':>9}")
        for r in res["latency"]:
            print(f"{r['config']:<38} {r['threads']:>7} {r['median_ms']:>10.1f} {r['p95_ms']:>9.1f} {base / r['median_ms']:>8.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "deploy_cpu.json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/medsight_deploy_bench"))
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds per model (default 60)")
    ap.add_argument("--cases", type=int, default=3, help="cases timed per configuration (default 3)")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the timed cases (default 2; x10 for the 28x28 classifier)")
    ap.add_argument("--only", choices=["xray2d", "mri3d", "cls28"], action="append", help="run only these parts")
    args = ap.parse_args()
    import medsight
    from medsight.report.card import software_versions

    shutil.rmtree(args.work, ignore_errors=True)
    start = time.time()
    load_before = os.getloadavg()
    parts = args.only or ["xray2d", "mri3d", "cls28"]
    datasets: dict[str, Any] = {}
    if "xray2d" in parts:
        mont = DATA / "montgomery_cxr_lung_512"
        datasets["xray2d"] = _segmentation("xray2d", mont / "cxr", mont / "masks", "masks", 40, 6, args)
    if "mri3d" in parts:
        hip = DATA / "msd_task04_hippocampus_cropped"
        datasets["mri3d"] = _segmentation("mri3d", hip / "images", hip / "labels", "labels", 60, 8, args)
    if "cls28" in parts:
        datasets["cls28"] = _classification(args)
    results = {
        "command": " ".join(["python", *sys.argv]), "medsight_source": str(Path(medsight.__file__).parent),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg(), "software": software_versions()},
        "settings": {"budget_s": args.budget, "cases": args.cases, "repeats": args.repeats, "tta": False},
        "wall_s": round(time.time() - start, 1), "datasets": datasets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _print(results)
    print(f"\nwritten: {args.out} ({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
