"""A DRIVE model on fundus photographs at other resolutions: the test images resized by x1.7 and x0.6, predicted
without FOV masks, scored inside the (resized) official FOV masks against the (resized) 1st_manual.

Usage (from the repository root, with ../shared/data beside it; RUN is a DRIVE run, e.g. from
``python benchmarks/segmentation_budget.py drive --budget 20m --out runs/bench_drive``)::

    python benchmarks/raster_scale.py RUN --out runs/raster_scale [--factors 1.7 0.6]

Each resized image goes through ``medsight predict`` as a user's file would: the predictor measures its field of
view, brings it to the training scale and maps the labels back (``transforms.field_of_view``). The reference and FOV
masks are resized with bilinear interpolation and thresholded at 0.5, the image with bicubic interpolation. The
script writes ``<out>/raster_scale.json`` with the command and the figures (F1 and AUC inside the FOV per factor).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT.parent / "shared" / "data" / "drive" / "test"


def _resize_to(path: Path, out: Path, factor: float, *, binary: bool) -> None:
    pil = PILImage.open(path)
    size = (round(pil.width * factor), round(pil.height * factor))
    if binary:
        a = (np.asarray(pil.convert("L"), dtype=np.float32) > 0).astype(np.float32)
        r = PILImage.fromarray(a, mode="F").resize(size, PILImage.BILINEAR)
        PILImage.fromarray(((np.asarray(r) >= 0.5) * 255).astype(np.uint8)).save(out)
    else:
        pil.convert("RGB").resize(size, PILImage.BICUBIC).save(out)


def make_variant(factor: float, where: Path) -> dict[str, Path]:
    """Resized copies of the test images, references and FOV masks (PNG, names matched by case id)."""
    dirs = {k: where / k for k in ("images", "reference", "fov")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for img in sorted((TEST / "images").glob("*.tif")):
        case = img.stem.split("_")[0]
        _resize_to(img, dirs["images"] / f"{case}.png", factor, binary=False)
        _resize_to(TEST / "1st_manual" / f"{case}_manual1.gif", dirs["reference"] / f"{case}.png", factor, binary=True)
        _resize_to(TEST / "mask" / f"{case}_test_mask.gif", dirs["fov"] / f"{case}.png", factor, binary=True)
    return dirs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "raster_scale")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.7, 0.6])
    ap.add_argument("--device")
    args = ap.parse_args()

    from medsight.evaluate.folders import evaluate_folders
    from medsight.tasks.segmentation.pipeline import predict

    result: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "run": str(args.run), "factors": {}}
    for factor in args.factors:
        t0 = time.time()
        where = args.out / f"x{factor:g}"
        dirs = make_variant(factor, where)
        pred = where / "predictions"
        predict(args.run, dirs["images"], pred, save_probabilities=True, device=args.device, overwrite=True)
        ev = evaluate_folders(pred, dirs["reference"], roi_dir=dirs["fov"], prob_dir=pred, out_dir=where / "evaluation",
                              distances=False)
        fg = next(iter(ev.summary["labels"].values()))["metrics"]
        result["factors"][f"{factor:g}"] = {"f1": fg["dice"]["mean"], "auc": fg["auc"]["mean"], "cases": len(ev.rows),
                                            "seconds": round(time.time() - t0, 1)}
        print(f"x{factor:g}: F1 {fg['dice']['mean']:.4f}  AUC {fg['auc']['mean']:.4f}  ({len(ev.rows)} images)")
    base = result["factors"].get("1")
    if base:
        for v in result["factors"].values():
            v["f1_minus_original"] = round(v["f1"] - base["f1"], 4)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "raster_scale.json").write_text(json.dumps(result, indent=2))
    print(f"written: {args.out / 'raster_scale.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
