"""A plain MONAI 2D pipeline on the Montgomery chest X-rays, the peer of ``segmentation_budget.py montgomery``.

What a MONAI user would write from the 2D tutorials: MONAI's ``UNet`` (channels 16-32-64-128-256, strides 2, two
residual units), 256 x 256 patches cut by ``RandCropByPosNegLabeld`` (4 per image, 2 images per batch: 8 patches)
from the 512 x 512 images, left-right flips and small rotations (``RandAffined``, +-10 degrees, p 0.3), per-image
intensity scaling to [0, 1], ``DiceCELoss``, AdamW (lr 1e-3, weight decay 1e-5) with cosine decay over the budget,
``CacheDataset`` + ``DataLoader`` (0 workers), float32.

It trains on fold 0's training images of medsight's saved split (``--splits``: the ``splits.json`` of the medsight
run) until the budget ends, predicts the fold's validation images with ``sliding_window_inference`` (256 x 256,
overlap 0.25, Gaussian blending) and scores the lung Dice per image, as medsight's in-training validation does. With
``--curve N`` it also keeps N snapshots of the weights at evenly spaced training times, each scored the same way after
training: the points of a time-to-quality curve (``time_to_quality.py``).

    python benchmarks/monai_montgomery.py --budget 20m --splits runs/bench_montgomery/splits.json --curve 8 \\
        --out runs/monai_montgomery

Writes ``<out>/benchmark.json`` with the command, the steps, samples and pixels per second, and the figures.
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
    mean_foreground_dice,
    score_snapshots,
    train_for_budget,
    write_benchmark,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "montgomery_cxr_lung_512"
PATCH = (256, 256)


def _items(ids: list[str]) -> list[dict]:
    """(1, H, W) float32 images scaled per image to [0, 1] (MONAI's ScaleIntensity) and (1, H, W) lung masks."""
    from medsight.data.dataset import load_case, load_dataset

    spec = load_dataset(DATA)
    out = []
    for cid in ids:
        case = load_case(spec, spec.case(cid))
        a = np.asarray(case.image.array, dtype=np.float32).reshape(1, *case.label_array.shape[-2:])
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6)
        out.append({"image": a, "label": (np.asarray(case.label_array) > 0).reshape(a.shape).astype(np.float32)})
    return out


def train(items: list[dict], budget_s: float, seed: int, threads: int,
          snapshots: int) -> tuple[torch.nn.Module, dict[str, float], list[dict]]:
    from monai.data import CacheDataset, DataLoader
    from monai.networks.nets import UNet
    from monai.transforms import Compose, RandAffined, RandCropByPosNegLabeld, RandFlipd
    from monai.utils import set_determinism

    torch.set_num_threads(threads)
    set_determinism(seed)
    keys = ["image", "label"]
    transforms = Compose([
        RandAffined(keys, prob=0.3, rotate_range=np.pi / 18, mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=PATCH, pos=1, neg=1, num_samples=4),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
    ])
    loader = DataLoader(CacheDataset(items, transforms, progress=False), batch_size=2, shuffle=True, num_workers=0)
    model = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
                 num_res_units=2)
    trained, taken = train_for_budget(model, loader, budget_s, PATCH, snapshots=snapshots)
    trained["pixels_per_s"] = trained.pop("voxels_per_s")
    return model, trained, taken


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_peer_arguments(ap, budget="20m", out=ROOT / "runs" / "monai_montgomery", splits_required=True)
    args = ap.parse_args()
    from medsight.cli.common import parse_duration

    t0 = time.time()
    fold = json.loads(args.splits.read_text())[0]
    model, trained, taken = train(_items(list(fold["train"])), parse_duration(args.budget), args.seed, args.threads,
                                  args.curve)
    val = _items(list(fold["val"]))
    curve = score_snapshots(model, taken, lambda m: mean_foreground_dice(m, val, PATCH)) if taken else None
    if curve:
        dice = curve[-1]["val_dice"]  # the last snapshot is the trained model
    else:
        model.eval()
        with torch.no_grad():
            dice = mean_foreground_dice(model, val, PATCH)
    write_benchmark(args, {
        "pipeline": "MONAI UNet 16-256, 2 residual units, 256x256 x 8 patches, flips and +-10 degree rotations, "
                    "DiceCE, AdamW cosine, float32",
        "trained": trained, "curve": curve,
        "validation_fold0": {"mean_dice": dice, "cases": len(val)}, "wall_s": round(time.time() - t0, 1)})
    print(f"MONAI Montgomery fold 0 validation ({len(val)} images): Dice {dice:.4f} "
          f"({trained['steps']} steps, {trained['samples_per_s']:.1f} samples/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
