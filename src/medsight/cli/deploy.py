"""``medsight export`` and ``medsight card``: thin wrappers around :mod:`medsight.deploy`.

``medsight predict --engine onnx|torch --verify --strict --audit-log`` lives with the other predict options in
:mod:`medsight.cli.train`.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="export a run's fold networks to ONNX or TorchScript, with its plan and model card")
    e.add_argument("run_dir", help="a run folder made by 'medsight train'")
    e.add_argument("output", help="the export folder (new; never the run folder or one holding it)")
    e.add_argument("--format", dest="fmt", default="onnx", choices=["onnx", "torchscript"], help="default onnx")
    e.add_argument("--int8", action="store_true", help="ONNX: dynamic int8 quantisation of the weights (smaller; "
                   "check the accuracy change, see docs/deployment.md)")
    e.add_argument("--folds", help="comma-separated folds to export (default: all trained)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in OUTPUT once the new one is complete (nothing else is replaced)")
    e.set_defaults(func=cmd_export)

    c = sub.add_parser("card", help="(re)write a run's MODEL_CARD.md and model_card.json and print the model digest",
                       description="Write RUN/MODEL_CARD.md and RUN/model_card.json and print the model digest: one "
                       "SHA-256 over the files a prediction loads (weights of the folds, plans.json, calibration). Pin "
                       "it outside the run folder and predict with --expect-sha256 DIGEST (or $MEDSIGHT_MODEL_SHA256): "
                       "the card beside the weights cannot vouch for them. On an export folder: print its digest only.")
    c.add_argument("run_dir", help="a run folder made by 'medsight train', or an export folder (digest only)")
    c.add_argument("--folds", help="print the digest of a prediction with these folds (default: all trained)")
    c.set_defaults(func=cmd_card)


def cmd_export(args: argparse.Namespace) -> int:
    from medsight.deploy.export import export_run
    from medsight.report.digest import model_digest

    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    out = export_run(args.run_dir, args.output, fmt=args.fmt, int8=args.int8, folds=folds, overwrite=args.overwrite)
    print(out)
    print(f"model digest (SHA-256): {model_digest(out)}  (pin it: medsight predict --expect-sha256 DIGEST)")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from medsight.engine.runtime import read_manifest
    from medsight.report.card import write_model_card
    from medsight.report.digest import model_digest

    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    if read_manifest(args.run_dir) is None:  # an export's card is written by 'medsight export'
        from medsight.tasks import load_run_plan

        for path in write_model_card(args.run_dir, load_run_plan(args.run_dir), announce=False):
            print(path)
    which = f"folds {args.folds}" if folds else "all folds"
    print(f"model digest (SHA-256, {which}): {model_digest(args.run_dir, folds=folds)}")
    return 0
