"""Outputs never destroy what the user had: an output that is one of the inputs is refused, always; an existing
output file is replaced only when the user asked for it (``--overwrite``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from medsight.errors import user_error


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def refuse_input_as_output(target: str | Path, inputs: Iterable[str | Path]) -> None:
    """One line when ``target`` is one of ``inputs`` (the same file, also through another path or a link)."""
    t = Path(target)
    for source in inputs:
        if _same(t, Path(source)):
            raise user_error("an output that is not one of the inputs", "the input itself", t,
                             "choose another output folder or name (medsight never writes over its input)")


def check_new_output(target: str | Path, inputs: Iterable[str | Path] = (), *, overwrite: bool = False) -> Path:
    """``target`` if it may be written: never an input; an existing file only with ``overwrite``."""
    t = Path(target)
    refuse_input_as_output(t, inputs)
    if t.exists() and not overwrite:
        raise user_error("a new output file", "an existing file", t,
                         "choose another output folder, delete the file, or pass --overwrite to replace it")
    return t


__all__ = ["check_new_output", "refuse_input_as_output"]
