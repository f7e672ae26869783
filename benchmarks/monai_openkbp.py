"""A plain MONAI 3D pipeline on OpenKBP, the peer of ``segmentation_budget.py openkbp`` at the same wall-time budget.

What a MONAI user would write from the multi-organ CT tutorials (spleen, BTCV), sized for a CPU: the CTs on their
own grid (they are already 2.5 x 3.9 x 3.9 mm, coarser than the tutorials' 1.5 x 1.5 x 2 mm), the soft-tissue
window ``ScaleIntensityRanged(-175, 250 -> 0, 1, clip)``, 64^3 patches cut by ``RandCropByPosNegLabeld`` (2 per
case, 1 case per batch), random flips (p 0.1 per axis) and 90-degree rotations, MONAI's ``UNet`` (channels
16-32-64-128-256, strides 2, two residual units), ``DiceCELoss``, AdamW (lr 1e-3, weight decay 1e-5) with cosine
decay over the budget, ``CacheDataset`` + ``DataLoader`` (0 workers), float32. Plain MONAI has no partial labels: an
organ not contoured in a case is background there.

It trains on fold 0's training cases of medsight's saved split (``--splits``: the ``splits.json`` of the medsight run,
so both train and score the same cases) until the budget ends, predicts the fold's validation cases with
``sliding_window_inference`` (64^3, overlap 0.25, Gaussian blending), and scores them with medsight's evaluator as
the medsight run is scored: Dice, HD95 and volume error per organ, organs not contoured in a case left out there.

With ``--curve N`` it also keeps N snapshots of the weights at evenly spaced training times and scores each, after
training, on the validation cases as medsight's in-training validation does (whole cases, no TTA; each organ's mean
Dice over the cases that contour it, averaged over organs): the points of a time-to-quality curve
(``time_to_quality.py``).

    python benchmarks/monai_openkbp.py --budget 20m --splits runs/bench_openkbp/splits.json --out runs/monai_openkbp

Writes ``<out>/benchmark.json`` with the command, the steps, samples and voxels per second, and the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monai_loop import add_peer_arguments, score_snapshots, train_for_budget, write_benchmark  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "openkbp_hn_ct"
PATCH = (64, 64, 64)


def peer_network(num_classes: int) -> torch.nn.Module:
    """The peer's network: MONAI's ``UNet`` as its CT tutorials size it (channels 16-256, strides 2, 2 residual units)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=num_classes, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2), num_res_units=2)


def _cases(ids: list[str]) -> list[dict]:
    from medsight.data.dataset import load_case, load_dataset

    spec = load_dataset(DATA)
    out = []
    for cid in ids:
        case = load_case(spec, spec.case(cid))
        out.append({"image": np.asarray(case.image.array, dtype=np.float32),
                    "label": case.label_array[None].astype(np.float32), "id": cid, "spacing": case.image.spacing})
    return out


def train(items: list[dict], num_classes: int, budget_s: float, seed: int, threads: int,
          snapshots: int = 0) -> tuple[torch.nn.Module, dict, list[dict]]:
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import (
        Compose,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandRotate90d,
        ScaleIntensityRanged,
    )
    from monai.utils import set_determinism

    torch.set_num_threads(threads)
    set_determinism(seed)
    keys = ["image", "label"]
    transforms = Compose([
        ScaleIntensityRanged("image", a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True),
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=PATCH, pos=1, neg=1, num_samples=2),
        RandFlipd(keys, prob=0.1, spatial_axis=0), RandFlipd(keys, prob=0.1, spatial_axis=1),
        RandFlipd(keys, prob=0.1, spatial_axis=2), RandRotate90d(keys, prob=0.1, max_k=3),
    ])
    data = [{k: it[k] for k in keys} for it in items]
    loader = DataLoader(CacheDataset(data, transforms, progress=False), batch_size=1, shuffle=True, num_workers=0)
    model = peer_network(num_classes)
    trained, taken = train_for_budget(model, loader, budget_s, PATCH, snapshots=snapshots)
    return model, trained, taken


def _labels(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    from monai.inferers import sliding_window_inference
    from monai.transforms import ScaleIntensityRange

    x = torch.as_tensor(ScaleIntensityRange(a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True)(image))[None].float()
    return sliding_window_inference(x, PATCH, 4, model, overlap=0.25, mode="gaussian")[0].argmax(0).numpy()


def validation_dice(model: torch.nn.Module, items: list[dict], labels: list[int], absent: dict[str, list[int]]) -> float:
    """Each organ's mean Dice over the cases that contour it (1 where both are empty), averaged over organs."""
    from medsight.metrics.segmentation import dice_per_label

    per: dict[int, list[float]] = {v: [] for v in labels}
    for it in items:
        row = dice_per_label(_labels(model, it["image"]), it["label"][0].astype(np.int64), labels)
        for v, d in zip(labels, row):
            if v not in absent.get(it["id"], []):
                per[v].append(1.0 if np.isnan(d) else d)
    return float(np.mean([np.mean(d) for d in per.values() if d]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_peer_arguments(ap, budget="20m", out=ROOT / "runs" / "monai_openkbp", splits_required=True)
    args = ap.parse_args()

    from medsight.cli.common import parse_duration
    from medsight.data.dataset import load_dataset
    from medsight.metrics.summary import SegmentationEvaluator

    t0 = time.time()
    spec = load_dataset(DATA)
    fold = json.loads(args.splits.read_text())[0]
    model, trained, taken = train(_cases(list(fold["train"])), len(spec.labels), parse_duration(args.budget), args.seed,
                                  args.threads, args.curve)
    absent = {cid: [spec.labels[n] for n in names] for cid, names in spec.absent.items()}
    val = _cases(list(fold["val"]))
    fg = [v for v in spec.labels.values() if v != 0]
    curve = score_snapshots(model, taken, lambda m: validation_dice(m, val, fg, absent)) if taken else None
    ev = SegmentationEvaluator(spec.labels, absent=absent)
    model.eval()
    t1 = time.time()
    with torch.no_grad():
        for it in val:
            ev.add(it["id"], _labels(model, it["image"]), it["label"][0].astype(np.int64), spacing=it["spacing"])
    summary = ev.summary()
    per_organ = {name: {"dice": lab["metrics"]["dice"]["mean"], "hd95_mm": lab["metrics"]["hd95"]["mean"],
                        "volume_error_ml": lab["metrics"]["volume_error"]["mean"], "cases_scored": lab["metrics"]["dice"]["n"]}
                 for name, lab in summary["labels"].items()}
    mean_dice = float(np.mean([v["dice"] for v in per_organ.values()]))
    write_benchmark(args, {
        "pipeline": "MONAI UNet 16-256, 2 residual units, 64^3 x 2 patches (RandCropByPosNegLabeld), CT window "
                    "[-175, 250], DiceCE, AdamW cosine, float32, no partial labels",
        "trained": trained, "curve": curve,
        "validation_fold0": {"mean_dice": mean_dice, "per_organ": per_organ, "cases": len(fold["val"]),
                             "seconds": round(time.time() - t1, 1)},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wall_s": round(time.time() - t0, 1)})
    print(f"MONAI OpenKBP fold 0 validation ({len(fold['val'])} cases): mean organ Dice {mean_dice:.4f} "
          f"({trained['steps']} steps, {trained['samples_per_s']:.2f} samples/s)")
    for name, v in per_organ.items():
        print(f"  {name:<13} Dice {v['dice']:.3f}  HD95 {v['hd95_mm']:.1f} mm  volume error {v['volume_error_ml']:+.1f} ml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
