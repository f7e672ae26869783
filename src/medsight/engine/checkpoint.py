"""Self-describing checkpoints, saved atomically and loaded with ``weights_only=True``.

A checkpoint holds: format version, package version, architecture name and init arguments, the plan, the
weights, optimiser state, epoch, elapsed time, metric history, sampler and RNG state. A model is rebuilt
from the file alone; nothing in it is executed when loading. Loading goes through :func:`medsight.core.pinned.read_bytes`,
so a prediction that hashed the file loads exactly the bytes it hashed.
"""

from __future__ import annotations

import errno
import io
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsight import __version__
from medsight.core.atomic import atomic_path
from medsight.core.pinned import is_pinned, read_bytes
from medsight.errors import MedsightError, user_error
from medsight.models.registry import create_model

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "architecture", "init_args", "plan", "state_dict")


def save_checkpoint(path: str | Path, *, model: nn.Module, architecture: str, init_args: dict[str, Any], plan: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    """Atomically write a checkpoint. On a full disk the previous file is kept and a clear error is raised."""
    state = {
        "format_version": FORMAT_VERSION,
        "medsight_version": __version__,
        "architecture": architecture,
        "init_args": init_args,
        "plan": plan,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, MedsightError) as exc:  # atomic_path turns ENOSPC into a MedsightError caused by the OSError
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            raise MedsightError(f"Expected free disk space to save {path}, got 'no space left on device'; the previous "
                                "checkpoint is intact: free some space and run the same command with --resume") from exc
        raise
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint without executing any code stored in it.

    Raises:
        MedsightError: the file is missing, not a medsight checkpoint, or would need arbitrary code to load.
    """
    path = Path(path)
    if not is_pinned(path) and not path.is_file():
        raise user_error("a checkpoint file", "none", path, "train a model first or check the run folder")
    try:
        # from the bytes a prediction hashed (medsight.core.pinned), never a second read of a file that may have changed
        data = io.BytesIO(read_bytes(path))
        state = torch.load(data, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError: all mean "refuse this file"
        raise user_error(
            "a medsight checkpoint holding only tensors and plain data", f"a file that cannot be loaded safely ({type(exc).__name__})",
            path, "use a checkpoint written by medsight; files that need arbitrary code to unpickle are refused",
        ) from exc
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise user_error("a medsight checkpoint", f"keys {sorted(state)[:6] if isinstance(state, dict) else type(state).__name__}",
                         path, "use checkpoint_best.pt or checkpoint_last.pt from a medsight run")
    if int(state["format_version"]) > FORMAT_VERSION:
        raise user_error(f"checkpoint format <= {FORMAT_VERSION}", state["format_version"], path, "upgrade medsight")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> nn.Module:
    """Rebuild the network from a loaded checkpoint and load its weights (eval mode)."""

    model = create_model(state["architecture"], **state["init_args"])
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model


def load_matching_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], *,
                          skip_prefixes: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Copy into ``model`` the tensors of ``state_dict`` that match one of its own by name and shape (fine-tuning).

    Kept apart from :func:`load_checkpoint` (which only reads and validates the file): this is the partial copy.

    Args:
        model: the freshly built network; its other tensors keep their initial values.
        state_dict: the source weights (``load_checkpoint(path)["state_dict"]``).
        skip_prefixes: names starting with one of these are never copied (e.g. the output head when the labels differ).

    Returns:
        ``(loaded, skipped)``: the model's tensor names copied from the source, and those left fresh.
    """
    own = model.state_dict(keep_vars=True)
    primary: dict[int, str] = {}  # a module shared under two names (DynUNet's skip_layers) is decided once, by its first name
    loaded, skipped = [], []
    update = {}
    for name, tensor in own.items():
        first = primary.setdefault(id(tensor), name)
        if first != name:
            continue
        src = state_dict.get(name)
        if src is not None and tuple(src.shape) == tuple(tensor.shape) and not name.startswith(skip_prefixes):
            update[name] = src.detach().to(dtype=tensor.dtype)
            loaded.append(name)
        else:
            skipped.append(name)
    model.load_state_dict(update, strict=False)
    return loaded, skipped
