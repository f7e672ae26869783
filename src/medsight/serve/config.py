"""The server's settings in one frozen dataclass (built by ``medsight serve`` from its options)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from medsight.errors import user_error

#: Host names a loopback-bound server answers to (anything else is refused: DNS-rebinding protection).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    """Settings of a ``medsight serve`` instance.

    Args:
        runs: run folders (each holding ``plans.json``) or folders whose sub-folders are runs.
        roots: folders whose files may be named for prediction (``path=`` in a job request); nothing outside
            them, the run folders, the datasets those runs recorded, and the work folder is ever read.
        token: access token; ``None`` means no token is asked for (only sensible on loopback).
        max_upload_mb: largest accepted upload (MB); a zip may hold at most 4 times as much uncompressed.
        work_dir: where uploads and job outputs go (a fresh private temporary folder when ``None``).
        host: the address the server binds to; a loopback address restricts the accepted ``Host`` headers.
        max_pending_jobs: queued jobs beyond this are refused with 429.
        device: torch device for predictions (default: CUDA when present, else CPU).
    """

    runs: tuple[Path, ...] = ()
    roots: tuple[Path, ...] = ()
    token: str | None = None
    max_upload_mb: float = 512.0
    work_dir: Path | None = None
    host: str = "127.0.0.1"
    max_pending_jobs: int = 16
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise user_error("a positive --max-upload-mb", self.max_upload_mb, None, "e.g. --max-upload-mb 512")
        if self.token is not None and len(self.token) < 8:
            raise user_error("an access token of at least 8 characters", f"{len(self.token)} characters", None,
                             "choose a longer token (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
        for root in self.roots:
            if not Path(root).is_dir():
                raise user_error("an existing folder for --root", "no such folder", root, "check the path")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def allowed_hosts(self) -> list[str]:
        """``Host`` header values accepted: loopback names when bound to loopback, else any."""
        if is_loopback(self.host):
            return list(LOOPBACK_NAMES)
        return ["*"]


__all__ = ["LOOPBACK_NAMES", "ServeConfig", "is_loopback"]
