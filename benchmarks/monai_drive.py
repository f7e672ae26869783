"""A plain MONAI 2D pipeline on DRIVE, the peer of ``segmentation_budget.py drive`` at the same wall-time budget.

What a MONAI user would write from the tutorials: MONAI's ``UNet`` (channels 16-32-64-128-256, strides 2, two
residual units), 128 x 128 patches cut by ``RandCropByPosNegLabeld`` (4 per image, 4 images per batch: 16 patches),
random flips and 90-degree rotations, per-image intensity scaling to [0, 1], ``DiceCELoss``, AdamW (lr 1e-3,
weight decay 1e-5) with cosine decay over the budget, ``CacheDataset`` + ``DataLoader`` (0 workers), float32.
It trains on the 20 training images until the budget ends, then predicts the 20 test images with
``sliding_window_inference`` (128 x 128, overlap 0.25, Gaussian blending), and scores them with medsight's evaluator,
exactly as the medsight run is scored: F1 and pixel AUC inside the FOV masks against ``1st_manual``.

With ``--splits`` (the ``splits.json`` of a medsight run) it trains on fold 0's 16 training images only; with
``--curve N`` it also keeps N snapshots of the weights at evenly spaced training times and scores each, after
training, on fold 0's 4 validation images as medsight's in-training validation does (Dice of the whole image against
``1st_manual``): the points of a time-to-quality curve (``time_to_quality.py``).

    python benchmarks/monai_drive.py --budget 10m --out runs/monai_drive
    python benchmarks/monai_drive.py --budget 10m --splits runs/drive_fold0/splits.json --curve 10 --out runs/monai_drive_fold0

Writes ``<out>/benchmark.json`` with the command, the steps, samples and pixels per second, and the test figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monai_loop import (  # noqa: E402
    add_peer_arguments,
    foreground_probability,
    mean_foreground_dice,
    score_snapshots,
    train_for_budget,
    write_benchmark,
)
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[1]
DRIVE = ROOT.parent / "shared" / "data" / "drive"
PATCH = (128, 128)


def _image(path: Path) -> np.ndarray:
    """RGB as (3, H, W) float32 scaled per image to [0, 1] (MONAI's ScaleIntensity)."""
    a = np.asarray(PILImage.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)
    return (a - a.min()) / max(float(a.max() - a.min()), 1e-6)


def _items(split: str, names: list[str] | None = None) -> list[dict[str, np.ndarray | str]]:
    root = DRIVE / split
    items = []
    for img in sorted((root / "images").glob("*.tif")):
        if names is not None and img.stem not in names:
            continue
        case = img.stem.split("_")[0]
        lab = np.asarray(PILImage.open(root / "1st_manual" / f"{case}_manual1.gif").convert("L")) > 127
        items.append({"image": _image(img), "label": lab[None].astype(np.float32), "name": img.stem})
    return items


def train(budget_s: float, seed: int, threads: int, names: list[str] | None = None,
          snapshots: int = 0) -> tuple[torch.nn.Module, dict[str, float], list[dict]]:
    from monai.data import CacheDataset, DataLoader
    from monai.networks.nets import UNet
    from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd, RandRotate90d
    from monai.utils import set_determinism

    torch.set_num_threads(threads)
    set_determinism(seed)
    keys = ["image", "label"]
    transforms = Compose([
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=PATCH, pos=1, neg=1, num_samples=4),
        RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandRotate90d(keys, prob=0.5, max_k=3),
    ])
    data = [{k: v for k, v in it.items() if k in keys} for it in _items("training", names)]
    loader = DataLoader(CacheDataset(data, transforms, progress=False), batch_size=4, shuffle=True, num_workers=0)
    model = UNet(spatial_dims=2, in_channels=3, out_channels=2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
                 num_res_units=2)
    trained, taken = train_for_budget(model, loader, budget_s, PATCH, snapshots=snapshots)
    trained["pixels_per_s"] = trained.pop("voxels_per_s")
    return model, trained, taken


def predict_test(model: torch.nn.Module, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    with torch.no_grad():
        for it in _items("test"):
            fg = foreground_probability(model, it["image"], PATCH)
            PILImage.fromarray(((fg > 0.5) * 255).astype(np.uint8)).save(out / f"{it['name']}.png")
            np.savez_compressed(out / f"{it['name']}_probabilities.npz", probabilities=fg.astype(np.float32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_peer_arguments(ap, budget="10m", out=ROOT / "runs" / "monai_drive", splits_required=False)
    args = ap.parse_args()
    if args.curve and not args.splits:
        ap.error("--curve scores fold 0's validation images: give --splits")
    from medsight.cli.common import parse_duration
    from medsight.evaluate.folders import evaluate_folders

    t0 = time.time()
    fold = json.loads(args.splits.read_text())[0] if args.splits else None
    model, trained, taken = train(parse_duration(args.budget), args.seed, args.threads,
                                  list(fold["train"]) if fold else None, args.curve)
    curve = None
    if taken:
        val = _items("training", list(fold["val"]))
        curve = score_snapshots(model, taken, lambda m: mean_foreground_dice(m, val, PATCH))
    predict_test(model, args.out / "test_predictions")
    test = DRIVE / "test"
    ev = evaluate_folders(args.out / "test_predictions", test / "1st_manual", roi_dir=test / "mask",
                          prob_dir=args.out / "test_predictions", out_dir=args.out / "test_evaluation", distances=False,
                          overwrite=True)
    fg = next(iter(ev.summary["labels"].values()))["metrics"]
    write_benchmark(args, {
        "pipeline": "MONAI UNet 16-256, 2 residual units, 128x128 x 16 patches, DiceCE, AdamW cosine, float32",
        "trained": trained, "trained_on": "fold 0 of --splits" if fold else "the 20 training images",
        "curve": curve, "test": {"f1": fg["dice"]["mean"], "auc": fg["auc"]["mean"], "cases": len(ev.rows)},
        "wall_s": round(time.time() - t0, 1)})
    print(f"MONAI DRIVE test (20 images, inside FOV): F1 {fg['dice']['mean']:.4f}  AUC {fg['auc']['mean']:.4f}  "
          f"({trained['steps']} steps, {trained['samples_per_s']:.1f} samples/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
