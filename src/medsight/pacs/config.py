"""The node's connection settings and model rules: a small TOML or JSON file, overridden by command-line flags.

Nothing about a PACS is hard-coded: :func:`load_config` reads a file such as ::

    [pacs]                      # the remote archive
    host = "127.0.0.1"          # DIMSE (C-ECHO, C-FIND, C-GET, C-STORE)
    port = 4242
    called_ae = "ORTHANC"
    url = "http://127.0.0.1:8042/dicom-web"   # DICOMweb (QIDO-RS, WADO-RS, STOW-RS)
    transport = "dimse"         # how results are sent back: "dimse" (C-STORE) or "dicomweb" (STOW-RS)

    [node]                      # medsight's own C-STORE SCP
    ae_title = "MEDSIGHT"
    host = "127.0.0.1"          # loopback unless told otherwise
    port = 11112
    allowed_ae = ["ORTHANC"]    # calling AE titles accepted; others are rejected
    workdir = "/var/lib/medsight-node"
    quiet_seconds = 10          # a series is complete after this long without a new instance
    series_timeout = 600        # ... and failed if it is still incomplete this long after its first instance
    deidentify = false          # de-identify every instance on ingest (PS3.15 Basic Profile)
    send = ["seg", "rtstruct", "sc"]

    [[rules]]                   # the first rule that matches picks the run(s); empty fields match anything
    modality = "CT"
    body_part = ""              # BodyPartExamined, case-insensitive substring
    description = ""            # SeriesDescription, a regular expression (case-insensitive, search)
    runs = ["/models/ct_organs"]

:class:`NodeConfig` holds the result; :meth:`NodeConfig.with_overrides` applies the flags that were given.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from medsight.errors import user_error

TRANSPORTS = ("dimse", "dicomweb")
RESULT_KINDS = ("seg", "rtstruct", "sc")


@dataclass(frozen=True)
class Rule:
    """Which trained run(s) a series gets: every non-empty field must match the series' header.

    Attributes:
        runs: run (or export) folders; each gives its own SEG/RTSTRUCT/SC.
        modality: Modality, exact (case-insensitive).
        body_part: BodyPartExamined, case-insensitive substring.
        description: SeriesDescription, a case-insensitive regular expression (``re.search``).
        name: shown in the log and in the job record.
    """

    runs: tuple[Path, ...]
    modality: str = ""
    body_part: str = ""
    description: str = ""
    name: str = ""

    def matches(self, modality: str, body_part: str, description: str) -> bool:
        if self.modality and self.modality.upper() != (modality or "").upper():
            return False
        if self.body_part and self.body_part.upper() not in (body_part or "").upper():
            return False
        return not (self.description and not re.search(self.description, description or "", re.IGNORECASE))


@dataclass(frozen=True)
class PacsConfig:
    """The remote archive: DIMSE address and AE title, DICOMweb URL, and the transport results go back by."""

    host: str = "127.0.0.1"
    port: int = 4242
    called_ae: str = "ORTHANC"
    url: str = ""
    transport: str = "dimse"
    timeout: float = 30.0


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node needs; see the module docstring for the file format and the defaults."""

    pacs: PacsConfig = field(default_factory=PacsConfig)
    ae_title: str = "MEDSIGHT"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_ae: tuple[str, ...] = ()
    workdir: Path = Path("medsight-node")
    quiet_seconds: float = 10.0
    series_timeout: float = 600.0
    deidentify: bool = False
    deid_key: Path | None = None
    send: tuple[str, ...] = RESULT_KINDS
    rules: tuple[Rule, ...] = ()
    tta: bool = True
    device: str | None = None
    retry_base: float = 2.0
    retry_max: float = 300.0
    poll_seconds: float = 0.5

    @property
    def store_path(self) -> Path:
        return self.workdir / "jobs.sqlite"

    @property
    def audit_path(self) -> Path:
        return self.workdir / "audit.jsonl"

    def rule_for(self, modality: str, body_part: str, description: str) -> Rule | None:
        """The first rule that matches the series, or ``None``."""
        return next((r for r in self.rules if r.matches(modality, body_part, description)), None)

    def with_overrides(self, **given: Any) -> NodeConfig:
        """A copy with the given (non-``None``) values replaced; ``pacs_<field>`` names a :class:`PacsConfig`
        field (``pacs_host``...)."""
        given = {k: v for k, v in given.items() if v is not None}
        pacs = {k[5:]: v for k, v in given.items() if k.startswith("pacs_")}
        node = {k: v for k, v in given.items() if not k.startswith("pacs_")}
        if "allowed_ae" in node:
            node["allowed_ae"] = tuple(node["allowed_ae"])
        if "workdir" in node:
            node["workdir"] = Path(node["workdir"])
        if "runs" in node:  # a one-rule shortcut: every series gets these runs
            node["rules"] = (Rule(runs=tuple(Path(r) for r in node.pop("runs")), name="command line"),)
        out = dataclasses.replace(self, pacs=dataclasses.replace(self.pacs, **pacs), **node)
        return check_config(out, "the command line")


