"""Training throughput: medsight's data path vs an equivalent MONAI pipeline, same network, patch and batch (issue 6).

Both pipelines feed the network the plan makes for Hippocampus (3D) or DRIVE (2D) (MONAI DynUNet) from the same
preprocessed cases:

* medsight: memory-mapped cache, batched patch sampling and augmentation as tensor operations, a prefetch thread;
* MONAI: ``CacheDataset`` + ``RandCropByPosNegLabeld`` (1 foreground : 2 random, as the plan's foreground fraction),
  ``RandAffined`` (rotation and scaling with the plan's probabilities and ranges), ``RandFlipd`` on every axis,
  ``RandScaleIntensityd``, ``RandAdjustContrastd`` (gamma), ``RandGaussianNoised``, ``RandGaussianSmoothd``, and a
  ``DataLoader`` with each worker count in ``--workers`` (the best is reported). medsight also applies its elastic
  deformation (p = 0.1), which the MONAI pipeline leaves out: any bias favours MONAI.

Per pipeline: samples per second over ``--steps`` training steps (forward, Dice+CE with deep supervision, backward,
AdamW step) after warm-up, and the fraction of step time spent waiting for the next batch. Pipelines alternate over
``--repeats`` rounds; medians are reported with the ratio (target: medsight >= 1.5x MONAI on CPU, data wait <= 5 %).

    python benchmarks/throughput.py --cases 40 --steps 25 --repeats 3 --out docs/results/throughput_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


SOURCES = {"hippocampus": SHARED / "msd_task04_hippocampus_cropped", "drive": SHARED / "drive" / "training"}


def _prepare(cases: int, work: Path, dataset: str = "hippocampus"):
    """Plan (CPU width) and preprocess ``cases`` Hippocampus cases (copied) or the 20 DRIVE training images (in
    place); returns (plan, cache, ids)."""
    from medsight.data.dataset import load_dataset
    from medsight.tasks.segmentation.pipeline import plan_dataset
    from medsight.transforms.cache import CaseCache, preprocess_dataset

    src = SOURCES[dataset]
    if dataset == "hippocampus":
        names = sorted(p.name for p in (src / "images").iterdir() if p.name.endswith(".nii.gz"))[:cases]
        for sub in ("images", "labels"):
            (work / "ds" / sub).mkdir(parents=True, exist_ok=True)
            for n in names:
                shutil.copyfile(src / sub / n, work / "ds" / sub / n)
        src = work / "ds"
    plan = plan_dataset(src, work / "run", base_filters=16)
    ids = preprocess_dataset(load_dataset(src), plan, work / "run" / "preprocessed", workers=1)
    return plan, CaseCache(work / "run" / "preprocessed", ids), ids


def _model_and_opt(plan):
    from medsight.models.registry import create_model
    from medsight.tasks.segmentation.trainer import SegmentationLoss, network_args

    torch.manual_seed(0)
    model = create_model(plan.network.name, **network_args(plan))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), SegmentationLoss()


def _run(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], plan, steps: int, warmup: int = 3) -> dict[str, float]:
    model, opt, loss_fn = _model_and_opt(plan)
    model.train()
    wait = work = 0.0
    samples = 0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        image, label = next(batches)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(image.float()), label.long())
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= warmup:
            wait += t1 - t0
            work += t2 - t1
            samples += image.shape[0]
    return {"samples_per_s": samples / (wait + work), "data_wait_fraction": wait / (wait + work)}


def medsight_batches(plan, cache, ids) -> tuple[Iterator, object]:
    from medsight.transforms.sampler import PatchSampler, Prefetcher

    sampler = PatchSampler(cache, ids, tuple(plan.patch_size), plan.batch_size, augment=plan.augment,
                           foreground_fraction=plan.training.foreground_fraction, seed=0)
    pre = Prefetcher(sampler)
    return pre, pre


def monai_batches(plan, cache, ids, workers: int) -> tuple[Iterator, object]:
    import math

    from monai import transforms as mt
    from monai.data import CacheDataset, DataLoader

    aug = plan.augment
    d = len(plan.patch_size)
    keys = ["image", "label"]
    rot = math.radians(aug.rotate_deg)
    lo, hi = aug.scale_range
    data = [{"image": np.asarray(cache.images[c], dtype=np.float32), "label": np.asarray(cache.labels[c])[None]
             if np.asarray(cache.labels[c]).ndim == d else np.asarray(cache.labels[c])} for c in ids]
    fg = plan.training.foreground_fraction
    xf = mt.Compose([
        mt.SpatialPadd(keys, spatial_size=plan.patch_size),
        mt.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=plan.patch_size, pos=fg, neg=1 - fg, num_samples=1),
        mt.RandAffined(keys, prob=max(aug.p_rotate, aug.p_scale), rotate_range=[rot] * (3 if d == 3 else 1),
                       scale_range=[(lo - 1, hi - 1)] * d, mode=("bilinear", "nearest"), padding_mode="zeros"),
        *[mt.RandFlipd(keys, prob=0.5, spatial_axis=a) for a in aug.mirror_axes if a < d],
        mt.RandScaleIntensityd("image", factors=0.25, prob=aug.p_brightness),
        mt.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=aug.p_gamma),
        mt.RandGaussianNoised("image", std=0.1, prob=aug.p_noise),
        mt.RandGaussianSmoothd("image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=aug.p_blur),
        mt.EnsureTyped(keys, track_meta=False),
    ])
    ds = CacheDataset(data, transform=xf, cache_rate=1.0, num_workers=1, progress=False)
    loader = DataLoader(ds, batch_size=plan.batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                        drop_last=True)

    def forever() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            for b in loader:
                yield b["image"], b["label"]

    return forever(), loader


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(SOURCES), default="hippocampus", help="3D Hippocampus or 2D DRIVE")
    ap.add_argument("--cases", type=int, default=40, help="Hippocampus cases to use (DRIVE: its 20 training images)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="0,2", help="MONAI DataLoader worker counts to try")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", type=Path, help="default docs/results/throughput_cpu.json (Hippocampus) or throughput_drive_cpu.json")
    args = ap.parse_args(argv)
    args.out = args.out or ROOT / "docs" / "results" / ("throughput_cpu.json" if args.dataset == "hippocampus"
                                                         else f"throughput_{args.dataset}_cpu.json")
    if not SOURCES[args.dataset].is_dir():
        print(f"{args.dataset} not found under {SHARED}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="medsight_throughput_"))
    try:
        plan, cache, ids = _prepare(args.cases, work, args.dataset)
        results: dict[str, list[dict[str, float]]] = {"medsight": [], **{f"monai_w{w}": [] for w in args.workers.split(",")}}
        for r in range(args.repeats):
            for name in (list(results) if r % 2 == 0 else list(results)[::-1]):  # alternate who goes first
                if name == "medsight":
                    batches, handle = medsight_batches(plan, cache, ids)
                else:
                    batches, handle = monai_batches(plan, cache, ids, int(name.split("_w")[1]))
                results[name].append(_run(batches, plan, args.steps))
                if hasattr(handle, "close"):
                    handle.close()
                del batches, handle
        summary = {k: {m: statistics.median(r[m] for r in v) for m in ("samples_per_s", "data_wait_fraction")}
                   for k, v in results.items()}
        best_monai = max((k for k in summary if k != "medsight"), key=lambda k: summary[k]["samples_per_s"])
        ratio = summary["medsight"]["samples_per_s"] / summary[best_monai]["samples_per_s"]
        print(f"{args.dataset} {len(ids)} cases, patch {plan.patch_size}, batch {plan.batch_size}, {args.steps} steps x "
              f"{args.repeats} rounds, {args.threads} threads")
        print(f"{'pipeline':<12} {'samples/s':>10} {'data wait':>10}")
        for k, v in summary.items():
            print(f"{k:<12} {v['samples_per_s']:>10.2f} {100 * v['data_wait_fraction']:>9.1f}%")
        print(f"medsight / best MONAI ({best_monai}): {ratio:.2f}x")
        out = {"dataset": args.dataset, "cases": len(ids),
               "command": "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
               "patch_size": list(plan.patch_size), "batch_size": plan.batch_size, "network": plan.network.name,
               "per_round": results, "median": summary, "best_monai": best_monai, "ratio_medsight_over_monai": ratio}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
