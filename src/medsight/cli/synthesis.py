"""``medsight synthesize``: GAN synthesis to augment scarce data.

* ``medsight synthesize train DATASET --out GAN_DIR [--time-budget 10m | --epochs N] [--resume]``
* ``medsight synthesize sample GAN_DIR N OUT [--class C] [--seed S]``

Mix the samples into training with ``medsight train DATASET --synthetic OUT --synthetic-ratio R``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``medsight synthesize`` and its subcommands."""
    parser = subparsers.add_parser(
        "synthesize", help="train a conditional GAN on a dataset and sample synthetic cases to augment training",
        description="Class-conditional GAN for 2D classification data; mask-conditioned (pix2pix) GAN for segmentation "
                    "data, rendering images for elastically deformed real masks. Samples are written in the dataset's "
                    "own format, marked synthetic; 'medsight train --synthetic DIR' mixes them into training batches only.",
    )
    sub = parser.add_subparsers(dest="synthesize_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda _args: parser.print_help() or 0)

    t = sub.add_parser("train", help="train a GAN (progress bar, sample grid each epoch, checkpoints, --resume)")
    t.add_argument("dataset", help="classification (2D) or segmentation (2D/3D) dataset: folder, dataset.json, CSV or NPZ")
    t.add_argument("--out", required=True, help="GAN folder (plans.json, checkpoints, metrics.csv, samples/)")
    t.add_argument("--time-budget", help="train until this wall time, e.g. 10m; the learning rate is scheduled over it")
    t.add_argument("--epochs", type=int, help="epochs (default from the GAN plan)")
    t.add_argument("--iterations", type=int, help="iterations per epoch (default from the GAN plan)")
    t.add_argument("--resume", action="store_true", help="continue from GAN_DIR/checkpoint_last.pt")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")
    t.add_argument("--plan", help="use this (edited) GAN plans.json")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="write N synthetic cases in the dataset's own format, marked synthetic")
    s.add_argument("gan_dir", help="a folder written by 'medsight synthesize train'")
    s.add_argument("n", type=int, help="number of cases")
    s.add_argument("out", help="output folder (new or empty; never the GAN folder)")
    s.add_argument("--overwrite", action="store_true", help="write into a folder with files in it, replacing an "
                   "earlier sample's files of the same names")
    s.add_argument("--class", dest="class_name", help="class-conditional GAN: only this class (name or index)")
    s.add_argument("--seed", type=int, default=0, help="the same seed writes the same cases")
    s.add_argument("--device", help="cpu (default) or cuda")
    s.add_argument("--checkpoint", default="last", choices=["last", "best"],
                   help="last (final moving-average generator, default) or best (best validation coverage)")
    s.set_defaults(func=cmd_sample)


def cmd_train(args: argparse.Namespace) -> int:
    from medsight.cli.common import parse_duration
    from medsight.cli.progress import TrainingProgress, case_bar
    from medsight.engine.config import RunOptions
    from medsight.tasks.synthesis.pipeline import train_gan
    from medsight.tasks.synthesis.task import training_lines

    config = RunOptions(epochs=args.epochs, time_budget_s=parse_duration(args.time_budget) if args.time_budget else None,
                         iterations_per_epoch=args.iterations, seed=args.seed, device=args.device, resume=args.resume)
    summary = train_gan(args.dataset, args.out, config=config, plan_path=args.plan, progress=TrainingProgress(quiet=args.quiet),
                        prepare_progress=case_bar("read cases", args.quiet))
    for line in training_lines(summary, Path(args.out)):
        print(line)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from medsight.cli.progress import case_bar
    from medsight.tasks.synthesis.sample import sample_gan

    written = sample_gan(args.gan_dir, args.n, args.out, class_name=args.class_name, seed=args.seed, device=args.device,
                         checkpoint=args.checkpoint, progress=case_bar("sample", args.quiet), overwrite=args.overwrite)
    print(f"{args.n} synthetic cases in {args.out} ({len(written)} files; manifest {written[-1]})")
    print(f"mix into training: medsight train DATASET --synthetic {args.out} --synthetic-ratio 0.5")
    return 0
