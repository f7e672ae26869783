"""``medsight serve``: the web viewer and inference service (thin wrapper around :mod:`medsight.serve`)."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

SERVE_EPILOG = """\
examples:
  medsight serve runs/hippo                          viewer and API on http://127.0.0.1:8000/
  medsight serve runs/ --root /data/scans            every run under runs/; jobs may name files under /data/scans
  MEDSIGHT_TOKEN=... medsight serve runs/hippo --host 0.0.0.0 --port 8080
                                                     reachable from other machines, token required

Binding to an address other than loopback without a token makes medsight generate one and print the URL with it.
The API schema is at /openapi.json. Uploads and job outputs go to a private temporary folder (removed at exit)
unless --work-dir is given. See docs/serve.md.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web viewer and prediction service for trained runs",
                       description="Serve a browser viewer (slices, window/level, label and heat-map overlays) and a "
                       "REST API (runs and metrics, prediction jobs, downloads) for trained runs.",
                       epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="run folders, or folders of runs (default: ./runs when it exists)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--root", action="append", default=[], metavar="DIR",
                   help="a folder whose files jobs may name by path (repeatable); nothing outside is read")
    p.add_argument("--token", help="access token (default: $MEDSIGHT_TOKEN; none on loopback)")
    p.add_argument("--max-upload-mb", type=float, default=512.0, help="largest request body in MB (default 512)")
    p.add_argument("--work-dir", type=Path, help="keep uploads and job outputs here (default: a temporary folder)")
    p.add_argument("--device", help="torch device for predictions (default: cuda when present, else cpu)")
    p.set_defaults(func=cmd_serve)


def _runs(given: list[str]) -> tuple[Path, ...]:
    if given:
        return tuple(Path(r) for r in given)
    default = Path("runs")
    return (default,) if default.is_dir() else ()


def _check_port(host: str, port: int) -> None:
    """A one-line error now, rather than uvicorn's after start-up, when the address cannot be bound."""
    import socket

    from medsight.errors import user_error

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise user_error(f"an address this machine can listen on ({host}:{port})", exc.strerror or str(exc), None,
                             "choose another --port, or a --host of this machine") from exc


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from medsight.errors import user_error
    from medsight.serve import ServeConfig, create_app
    from medsight.serve.config import is_loopback

    if not 1 <= args.port <= 65535:
        raise user_error("a port in 1..65535", args.port, None, "fix --port")
    token = args.token or os.environ.get("MEDSIGHT_TOKEN") or None
    generated = token is None and not is_loopback(args.host)
    if generated:
        token = secrets.token_urlsafe(24)
    config = ServeConfig(runs=_runs(args.runs), roots=tuple(Path(r) for r in args.root), token=token,
                         max_upload_mb=args.max_upload_mb, work_dir=args.work_dir, host=args.host, device=args.device)
    app = create_app(config)
    _check_port(args.host, args.port)
    runs = app.state.medsight.catalog.runs
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown_host}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"medsight serve: {len(runs)} run(s): {', '.join(runs) or 'none'}")
    if generated:
        print("an access token was generated because the server is reachable from other machines")
    print(f"open {url}  (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning", server_header=False)
    return 0


__all__ = ["cmd_serve", "register"]
