"""``medsight register``, ``medsight warp`` and ``medsight train --task registration`` (called from the train command)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from medsight.errors import MedsightError, user_error

log = logging.getLogger("medsight.cli.registration")


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("register", help="align a moving image to a fixed one (classical SimpleITK or a trained network)")
    r.add_argument("fixed", help="the reference image (its grid is the output grid)")
    r.add_argument("moving", help="the image to align")
    r.add_argument("out_dir", help="folder for transform.tfm/.h5, registered.nii.gz, registration.json")
    r.add_argument("--stages", default="rigid,affine,bspline", help="comma-separated subset of rigid,affine,bspline "
                   "(default all three)")
    r.add_argument("--metric", default="mattes", choices=["mattes", "meansquares"],
                   help="Mattes mutual information (default; works across modalities) or mean squares (same modality)")
    r.add_argument("--fixed-mask", help="mask on the fixed grid: only voxels inside drive the metric")
    r.add_argument("--grid-spacing", type=float, help="B-spline control-point spacing in mm (default 10)")
    r.add_argument("--iterations", type=int, help="optimiser iterations per pyramid level for every stage")
    r.add_argument("--seed", type=int, default=0, help="seed of the metric's random sampling")
    r.add_argument("--moving-labels", help="a label map on the moving grid to warp too (nearest neighbour)")
    r.add_argument("--fixed-labels", help="the fixed image's label map: report Dice per label of the warped labels")
    r.add_argument("--model", help="a run folder (or checkpoint) of 'medsight train --task registration': use the network")
    r.add_argument("--device", help="with --model: cpu, cuda (default cpu)")
    r.add_argument("--overwrite", action="store_true",
                   help="write into an OUT_DIR with files in it, replacing earlier results (an input is never written over)")
    r.set_defaults(func=cmd_register)

    w = sub.add_parser("warp", help="apply a saved transform to an image or a label map")
    w.add_argument("transform", help="transform.tfm / transform.h5 written by 'medsight register'")
    w.add_argument("image", help="the image to warp (on the moving image's side)")
    w.add_argument("out", help="output image (.nii.gz, .nrrd, .mha)")
    w.add_argument("--reference", help="the fixed image whose grid the output takes (default: the input's own grid)")
    w.add_argument("--labels", action="store_true", help="a label map: nearest neighbour, values and dtype kept")
    w.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never an input)")
    w.set_defaults(func=cmd_warp)


def _config(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from medsight.tasks.registration.classical import DEFAULT_STAGE_CONFIG, RegistrationConfig

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    overrides: dict[str, Any] = {}
    if args.grid_spacing is not None:
        if args.grid_spacing <= 0:
            raise user_error("a positive --grid-spacing (mm)", args.grid_spacing, None, "e.g. --grid-spacing 10")
        overrides["grid_spacing_mm"] = args.grid_spacing
    if args.iterations is not None:
        if args.iterations < 1:
            raise user_error("--iterations >= 1", args.iterations, None, "e.g. --iterations 100")
        overrides["iterations"] = args.iterations
    stage_config = {k: replace(v, **overrides) for k, v in DEFAULT_STAGE_CONFIG.items()}
    return RegistrationConfig(stages=stages, metric=args.metric, seed=args.seed, stage_config=stage_config)


def cmd_register(args: argparse.Namespace) -> int:
    from medsight.errors import require_exists
    from medsight.tasks.registration.pipeline import register_files

    for path in (args.fixed, args.moving, args.fixed_mask, args.moving_labels, args.fixed_labels):
        if path is not None:
            require_exists(path, "image file")
    config = None if args.model else _config(args)
    if args.model and (args.fixed_mask or args.stages != "rigid,affine,bspline"):
        raise MedsightError("Expected --stages/--fixed-mask only with classical registration, got them with --model; drop them")

    def stage_line(res: Any) -> None:
        log.info("%-8s metric %.5f  %d iterations  %.1fs", res.name, res.metric_value, res.iterations, res.seconds)

    report = register_files(args.fixed, args.moving, args.out_dir, config=config, model=args.model, fixed_mask=args.fixed_mask,
                            moving_labels=args.moving_labels, fixed_labels=args.fixed_labels, device=args.device,
                            progress=None if args.quiet else stage_line, overwrite=args.overwrite)
    if "mean_dice" in report:
        print("Dice per label: " + ", ".join(f"{k}: {v:.4f}" for k, v in report["dice"].items()) + f"  (mean {report['mean_dice']:.4f})")
    print(f"folding fraction (Jacobian <= 0): {report['folding_fraction']:.5f}   time {report['seconds']:.1f}s")
    for w in report["written"]:
        print(w)
    return 0


def cmd_warp(args: argparse.Namespace) -> int:
    from medsight.core.outputs import check_new_output
    from medsight.io import read_image, write_image
    from medsight.tasks.registration.transforms import load_transform, warp_image

    inputs = [p for p in (args.transform, args.image, args.reference) if p is not None]
    check_new_output(args.out, inputs, overwrite=args.overwrite)
    transform = load_transform(args.transform)
    image = read_image(args.image)
    reference = read_image(args.reference) if args.reference else None
    print(write_image(warp_image(image, transform, reference=reference, labels=args.labels), args.out))
    return 0


__all__ = ["cmd_register", "cmd_warp", "register"]
