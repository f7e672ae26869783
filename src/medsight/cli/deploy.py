"""``medsight export`` and ``medsight card``: thin wrappers around :mod:`medsight.deploy`.

``medsight predict --engine onnx|torch --verify --strict --audit-log`` lives with the other predict options in
:mod:`medsight.cli.train`.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="export a run's fold networks to ONNX or TorchScript, with its plan and model card")
    e.add_argument("run_dir", help="a run folder made by 'medsight train'")
    e.add_argument("output", help="the export folder (an earlier export there is replaced)")
    e.add_argument("--format", dest="fmt", default="onnx", choices=["onnx", "torchscript"], help="default onnx")
    e.add_argument("--int8", action="store_true", help="ONNX: dynamic int8 quantisation of the weights (smaller; "
                   "check the accuracy change, see docs/deployment.md)")
    e.add_argument("--folds", help="comma-separated folds to export (default: all trained)")
    e.set_defaults(func=cmd_export)

    c = sub.add_parser("card", help="(re)write a run's MODEL_CARD.md and model_card.json")
    c.add_argument("run_dir", help="a run folder made by 'medsight train'")
    c.set_defaults(func=cmd_card)


def cmd_export(args: argparse.Namespace) -> int:
    from medsight.deploy.export import export_run

    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    out = export_run(args.run_dir, args.output, fmt=args.fmt, int8=args.int8, folds=folds)
    print(out)
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from medsight.engine.runtime import read_manifest
    from medsight.errors import user_error
    from medsight.report.card import write_model_card

    if read_manifest(args.run_dir) is not None:
        raise user_error("a run folder", "an export folder", args.run_dir,
                         "an export's card is written by 'medsight export'; run 'medsight card' on the run")
    from medsight.tasks import load_run_plan

    for path in write_model_card(args.run_dir, load_run_plan(args.run_dir)):
        print(path)
    return 0
