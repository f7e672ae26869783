"""``medsight serve``: the web viewer and inference service (thin wrapper around :mod:`medsight.serve`)."""

from __future__ import annotations

import argparse
from pathlib import Path

SERVE_EPILOG = """\
examples:
  medsight serve runs/hippo                          viewer and API on http://127.0.0.1:8000/ (prints the URL
                                                     with a generated token)
  medsight serve runs/ --root /data/scans            every run under runs/; jobs may name files under /data/scans
  MEDSIGHT_TOKEN=... medsight serve runs/hippo --host 0.0.0.0 --certfile cert.pem --keyfile key.pem
                                                     HTTPS to other machines, with your own token
  medsight serve runs/hippo --token-file ~/.medsight-token --work-dir /srv/medsight/work
                                                     jobs kept across restarts (SQLite in the work folder)

There is always a token: from --token-file (mode 600), or $MEDSIGHT_TOKEN, or generated and printed once in the
URL. It is never taken from the command line, where every user of the machine can read it. Beyond loopback the
server needs --certfile/--keyfile (or --insecure, to acknowledge plain HTTP on a trusted network). The API schema
is at /openapi.json. See docs/serve.md.
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
    p.add_argument("--token-file", type=Path, metavar="FILE",
                   help="read the access token from FILE (mode 600; default: $MEDSIGHT_TOKEN, else generated)")
    p.add_argument("--token", help=argparse.SUPPRESS)  # refused: a token on the command line is visible in ps
    p.add_argument("--certfile", type=Path, metavar="PEM", help="serve HTTPS with this certificate chain")
    p.add_argument("--keyfile", type=Path, metavar="PEM", help="the certificate's private key")
    p.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP with a --host beyond loopback (only on a network you trust)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a further Host name to answer to, e.g. the name a reverse proxy forwards (repeatable)")
    p.add_argument("--max-upload-mb", type=float, default=512.0, help="largest request body in MB (default 512)")
    p.add_argument("--max-image-mb", type=float, default=512.0,
                   help="largest image an upload may decompress to, in MiB of voxels (default 512)")
    p.add_argument("--job-ttl-hours", type=float, default=24.0,
                   help="delete finished jobs, inputs and outputs this long after they finished (default 24)")
    p.add_argument("--work-dir", type=Path,
                   help="keep uploads, job outputs and the job database here, across restarts "
                        "(default: a private temporary folder, removed at exit)")
    p.add_argument("--device", help="torch device for predictions (default: cuda when present, else cpu)")
    p.add_argument("--pacs-workdir", type=Path, metavar="DIR",
                   help="also show the studies of the DICOM node ('medsight pacs listen') working in DIR, with their "
                        "state (viewer and GET /api/pacs/studies)")
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


def _token(args: argparse.Namespace) -> str | None:
    """The token from ``--token-file`` or ``$MEDSIGHT_TOKEN`` (``None``: the server generates one)."""
    import os
    import stat

    from medsight.errors import user_error
    from medsight.serve.config import TOKEN_ENV

    if args.token is not None:
        raise user_error("the access token in a file or the environment", "--token on the command line (every user "
                         "of this machine can read it in ps)", None,
                         f"use --token-file FILE (mode 600) or the environment variable {TOKEN_ENV}")
    if args.token_file is not None:
        path = Path(args.token_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise user_error("a readable token file", type(exc).__name__, path, "check --token-file") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise user_error("a token file only its owner can read (mode 600)", f"mode {stat.S_IMODE(mode):o}", path,
                             f"chmod 600 {path}")
        if not text:
            raise user_error("a token in the token file", "an empty file", path, "write the token into it")
        return text
    return os.environ.get(TOKEN_ENV) or None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from medsight.errors import user_error
    from medsight.serve import ServeConfig, create_app
    from medsight.serve.protocol import guarded_protocol

    if not 1 <= args.port <= 65535:
        raise user_error("a port in 1..65535", args.port, None, "fix --port")
    token = _token(args)
    config = ServeConfig(runs=_runs(args.runs), roots=tuple(Path(r) for r in args.root), token=token,
                         max_upload_mb=args.max_upload_mb, max_image_mb=args.max_image_mb, work_dir=args.work_dir,
                         host=args.host, allow_hosts=tuple(args.allow_host), certfile=args.certfile,
                         keyfile=args.keyfile, insecure=args.insecure, job_ttl_hours=args.job_ttl_hours,
                         device=args.device, pacs_workdir=args.pacs_workdir)
    app = create_app(config)
    state = app.state.medsight
    try:
        _check_port(args.host, args.port)
    except BaseException:
        state.close()  # the work folder's lock (and a temporary folder) go with the failed start
        raise
    runs = state.catalog.runs
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"{'https' if config.tls else 'http'}://{shown_host}:{args.port}/"
    print(f"medsight serve: {len(runs)} run(s): {', '.join(runs) or 'none'}")
    if token is None:  # generated: shown once, here (as Jupyter does); it never appears in a log
        print(f"open {url}?token={state.token}  (Ctrl+C to stop)", flush=True)
    else:
        print(f"open {url}?token=<your token>  (Ctrl+C to stop)", flush=True)
    protocol = guarded_protocol(header_timeout=config.header_timeout_s, body_timeout=config.body_timeout_s,
                                min_rate=config.min_body_rate)
    try:
        uvicorn.run(app, host=args.host, port=args.port, http=protocol, access_log=False, log_level="warning",
                    server_header=False, limit_concurrency=config.max_connections, timeout_keep_alive=5,
                    ssl_certfile=str(config.certfile) if config.tls else None,
                    ssl_keyfile=str(config.keyfile) if config.tls else None)
    finally:
        state.close()  # also when uvicorn ended without its shutdown: no work folder is left behind
    return 0


__all__ = ["cmd_serve", "register"]
