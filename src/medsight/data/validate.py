"""Refuse to plan or train on a dataset that :func:`medsight.data.check.check_dataset` finds errors in.

Training on a broken case fails late (a shape mismatch in the middle of preprocessing) or, worse, silently (a
label value nobody declared, a NaN voxel read as 0). ``plan`` and ``train`` therefore run the full check first and
stop with one line naming the first file at fault. A dataset that passed is remembered (by its files' sizes and
modification times) for the rest of the process, so ``train`` does not check twice when it plans.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from medsight.data.check import check_dataset
from medsight.data.dataset import DatasetSpec
from medsight.errors import MedsightError

log = logging.getLogger(__name__)

_passed: set[tuple[object, ...]] = set()


def _state(spec: DatasetSpec) -> tuple[object, ...]:
    """What changes when any file of the dataset changes: every case file's size and modification time."""
    files: set[Path] = {Path(spec.root)}
    for ref in (*spec.cases, *spec.test_cases):
        files.update(ref.files)
    stamps = []
    for f in sorted(files):
        try:
            st = f.stat()
            stamps.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append((str(f), -1, -1))
    return (str(spec.root), len(spec.cases), len(spec.test_cases), tuple(stamps))


def require_valid_dataset(spec: DatasetSpec, *, progress: Callable[[int, int], None] | None = None) -> None:
    """Run the dataset check; raise one :class:`MedsightError` naming the first file at fault when it finds errors."""

    key = _state(spec)
    if key in _passed:
        return
    log.info("checking %d cases of %s before planning (as 'medsight dataset check' does)", len(spec.cases), spec.root)
    report = check_dataset(spec, progress=progress)
    if not report.ok:
        first = report.errors[0]
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise MedsightError(
            f"Expected a dataset without errors, got {first.kind} in {first.file}: {first.message}{more}; "
            f"'medsight dataset check {spec.root}' lists every problem: fix them and run again"
        )
    _passed.add(key)
