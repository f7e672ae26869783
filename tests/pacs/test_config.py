"""The node configuration: TOML/JSON files, flags over the file, rules, one-line refusals; `medsight pacs status`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medsight.cli.app import main
from medsight.errors import MedsightError
from medsight.pacs.config import NodeConfig, load_config
from medsight.pacs.store import JobStore

TOML = """
[pacs]
host = "10.0.0.2"
port = 104
called_ae = "ARCHIVE"
transport = "dicomweb"
url = "http://10.0.0.2/dicom-web"

[node]
allowed_ae = ["ARCHIVE", "CT01"]
workdir = "node"
quiet_seconds = 20

[[rules]]
name = "brain"
modality = "MR"
description = "t1.*post"
runs = ["runs/brain"]

[[rules]]
modality = "CT"
body_part = "abdomen"
run = "/models/ct"
"""


def test_file_rules_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(TOML, encoding="utf-8")
    config = load_config(path)
    assert config.pacs.port == 104 and config.pacs.transport == "dicomweb" and config.allowed_ae == ("ARCHIVE", "CT01")
    assert config.workdir == tmp_path / "node" and config.host == "127.0.0.1" and config.quiet_seconds == 20
    assert config.rule_for("MR", "BRAIN", "T1 POST gd").name == "brain"
    assert config.rule_for("MR", "BRAIN", "FLAIR") is None
    ct = config.rule_for("CT", "ABDOMEN PELVIS", "")
    assert ct is not None and ct.runs == (Path("/models/ct"),) and ct.name == "rule 2"
    assert config.rules[0].runs == ((tmp_path / "runs" / "brain").resolve(),)
    flags = config.with_overrides(pacs_port=4242, port=11113, runs=["/r"], tta=None)
    assert flags.pacs.port == 4242 and flags.port == 11113 and flags.tta is True
    assert flags.rule_for("US", "", "").runs == (Path("/r"),)
    assert load_config(None) == NodeConfig()
    as_json = tmp_path / "node.json"
    as_json.write_text(json.dumps({"node": {"allowed_ae": ["X"]}}), encoding="utf-8")
    assert load_config(as_json).allowed_ae == ("X",)


@pytest.mark.parametrize(("text", "message"), [
    ("[node]\nquiet = 3\n", "keys of [node] among"),
    ("[pacs]\ntransport = \"hl7\"\n", "transport one of dimse, dicomweb"),
    ("[node]\nae_title = \"A_VERY_LONG_AE_TITLE\"\n", "AE titles of 1-16 ASCII characters"),
    ("[node]\nquiet_seconds = 700\n", "0 <= quiet_seconds < series_timeout"),
    ("[[rules]]\nmodality = \"CT\"\n", "rule 1 to name at least one run"),
    ("[[rules]]\ndescription = \"(\"\nruns = [\"r\"]\n", "rule 1 description to be a regular expression"),
    ("[node\n", "a TOML (or .json) node configuration"),
])
def test_bad_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MedsightError, match=re.escape(message)) as err:
        load_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_listen_needs_an_allowed_ae_and_status_lists_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pacs", "listen", "--workdir", str(tmp_path / "node"), "--listen-port", "0"]) == 2
    assert "at least one allowed calling AE title" in capsys.readouterr().err
    store = JobStore(tmp_path / "node" / "jobs.sqlite")
    store.record_instance(series_uid="9.1", study_uid="1.1", sop_uid="9.1.1", path="/x", folder="/x", modality="MR")
    store.close()
    assert main(["pacs", "status", "--workdir", str(tmp_path / "node")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("state\t") and out[1].startswith("received\t9.1\t1.1\tMR\t1\t0/0")
    assert main(["pacs", "status", "--workdir", str(tmp_path / "node"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["study_uid"] == "1.1"
