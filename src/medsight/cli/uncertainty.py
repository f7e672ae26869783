"""``medsight uncertainty RUN``: (re)compute a segmentation run's review threshold from its validation folds.

Runs trained before ``uncertainty.json`` existed, or a different goal (``--dice-below``), need no retraining: the
validation probabilities the folds saved are enough (see ``docs/uncertainty.md``).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("uncertainty", help="choose a segmentation run's review threshold on its validation folds "
                       "(writes RUN/uncertainty.json and fold_K/validation/<case>_uncertainty.nii.gz)")
    p.add_argument("run_dir", help="a segmentation run folder after cross-validation")
    p.add_argument("--dice-below", type=float, help="a failed case has a mean foreground Dice below this "
                   "(default: --relative x the median validation Dice)")
    p.add_argument("--relative", type=float, default=0.9, help="without --dice-below: the fraction of the median "
                   "validation Dice that defines a failed case (default 0.9)")
    p.add_argument("--sensitivity", type=float, help="flag at least this fraction of the failed validation cases "
                   "(default: the threshold maximising Youden's J)")
    p.add_argument("--no-maps", action="store_true", help="do not write the per-case uncertainty maps")
    p.set_defaults(func=cmd_uncertainty)


def cmd_uncertainty(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medsight.errors import user_error
    from medsight.tasks.segmentation.uncertainty import run_uncertainty

    for name, value in (("--dice-below", args.dice_below), ("--relative", args.relative), ("--sensitivity", args.sensitivity)):
        if value is not None and not 0.0 < value <= 1.0:
            raise user_error(f"{name} in (0, 1]", value, args.run_dir, f"pass e.g. {name} 0.8")
    res = run_uncertainty(Path(args.run_dir), dice_below=args.dice_below, relative=args.relative,
                          sensitivity=args.sensitivity, write_maps=not args.no_maps)

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    print(f"{res['n_cases']} validation cases; failed (Dice < {res['goal']['dice_below']:.3f}): {res['n_failed']}")
    print(f"Spearman(score, Dice) {fmt(res['spearman'])}; failure AUROC {fmt(res['auroc'])}")
    print(f"review threshold {res['threshold']:.4f}: flags {res['flagged']} cases, "
          f"{res['failed_flagged']} of the {res['n_failed']} failed")
    print(f"written: {Path(args.run_dir) / 'uncertainty.json'}")
    return 0


__all__ = ["cmd_uncertainty", "register"]
