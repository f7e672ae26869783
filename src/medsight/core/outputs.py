"""Outputs never destroy what the user had: an output that is one of the inputs (or a folder holding one) is refused,
always; an existing output file is replaced only when the user asked for it (``--overwrite``).

Commands check every output before they write the first one, so a refusal is one line with nothing written.
"""

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


def _within(child: Path, parent: Path) -> bool:
    """Whether ``child`` is ``parent`` or lies below it (after resolving links)."""
    try:
        c, p = child.resolve(), parent.resolve()
    except OSError:
        return False
    return c == p or p in c.parents


def refuse_output_holding_input(folder: str | Path, inputs: Iterable[str | Path]) -> None:
    """One line when the output ``folder`` is one of ``inputs`` or holds one of them: an output folder that is replaced
    (or filled) as a whole must not take an input with it."""
    f = Path(folder)
    for source in inputs:
        src = Path(source)
        if _within(src, f):
            got = "the input itself" if _same(f, src) else f"a folder holding the input {src}"
            raise user_error("an output folder apart from the inputs", got, f,
                             "choose an output folder beside the inputs (medsight never writes over its input)")


def check_new_outputs(targets: Iterable[str | Path], inputs: Iterable[str | Path] = (), *,
                      overwrite: bool = False) -> list[Path]:
    """:func:`check_new_output` for each of ``targets``, all before anything is written."""
    sources = [Path(p) for p in inputs]
    return [check_new_output(t, sources, overwrite=overwrite) for t in targets]


def check_output_folder(folder: str | Path, inputs: Iterable[str | Path] = (), *, overwrite: bool = False) -> Path:
    """``folder`` if a command may write its files into it: never an input nor a folder holding one; an existing
    folder that is not empty only with ``overwrite`` (then files of the same names are replaced, each atomically)."""
    f = Path(folder)
    refuse_output_holding_input(f, inputs)
    if f.exists() and not f.is_dir():
        raise user_error("an output folder", "an existing file", f, "choose a folder name")
    if f.is_dir() and any(f.iterdir()) and not overwrite:
        raise user_error("a new output folder (or an empty one)", "a folder with files in it", f,
                         "choose another output folder, empty it, or pass --overwrite to replace files of the same names")
    return f


__all__ = ["check_new_output", "check_new_outputs", "check_output_folder", "refuse_input_as_output",
           "refuse_output_holding_input"]
