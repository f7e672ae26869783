"""``medsight pacs echo|find|pull|push|listen|status``: talk to a PACS, and run the DICOM node.

Connection settings come from ``--config FILE`` (TOML or JSON, see docs/pacs.md) and/or the flags; flags win.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PACS_EPILOG = """examples:
  medsight pacs echo --host 127.0.0.1 --port 4242 --called-ae ORTHANC
  medsight pacs find --url http://127.0.0.1:8042/dicom-web --transport dicomweb --level series --study 1.2.3
  medsight pacs pull 1.2.3 --series 1.2.3.4 ./from_pacs --config node.toml
  medsight pacs push ./pred/case_seg.dcm --config node.toml
  medsight pacs listen --config node.toml          (Ctrl-C or SIGTERM stops it; a kill loses nothing)
  medsight pacs status --workdir ./node
"""


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="node configuration (TOML or JSON; docs/pacs.md)")
    p.add_argument("--transport", choices=("dimse", "dicomweb"), help="DIMSE (default) or DICOMweb")
    p.add_argument("--host", dest="pacs_host", help="the PACS' DIMSE host (default 127.0.0.1)")
    p.add_argument("--port", dest="pacs_port", type=int, help="the PACS' DIMSE port (default 4242)")
    p.add_argument("--called-ae", dest="pacs_called_ae", help="the PACS' AE title (default ORTHANC)")
    p.add_argument("--url", dest="pacs_url", help="the PACS' DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    p.add_argument("--ae-title", help="medsight's own AE title (default MEDSIGHT)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pacs", help="search, pull and push studies on a PACS; run the DICOM node",
                       description="Talk to a PACS over DIMSE or DICOMweb, and run medsight as a DICOM node that "
                       "segments the series it receives and sends the results back.", epilog=PACS_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    psub = p.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)

    q = psub.add_parser("echo", help="check that the PACS answers (C-ECHO or a QIDO-RS query)")
    _connection(q)
    q.set_defaults(func=cmd_echo)

    q = psub.add_parser("find", help="list studies, series or instances (UIDs, dates, descriptions, counts)")
    _connection(q)
    q.add_argument("--level", default="study", choices=("study", "series", "image"), help="query level")
    q.add_argument("--study", help="StudyInstanceUID (for series and image queries)")
    q.add_argument("--series", help="SeriesInstanceUID (for image queries)")
    q.add_argument("-m", "--match", action="append", default=[], metavar="KEY=VALUE",
                   help="a further match key, e.g. Modality=CT or StudyDate=20240101-20241231 (repeatable)")
    q.add_argument("--json", action="store_true", help="print JSON instead of tab-separated lines")
    q.set_defaults(func=cmd_find)

    q = psub.add_parser("pull", help="retrieve a study or a series into a folder (C-GET or WADO-RS)")
    _connection(q)
    q.add_argument("study", metavar="STUDY_UID")
    q.add_argument("out", type=Path, metavar="OUT_DIR", help="files go to OUT_DIR/<SeriesInstanceUID>/")
    q.add_argument("--series", help="only this SeriesInstanceUID")
    q.set_defaults(func=cmd_pull)

    q = psub.add_parser("push", help="send DICOM files or folders to the PACS (C-STORE or STOW-RS)")
    _connection(q)
    q.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    q.set_defaults(func=cmd_push)

    q = psub.add_parser("listen", help="run the DICOM node: receive series, segment them, send the results back")
    _connection(q)
    q.add_argument("--listen-host", dest="host", help="address to listen on (default 127.0.0.1: this machine only)")
    q.add_argument("--listen-port", dest="port", type=int, help="DICOM port to listen on (default 11112)")
    q.add_argument("--allow-ae", action="append", metavar="AE", help="a calling AE title to accept (repeatable; "
                   "default: [node] allowed_ae; associations from any other title are rejected)")
    q.add_argument("--workdir", type=Path, help="the node's folder: received files, results, job store, audit")
    q.add_argument("--run", action="append", metavar="RUN_DIR",
                   help="segment every series with this run (repeatable; replaces the config's rules)")
    q.add_argument("--quiet-seconds", type=float, help="a series is complete after this long without an instance")
    q.add_argument("--series-timeout", type=float, help="fail a series still incomplete this long after it began")
    q.add_argument("--deidentify", action="store_true", default=None, help="de-identify every instance on ingest")
    q.add_argument("--send", help="what goes back, comma-separated among seg,rtstruct,sc (default all three)")
    q.add_argument("--no-tta", action="store_true", help="predict without mirror test-time augmentation")
    q.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    q.set_defaults(func=cmd_listen)

    q = psub.add_parser("status", help="list the node's jobs (one per series) and their states")
    q.add_argument("--config", type=Path, metavar="FILE", help="node configuration (for its workdir)")
    q.add_argument("--workdir", type=Path, help="the node's folder (default: the config's)")
    q.add_argument("--json", action="store_true", help="print the studies as JSON (what the web server shows)")
    q.set_defaults(func=cmd_status)


def _config(args: argparse.Namespace, **extra: object):  # type: ignore[no-untyped-def]
    from medsight.pacs.config import load_config

    given = {k: getattr(args, k, None) for k in ("pacs_host", "pacs_port", "pacs_called_ae", "pacs_url", "ae_title")}
    if getattr(args, "transport", None):
        given["pacs_transport"] = args.transport
    return load_config(args.config).with_overrides(**given, **extra)


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from medsight.pacs.transport import connect

    config = _config(args)
    return connect(config.pacs, ae_title=config.ae_title)


def cmd_echo(args: argparse.Namespace) -> int:
    client = _client(args)
    client.echo()
    print("ok")
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    from medsight.errors import user_error

    query = {"StudyInstanceUID": args.study, "SeriesInstanceUID": args.series}
    for item in args.match:
        key, sep, value = item.partition("=")
        if not sep:
            raise user_error("--match KEY=VALUE", repr(item), "the command line", "e.g. --match Modality=CT")
        query[key] = value
    rows = _client(args).find(args.level, {k: v for k, v in query.items() if v})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print("\t".join(f"{k}={v}" for k, v in row.items()))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    files = _client(args).retrieve(args.study, args.series, args.out)
    print(f"{len(files)} instances in {args.out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from medsight.pacs.transport import files_to_send

    files = files_to_send(args.paths)
    sent = _client(args).store(files)
    print(f"{len(sent)} of {len(files)} instances stored")
    return 0 if len(sent) == len(files) else 1


def cmd_listen(args: argparse.Namespace) -> int:
    from medsight.pacs.node import serve_forever

    extra = {"host": args.host, "port": args.port, "allowed_ae": args.allow_ae, "workdir": args.workdir,
             "runs": args.run, "quiet_seconds": args.quiet_seconds, "series_timeout": args.series_timeout,
             "deidentify": args.deidentify, "device": args.device,
             "send": tuple(s.strip() for s in args.send.split(",") if s.strip()) if args.send else None,
             "tta": False if args.no_tta else None}
    serve_forever(_config(args, **extra))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from medsight.pacs.config import load_config
    from medsight.pacs.store import JobStore, job_lines

    config = load_config(args.config).with_overrides(workdir=args.workdir)
    store = JobStore(config.store_path)
    try:
        if args.json:
            print(json.dumps(store.studies(), indent=2))
        else:
            print("\n".join(job_lines(store.jobs())))
    finally:
        store.close()
    return 0


__all__ = ["register"]
