"""The server's settings in one frozen dataclass (built by ``medsight serve`` from its options).

Safe by default: loopback only, a token always (generated when none is given), TLS or an explicit ``insecure``
acknowledgement beyond loopback, bounded uploads and decompressed voxels, request timeouts, and jobs that expire.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from medsight.errors import user_error

#: Host names a loopback-bound server answers to (anything else is refused: DNS-rebinding protection).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
#: Environment variable the token is read from (never from the command line, where ``ps`` shows it).
TOKEN_ENV = "MEDSIGHT_TOKEN"


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
        token: access token; ``None`` makes :func:`~medsight.serve.app.create_app` generate one (there is always
            a token).
        max_upload_mb: largest accepted upload (MB); a zip may hold at most 4 times as much uncompressed.
        max_image_mb: largest image an upload or a named file may decompress to (voxel bytes, MiB; a DICOM series
            counts all its slices); the input and its reference are each checked.
        work_dir: where uploads, job outputs and the job database go (a fresh private temporary folder when
            ``None``; jobs then last as long as the process).
        host: the address the server binds to; a loopback address restricts the accepted ``Host`` headers.
        allow_hosts: further ``Host`` names to answer to (the public name a reverse proxy forwards).
        certfile, keyfile: PEM certificate chain and key: the server speaks HTTPS.
        insecure: serve plain HTTP beyond loopback anyway (the user acknowledged it).
        max_pending_jobs: queued or running jobs (and uploads on their way) beyond this are refused with 429.
        job_ttl_hours: finished jobs, with their inputs and outputs, are deleted this long after they finished.
        header_timeout_s: a connection must send complete request headers within this many seconds.
        body_timeout_s, min_body_rate: a request body must arrive within ``body_timeout_s`` plus one second per
            ``min_body_rate`` bytes received (a slow-loris client is cut off).
        max_connections: open connections beyond this are answered 503 by uvicorn.
        device: torch device for predictions (default: CUDA when present, else CPU).
        pacs_workdir: the work folder of a DICOM node (``medsight pacs listen``) whose studies the viewer and
            ``GET /api/pacs/studies`` show with their state (received, queued, running, sending, sent, failed).
    """

    runs: tuple[Path, ...] = ()
    roots: tuple[Path, ...] = ()
    token: str | None = None
    max_upload_mb: float = 512.0
    max_image_mb: float = 512.0
    work_dir: Path | None = None
    host: str = "127.0.0.1"
    allow_hosts: tuple[str, ...] = ()
    certfile: Path | None = None
    keyfile: Path | None = None
    insecure: bool = False
    max_pending_jobs: int = 16
    job_ttl_hours: float = 24.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    min_body_rate: int = 64 * 1024
    max_connections: int = 64
    device: str | None = None
    pacs_workdir: Path | None = None

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise user_error("a positive --max-upload-mb", self.max_upload_mb, None, "e.g. --max-upload-mb 512")
        if not self.max_image_mb > 0:
            raise user_error("a positive --max-image-mb", self.max_image_mb, None, "e.g. --max-image-mb 512")
        if not self.job_ttl_hours > 0:
            raise user_error("a positive --job-ttl-hours", self.job_ttl_hours, None, "e.g. --job-ttl-hours 24")
        if self.token is not None and len(self.token) < 8:
            raise user_error("an access token of at least 8 characters", f"{len(self.token)} characters", None,
                             "choose a longer token (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
        for root in self.roots:
            if not Path(root).is_dir():
                raise user_error("an existing folder for --root", "no such folder", root, "check the path")
        if (self.certfile is None) != (self.keyfile is None):
            raise user_error("both --certfile and --keyfile", "only one of them", None, "give both PEM files, or neither")
        if self.tls:
            self._check_tls()
        elif not is_loopback(self.host) and not self.insecure:
            raise user_error(f"HTTPS (--certfile and --keyfile) for --host {self.host}",
                             "plain HTTP to other machines", None,
                             "give --certfile/--keyfile, bind 127.0.0.1 behind a TLS reverse proxy, or pass --insecure "
                             "if the network is trusted")

    def _check_tls(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(self.certfile), str(self.keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise user_error("a PEM certificate and its private key", f"files that do not load ({type(exc).__name__})",
                             self.certfile, "check --certfile and --keyfile (PEM, matching key, readable)") from exc

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS itself."""
        return self.certfile is not None and self.keyfile is not None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)

    def allowed_hosts(self) -> list[str]:
        """``Host`` header values accepted: loopback names (and ``allow_hosts``) when bound to loopback, else any."""
        if is_loopback(self.host):
            return [*LOOPBACK_NAMES, *(h.lower() for h in self.allow_hosts)]
        return ["*"]


__all__ = ["LOOPBACK_NAMES", "TOKEN_ENV", "ServeConfig", "is_loopback"]
