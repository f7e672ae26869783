"""Does GAN synthesis help when labelled data is scarce? Real-only vs real + synthetic, several seeds, honestly.

Usage (from the repository root, with ../shared/data beside it)::

    python benchmarks/synthesis.py breastmnist --seeds 0,1,2 --out /tmp/gan_bench/breastmnist
    python benchmarks/synthesis.py drive --seeds 0,1,2 --out /tmp/gan_bench/drive

For each seed, paired arms that differ only in ``--synthetic``:

* **breastmnist**: a stratified ``--fraction`` (10 %) of the official training split (seeded) is the whole labelled
  set; the official validation split selects checkpoints (early stopping) and calibrates; the official test split is
  predicted once per arm and scored (AUC). A class-conditional GAN trains on the same subset; ``--n-synthetic``
  samples (classes in training proportion) join the training batches with probability ``--ratio``.
* **drive**: ``--images`` (5) of the 20 training images (seeded) train a U-Net on every image (fold ``all``); the
  mask-conditioned GAN trains on the same images and renders ``--n-synthetic`` images for elastically deformed
  training masks; the 20 test images are predicted (no TTA) and scored inside the FOV (F1 = Dice, pixel AUC).

Budgets are fixed iteration counts (not wall time), so both arms get the same number of optimiser steps whatever
the load on the machine; all settings are fixed in advance and none is chosen on a test split.

Distribution quality (breastmnist): a ``smallcnn`` classifier that medsight trains on the full official training
split provides the feature space; Fréchet distance (FID-style) and precision / recall / density / coverage of each
seed's generated images against the real training images, next to real held-out images (val + test) of the same
count as a floor.

Writes ``<out>/synthesis_<regime>.json`` (and ``--results`` when given): command, machine, settings, per-seed
figures, mean and SD per arm, paired differences.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BREAST = DATA / "breastmnist" / "BreastMNIST.npz"
DRIVE = DATA / "drive"


def _config(seed: int, epochs: int, iterations: int, threads: int) -> Any:
    from medsight.engine.config import RunOptions

    return RunOptions(epochs=epochs, iterations_per_epoch=iterations, seed=seed, device="cpu", num_threads=threads)


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "min": float(arr.min()),
            "max": float(arr.max()), "n": int(len(arr))}


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.time()
    out = fn(*args, **kwargs)
    return out, round(time.time() - t0, 1)


# ---------------------------------------------------------------------------------------------- breastmnist
def breast_subset(out: Path, fraction: float, seed: int) -> Path:
    """The official file with its training split cut to a stratified ``fraction`` (val and test unchanged)."""
    with np.load(BREAST) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    y = arrays["train_labels"].reshape(-1)
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), max(2, round(fraction * (y == c).sum())), replace=False)
                                   for c in np.unique(y)]))
    arrays["train_images"], arrays["train_labels"] = arrays["train_images"][keep], arrays["train_labels"][keep]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "breastmnist_subset.npz"
    np.savez(path, **arrays)
    return path


def breast_arm(data: Path, run: Path, args: argparse.Namespace, seed: int, synthetic: Path | None) -> dict[str, Any]:
    from medsight.tasks.classification.pipeline import predict_classification, train_classification

    summary, seconds = _timed(train_classification, data, run, folds=[0], network=args.model, synthetic=synthetic,
                              synthetic_ratio=args.ratio, config=_config(seed, args.train_epochs, args.train_iterations, args.threads))
    predict_classification(run, data, run / "test", split="test", device="cpu")
    test = json.loads((run / "test" / "metrics.json").read_text())
    fold = summary["trained_now"]["0"]
    return {"test_auc": test["auc"], "test_accuracy": test["accuracy"], "test_balanced_accuracy": test["balanced_accuracy"],
            "val_auc": (summary.get("cross_validation") or {}).get("auc"), "epochs": fold["epochs"], "best_epoch": fold["best_epoch"],
            "stopped_early": fold["stopped_early"], "train_seconds": seconds}


# ---------------------------------------------------------------------------------------------- drive
def drive_subset(out: Path, images: int, seed: int) -> Path:
    """``images`` of the 20 DRIVE training images (seeded), as symbolic links in the original layout."""
    src = DRIVE / "training"
    ids = sorted(p.name.split("_")[0] for p in (src / "images").glob("*_training.tif"))
    pick = sorted(np.random.default_rng(seed).choice(ids, images, replace=False).tolist())
    root = out / "drive_subset"
    for sub, pattern in (("images", "{}_training.tif"), ("1st_manual", "{}_manual1.gif"), ("mask", "{}_training_mask.gif")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in pick:
            link = root / sub / pattern.format(i)
            if not link.exists():
                link.symlink_to(src / sub / pattern.format(i))
    return root


def drive_arm(data: Path, run: Path, args: argparse.Namespace, seed: int, synthetic: Path | None) -> dict[str, Any]:
    from medsight.evaluate.folders import evaluate_folders
    from medsight.tasks.segmentation.pipeline import plan_dataset, predict, train

    if not (run / "plans.json").is_file():  # a smaller voxel budget than the CPU default: more steps in a short budget
        plan_dataset(data, run, voxel_budget=args.voxel_budget)
    summary, seconds = _timed(train, data, run, folds="all", synthetic=synthetic, synthetic_ratio=args.ratio,
                              config=_config(seed, args.train_epochs, args.train_iterations, args.threads))
    test = DRIVE / "test"
    predict(run, test / "images", run / "test_predictions", tta=False, save_probabilities=True, device="cpu")
    ev = evaluate_folders(run / "test_predictions", test / "1st_manual", roi_dir=test / "mask", prob_dir=run / "test_predictions",
                          out_dir=run / "test_evaluation", distances=False)
    fg = next(iter(ev.summary["labels"].values()))["metrics"]
    return {"test_f1": fg["dice"]["mean"], "test_auc": fg["auc"]["mean"], "test_cases": len(ev.rows),
            "epochs": summary["trained_now"]["all"]["epochs"], "train_seconds": seconds}


# ---------------------------------------------------------------------------------------------- quality
def _features(model: torch.nn.Module, plan: Any, images: np.ndarray) -> np.ndarray:
    """Penultimate features of the classifier for uint8 images ``(N, H, W)``, preprocessed as for prediction."""
    from medsight.core.image import Image
    from medsight.transforms.classification import prepare_image

    x = torch.from_numpy(np.stack([prepare_image(Image(im[None]), plan) for im in images]))
    with torch.no_grad():
        return torch.cat([model.features(x[a:a + 128]) for a in range(0, len(x), 128)]).numpy()  # type: ignore[operator]


def breast_quality(out: Path, gan_dirs: dict[int, Path], subsets: dict[int, Path], args: argparse.Namespace) -> dict[str, Any]:
    """FID-style distance and precision/recall in the features of a classifier trained on the full training split."""
    from medsight.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from medsight.tasks.classification.pipeline import predict_classification, train_classification
    from medsight.tasks.classification.plan import load_plan
    from medsight.tasks.synthesis.quality import frechet_distance, precision_recall_coverage
    from medsight.tasks.synthesis.sample import sample_gan

    run = out / "feature_classifier"
    _, seconds = _timed(train_classification, BREAST, run, folds=[0], network="smallcnn",
                        config=_config(0, args.train_epochs, args.train_iterations, args.threads))
    predict_classification(run, BREAST, run / "test", split="test", device="cpu")
    plan = load_plan(run / "plans.json")
    model = model_from_checkpoint(load_checkpoint(run / "fold_0" / "checkpoint_best.pt"))
    with np.load(BREAST) as z:
        reference = np.asarray(z["train_images"])
        heldout = np.concatenate([np.asarray(z["val_images"]), np.asarray(z["test_images"])])
    ref = _features(model, plan, reference)
    n = len(heldout)

    def score(images: np.ndarray) -> dict[str, float]:
        f = _features(model, plan, images)
        return {"n": len(images), "fid": frechet_distance(ref, f), **precision_recall_coverage(ref, f, k=5)}

    sets: dict[str, Any] = {"real_heldout_val_test": score(heldout)}
    for seed, gan in gan_dirs.items():
        target = out / f"quality_samples_s{seed}"
        shutil.rmtree(target, ignore_errors=True)
        sample_gan(gan, n, target, seed=1000 + seed)
        with np.load(target / "synthetic_breastmnist_subset.npz") as z:
            sets[f"synthetic_seed{seed}"] = score(np.asarray(z["train_images"]))
        with np.load(subsets[seed]) as z:
            sets[f"real_gan_training_subset_seed{seed}"] = score(np.asarray(z["train_images"]))
    test = json.loads((run / "test" / "metrics.json").read_text())
    return {"feature_space": "penultimate layer of a medsight smallcnn trained on the full official training split "
                             f"({args.train_epochs} x {args.train_iterations} iterations, {seconds} s); its test AUC {test['auc']:.3f}",
            "reference": f"the {len(reference)} real training images", "k": 5, "sets": sets}


# ---------------------------------------------------------------------------------------------- main
def run_seed(regime: str, seed: int, out: Path, args: argparse.Namespace) -> tuple[dict[str, Any], Path, Path]:
    from medsight.tasks.synthesis.pipeline import train_gan
    from medsight.tasks.synthesis.sample import sample_gan

    work = out / f"seed{seed}"
    data = breast_subset(work, args.fraction, seed) if regime == "breastmnist" else drive_subset(work, args.images, seed)
    gan = work / "gan"
    gan_summary, gan_seconds = _timed(train_gan, data, gan, config=_config(seed, args.gan_epochs, args.gan_iterations, args.threads))
    synthetic = work / "synthetic"
    shutil.rmtree(synthetic, ignore_errors=True)
    _, sample_seconds = _timed(sample_gan, gan, args.n_synthetic, synthetic, seed=seed)
    arm = breast_arm if regime == "breastmnist" else drive_arm
    real = arm(data, work / "real_only", args, seed, None)
    mixed = arm(data, work / "real_plus_synthetic", args, seed, synthetic)
    last = json.loads(json.dumps(gan_summary, default=float))
    metrics = (gan / "metrics.csv").read_text().strip().splitlines()
    row = dict(zip(metrics[0].split(","), metrics[-1].split(",")))
    result = {"seed": seed, "gan": {"epochs": last["epochs"], "seconds": gan_seconds, "sample_seconds": sample_seconds,
                                   "last_epoch_validation": row}, "real_only": real, "real_plus_synthetic": mixed}
    print(f"seed {seed}: real-only {real} | real+synthetic {mixed}", flush=True)
    return result, gan, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("regime", choices=["breastmnist", "drive"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--fraction", type=float, default=0.1, help="breastmnist: share of the training split kept")
    ap.add_argument("--images", type=int, default=5, help="drive: training images kept")
    ap.add_argument("--voxel-budget", type=int, default=2 * 160 * 160, help="drive: patch voxels x batch of the U-Net plan")
    ap.add_argument("--model", default="smallcnn", help="breastmnist classifier")
    ap.add_argument("--gan-epochs", type=int, default=None)
    ap.add_argument("--gan-iterations", type=int, default=None)
    ap.add_argument("--train-epochs", type=int, default=None)
    ap.add_argument("--train-iterations", type=int, default=None)
    ap.add_argument("--ratio", type=float, default=0.5, help="share of each training batch drawn from the synthetic cases")
    ap.add_argument("--n-synthetic", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--results", help="also write the JSON here (e.g. docs/results/synthesis_breastmnist.json)")
    args = ap.parse_args()
    defaults = {"breastmnist": {"gan_epochs": 7, "gan_iterations": 100, "train_epochs": 40, "train_iterations": 5, "n_synthetic": 500},
                "drive": {"gan_epochs": 8, "gan_iterations": 50, "train_epochs": 5, "train_iterations": 30, "n_synthetic": 20}}
    for k, v in defaults[args.regime].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed, gans, subsets = [], {}, {}
    for seed in seeds:
        res, gans[seed], subsets[seed] = run_seed(args.regime, seed, out, args)
        per_seed.append(res)
    metrics = ["test_auc", "test_accuracy", "test_balanced_accuracy"] if args.regime == "breastmnist" else ["test_f1", "test_auc"]
    summary = {m: {arm: _stats([r[arm][m] for r in per_seed]) for arm in ("real_only", "real_plus_synthetic")} for m in metrics}
    for m in metrics:
        summary[m]["paired_difference"] = _stats([r["real_plus_synthetic"][m] - r["real_only"][m] for r in per_seed])
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "torch_threads": args.threads, "device": "cpu", "torch": torch.__version__},
        "regime": args.regime, "settings": {k: v for k, v in vars(args).items() if k not in ("out", "results")},
        "summary": summary, "per_seed": per_seed,
    }
    if args.regime == "breastmnist":
        result["quality"] = breast_quality(out, gans, subsets, args)
    result["wall_seconds"] = round(time.time() - t0, 1)
    text = json.dumps(result, indent=2, default=float)
    (out / f"synthesis_{args.regime}.json").write_text(text)
    if args.results:
        Path(args.results).write_text(text)
    for m in metrics:
        s = summary[m]
        print(f"{m}: real-only {s['real_only']['mean']:.4f} ± {s['real_only']['sd']:.4f}  real+synthetic "
              f"{s['real_plus_synthetic']['mean']:.4f} ± {s['real_plus_synthetic']['sd']:.4f}  paired difference "
              f"{s['paired_difference']['mean']:+.4f} ± {s['paired_difference']['sd']:.4f} (n={len(seeds)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