def _rule(item: Any, where: Path, index: int) -> Rule:
    if not isinstance(item, Mapping):
        raise user_error("each [[rules]] entry to be a table", type(item).__name__, where, "see docs/pacs.md")
    runs = item.get("runs", item.get("run", []))
    runs = [runs] if isinstance(runs, str) else list(runs)
    if not runs:
        raise user_error(f"rule {index + 1} to name at least one run (runs = [...])", "none", where,
                         "add the trained run folder(s)")
    description = str(item.get("description", ""))
    try:
        re.compile(description)
    except re.error as exc:
        raise user_error(f"rule {index + 1} description to be a regular expression", repr(description), where,
                         f"fix it ({exc})") from exc
    base = where.parent
    return Rule(runs=tuple((base / r).resolve() if not Path(r).is_absolute() else Path(r) for r in runs),
                modality=str(item.get("modality", "")), body_part=str(item.get("body_part", "")),
                description=description, name=str(item.get("name", f"rule {index + 1}")))


def _known(section: Mapping[str, Any], allowed: set[str], where: Path, name: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise user_error(f"keys of [{name}] among {', '.join(sorted(allowed))}", ", ".join(unknown), where,
                         "remove or rename them (docs/pacs.md lists the settings)")


def load_config(path: str | Path | None = None) -> NodeConfig:
    """Read a node configuration (``.toml`` or ``.json``); ``None`` gives the defaults.

    Raises:
        MedsightError: the file is missing, not TOML/JSON, or holds unknown keys or wrong types (one line).
    """
    if path is None:
        return NodeConfig()
    where = Path(path)
    if not where.is_file():
        raise user_error("a node configuration file (TOML or JSON)", "no file", where, "check the path")
    text = where.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if where.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise user_error("a TOML (or .json) node configuration", f"a parse error ({exc})", where,
                         "fix the syntax") from exc
    _known(data, {"pacs", "node", "rules"}, where, "top level")
    pacs_section = data.get("pacs", {})
    node_section = dict(data.get("node", {}))
    _known(pacs_section, {f.name for f in dataclasses.fields(PacsConfig)}, where, "pacs")
    node_fields = {f.name for f in dataclasses.fields(NodeConfig)} - {"pacs", "rules"}
    _known(node_section, node_fields, where, "node")
    try:
        pacs = PacsConfig(**pacs_section)
        for key in ("allowed_ae", "send"):
            if key in node_section:
                node_section[key] = tuple(str(v) for v in node_section[key])
        for key in ("workdir", "deid_key"):
            if node_section.get(key):
                p = Path(node_section[key])
                node_section[key] = p if p.is_absolute() else (where.parent / p).resolve()
        rules = tuple(_rule(item, where, i) for i, item in enumerate(data.get("rules", [])))
        config = NodeConfig(pacs=pacs, rules=rules, **node_section)
    except TypeError as exc:
        raise user_error("settings of the documented types", str(exc), where, "see docs/pacs.md") from exc
    return check_config(config, where)


def check_config(config: NodeConfig, where: str | Path) -> NodeConfig:
    """Refuse values that cannot work (one line each)."""
    if config.pacs.transport not in TRANSPORTS:
        raise user_error(f"transport one of {', '.join(TRANSPORTS)}", repr(config.pacs.transport), where,
                         "set [pacs] transport")
    if config.pacs.transport == "dicomweb" and not config.pacs.url:
        raise user_error("a DICOMweb url for transport 'dicomweb'", "none", where, "set [pacs] url")
    bad = [k for k in config.send if k not in RESULT_KINDS]
    if bad:
        raise user_error(f"send among {', '.join(RESULT_KINDS)}", ", ".join(bad), where, "fix [node] send")
    for title in (config.ae_title, config.pacs.called_ae, *config.allowed_ae):
        if not 0 < len(title) <= 16 or not title.isascii() or "\\" in title:
            raise user_error("AE titles of 1-16 ASCII characters", repr(title), where, "shorten or fix it")
    if config.quiet_seconds < 0 or config.series_timeout <= config.quiet_seconds:
        raise user_error("0 <= quiet_seconds < series_timeout",
                         f"quiet_seconds {config.quiet_seconds}, series_timeout {config.series_timeout}", where,
                         "raise series_timeout")
    return config


__all__ = ["RESULT_KINDS", "TRANSPORTS", "NodeConfig", "PacsConfig", "Rule", "check_config", "load_config"]
