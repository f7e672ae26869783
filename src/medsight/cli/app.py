"""``medsight`` entry point: one console script with subcommands.

Each command module under ``medsight.cli`` exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a function taking the parsed arguments and returning an exit code. Heavy imports happen inside
those functions so that ``medsight --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from medsight import __version__
from medsight.core.atomic import disk_full
from medsight.errors import MedsightError

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "medsight.cli.demo",
    "medsight.cli.info",
    "medsight.cli.dataset",
    "medsight.cli.train",
    "medsight.cli.evaluate",
    "medsight.cli.uncertainty",
    "medsight.cli.explain",
    "medsight.cli.clinical",
    "medsight.cli.registration",
    "medsight.cli.deploy",
    "medsight.cli.serve",
    "medsight.cli.synthesis",
    "medsight.cli.pacs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsight",
        description="Deep learning for medical images: check data, train, evaluate, predict, explain.",
    )
    parser.add_argument("--version", action="version", version=f"medsight {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--allow-irregular", action="store_true",
                        help="also read DICOM series with a slice gap wider than 2 x the median step (interpolated "
                             "across) and images with NaN/Inf voxels (as 0), with a warning, instead of refusing them "
                             "(tilted, unevenly spaced series and one missing slice are reconstructed anyway)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if not debug else "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("medsight")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _configure_logging(args.debug, args.quiet)
    from medsight.io import set_strict_reading

    set_strict_reading(not args.allow_irregular)
    try:
        return int(args.func(args) or 0)
    except MedsightError as exc:
        if args.debug:
            raise
        print(f"medsight: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        if args.debug:
            raise
        print(f"medsight: error: Expected an existing file, got {exc.filename or exc}; check the path", file=sys.stderr)
        return 2
    except PermissionError as exc:
        if args.debug:
            raise
        print(f"medsight: error: Expected read/write permission, got 'permission denied' for {exc.filename}; "
              "fix the permissions or choose another path", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stderr.close()
        return 0
    except OSError as exc:
        if args.debug or not disk_full(exc):
            raise
        print(f"medsight: error: Expected free disk space, got 'no space left on device' while writing "
              f"{exc.filename or 'an output'}; free some space and run again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medsight: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
