"""Memory guard: refuse an allocation that cannot fit before making it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from medsight.errors import MedsightError


def available_memory_bytes() -> int:
    """Memory the process may still use (MemAvailable on Linux; a conservative default elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def check_allocation(nbytes: int, where: str | Path, what: str = "image") -> None:
    """Raise a clear error when ``nbytes`` exceeds 80 % of the memory still available."""
    limit = int(0.8 * available_memory_bytes())
    if nbytes > limit:
        raise MedsightError(
            f"Expected {'an' if what[:1] in 'aeiou' else 'a'} {what} that fits in memory, got one that needs {nbytes / 1024**3:.1f} GiB "
            f"(available {limit / 1024**3:.1f} GiB) in {where}; check the header's dimensions, "
            "or crop/downsample the data first"
        )


def check_disk(nbytes: int, folder: str | Path, what: str = "cache") -> None:
    """Raise a clear error when writing ``nbytes`` under ``folder`` would (nearly) fill its file system."""
    folder = Path(folder)
    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(probe).free
    if nbytes > 0.95 * free:
        raise MedsightError(
            f"Expected free disk space for the {what} ({nbytes / 1024**3:.1f} GiB), got {free / 1024**3:.1f} GiB free "
            f"in {probe}; free some space or choose another output folder (--out)"
        )
