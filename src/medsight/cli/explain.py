"""``medsight explain``: heat maps of a trained run's network on new images (the task's own explanation)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medsight.errors import user_error


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("explain", help="Grad-CAM / occlusion heat maps of a trained model on images")
    e.add_argument("model", help="a run folder (or one of its checkpoint files)")
    e.add_argument("input", help="an image file, a DICOM series folder, or a folder of images")
    e.add_argument("output", help="output folder for <case>_<method>.png and <case>_heatmap.npz")
    e.add_argument("--method", default="both", choices=["gradcam", "occlusion", "both"],
                   help="classification: which heat map (default both; occlusion only for networks without Grad-CAM)")
    e.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    e.add_argument("--label", type=int, help="segmentation: the label to explain (default: the first foreground label)")
    e.add_argument("--fold", default=None, help="which fold's network (default: the first trained)")
    e.add_argument("--device")
    e.add_argument("--overwrite", action="store_true", help="write into an OUTPUT folder with files in it, replacing "
                   "earlier heat maps of the same names (never an input, nor a folder holding one)")
    e.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from medsight.core.outputs import check_output_folder
    from medsight.engine.checkpoint import load_checkpoint
    from medsight.engine.run import checkpoints, plan_task
    from medsight.tasks import TASKS, get_task

    model = Path(args.model)
    if model.is_file():
        ckpt = model
    elif model.is_dir():
        ckpt = next(iter(checkpoints(model, folds=[args.fold] if args.fold is not None else None,
                                     fallback_last=False).values()))
    else:
        raise user_error("a run folder or a checkpoint file", "nothing", model, "check the path")
    check_output_folder(args.output, [args.input, ckpt], overwrite=args.overwrite)
    state = load_checkpoint(ckpt)
    task = get_task(plan_task(state.get("plan") or {}))
    if task.explain is None:
        takers = " or ".join(t.name for t in TASKS.values() if t.explain is not None)
        raise user_error(f"a {takers} run", f"a {task.name} run", ckpt,
                         "for a multitask run, predict writes its masks and class probabilities")
    options = {"method": args.method, "target": args.target, "label": args.label, "device": args.device}
    for w in task.explain(state, ckpt, Path(args.input), Path(args.output), options):
        print(w)
    return 0


__all__ = ["cmd_explain", "register"]
