"""Training arithmetic: which autocast dtype a ``--precision`` means on a device, and whether a CPU has bfloat16
instructions.

``auto`` is float16 autocast with loss scaling on a GPU. On a CPU it is bfloat16 autocast for the tasks whose quality
was checked with it (segmentation: ``docs/benchmarks.md``, "bfloat16 as the CPU default"), and only where the processor
has bfloat16 instructions (``avx512_bf16`` or AMX); elsewhere bfloat16 is emulated and slower than float32, so
``auto`` stays float32.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

from medsight.engine.config import PRECISIONS
from medsight.errors import user_error

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor listed in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (Linux x86: ``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``).

    Other systems answer ``False``: bfloat16 is then left to an explicit ``--precision bf16``.
    """
    if platform.system() != "Linux":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return bool(cpu_flags(text) & set(BF16_CPU_FLAGS))


def autocast_dtype(precision: str, device: torch.device, *, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype of a training precision on ``device`` (``None``: plain float32).

    Args:
        precision: one of ``PRECISIONS``.
        device: the training device.
        cpu_bf16: whether ``auto`` may choose bfloat16 on a CPU (the task's quality was checked with it); it does
            so only when :func:`cpu_has_bf16`.
    """
    if precision not in PRECISIONS:
        raise user_error(f"a precision in {', '.join(PRECISIONS)}", precision, None, "fix --precision")
    if precision == "fp16" and device.type != "cuda":
        raise user_error("a GPU for --precision fp16", device, None, "use --precision bf16 on a CPU")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_bf16 and device.type == "cpu" and cpu_has_bf16() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_name(dtype: torch.dtype | None) -> str:
    """The ``--precision`` name of an autocast dtype, as recorded in a run."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
