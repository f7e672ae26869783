"""User-facing errors.

Every problem the user can fix (a bad file, a wrong option, a dataset that does not match its spec)
is raised as :class:`MedsightError` (a ``ValueError``) or :class:`InputNotFoundError` (a
``FileNotFoundError``). The command line turns them into one line on stderr and exit code 2.
Messages follow one shape: ``Expected <what>, got <value> in <file>; <how to fix>``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class MedsightError(ValueError):
    """An input problem the user can fix. The message is one line and names the file."""


class InputNotFoundError(FileNotFoundError, MedsightError):
    """A path the user gave does not exist."""


def user_error(what: str, got: object, where: str | Path | None, fix: str) -> MedsightError:
    """Build a :class:`MedsightError` with the standard one-line shape.

    Args:
        what: what was expected (``"a 3D image"``).
        got: what was found (``"shape (4, 64, 64, 30)"``).
        where: the file or folder at fault, or ``None`` when no file is involved.
        fix: how to fix it (``"pass a single volume"``).
    """
    place = f" in {where}" if where is not None else ""
    return MedsightError(f"Expected {what}, got {got}{place}; {fix}")


def require_exists(path: str | Path, what: str = "file or folder") -> Path:
    """Return ``path`` as a Path, or raise :class:`InputNotFoundError` with a clear message."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"Expected an existing {what}, got {p} which does not exist; check the path")
    return p


def did_you_mean(name: str, choices: Iterable[str], kind: str) -> MedsightError:
    """An error for an unknown option value that suggests the closest valid names."""
    options = sorted(choices)
    close = difflib.get_close_matches(name, options, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return MedsightError(f"Expected a known {kind}, got {name!r}; {hint}choose one of: {', '.join(options)}")
