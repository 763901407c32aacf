"""The operator's CLI through a running node's API (``--server URL`` and a token): the real
``xdnsd`` command against a real ``xdnsd serve``, over HTTP on 127.0.0.1; tables by default,
``--json`` on request, a one-line message and a non-zero exit on errors.  No config file is
given to the CLI: everything comes through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import test_api
from tests.harness import ROOT
from tests.test_api import READER, WRITER, Node, served

node = test_api.node  # the same fixture: a real node with the API and two tokens


def xdnsd(
    node: Node, *args: str, token: str = WRITER, server: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDNSD_")}
    env["XDNSD_TOKEN"] = token
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "xdnsd",
            "--config",
            "/nonexistent/xdnsd.toml",  # must not be read: everything goes through the API
            "--server",
            server or f"http://127.0.0.1:{node.api_port}",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=env,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_zone_and_record_commands(node: Node, tmp_path: Path) -> None:
    listing = ok(xdnsd(node, "zone", "list")).splitlines()
    assert listing[0].split() == ["ZONE", "KIND", "SERIAL", "RECORDS", "TRANSFER"]
    assert listing[1].split()[:4] == ["example.test.", "primary", "1", "5"]

    out = ok(xdnsd(node, "zone", "create", "new.test", "--ns", "ns1.new.test."))
    assert out.strip() == "new.test.: created with 2 records, serial 1"
    ok(xdnsd(node, "records", "set", "new.test", "www", "A", "192.0.2.1", "192.0.2.2"))
    ok(xdnsd(node, "records", "add", "new.test", "mail", "MX", "10 mx", "--ttl", "600"))
    assert served(node.port, "www.new.test", "A") == ["192.0.2.1", "192.0.2.2"]
    assert served(node.port, "mail.new.test", "MX") == ["10 mx.new.test."]
    table = ok(xdnsd(node, "records", "list", "new.test", "--name", "www")).splitlines()
    assert table[0].split() == ["NAME", "TTL", "TYPE", "DATA"]
    assert [line.split() for line in table[1:]] == [
        ["www.new.test.", "300", "A", "192.0.2.1"],
        ["www.new.test.", "300", "A", "192.0.2.2"],
    ]
    ok(xdnsd(node, "records", "delete", "new.test", "www", "A", "192.0.2.1"))
    docs = json.loads(ok(xdnsd(node, "records", "list", "new.test", "--type", "A", "--json")))
    assert [(d["name"], d["data"]) for d in docs] == [("www.new.test.", "192.0.2.2")]

    # history (both spellings) names the token the CLI used
    history = json.loads(ok(xdnsd(node, "history", "new.test", "--json")))
    assert [h["origin"] for h in history] == ["api:ops"] * 4
    assert "api:ops" in ok(xdnsd(node, "zone", "history", "new.test"))
    lines = ok(xdnsd(node, "history", "new.test", "--records", "--limit", "1")).splitlines()
    assert lines[1].split()[2:5] == ["3", "->", "4"], lines
    assert lines[2:] == ["    - www.new.test. 300 A 192.0.2.1"]

    # export, change the file, import it back: one change
    exported = ok(xdnsd(node, "zone", "export", "new.test"))
    changed = tmp_path / "new.test.zone"
    changed.write_text(exported + 'txt.new.test. 60 IN TXT "from a file"\n')
    out = ok(xdnsd(node, "zone", "import", str(changed), "--zone", "new.test"))
    assert out.strip().startswith("new.test.: 0 removed, 1 added, serial 4 -> 5"), out
    assert served(node.port, "txt.new.test", "TXT") == ['"from a file"']

    # delete wants --yes
    refused = xdnsd(node, "zone", "delete", "new.test")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    ok(xdnsd(node, "zone", "delete", "new.test", "--yes"))
    zones = json.loads(ok(xdnsd(node, "zone", "list", "--json")))
    assert [z["zone"] for z in zones] == ["example.test."]
    deleted = ok(xdnsd(node, "zone", "deleted")).splitlines()
    assert deleted[0].split()[:3] == ["ZONE", "DELETED", "(UTC)"]
    assert deleted[1].split()[0] == "new.test." and deleted[1].split()[-2:] == ["api:ops", "5"]


def test_cluster_views(node: Node) -> None:
    assert json.loads(ok(xdnsd(node, "peers", "--json", token=READER))) == []
    assert json.loads(ok(xdnsd(node, "targets", "--json", token=READER))) == []
    out = ok(xdnsd(node, "conflicts", "list", token=READER))
    assert out.strip() == "0 open; 0 detected by this node in all"


@pytest.mark.parametrize(
    ("args", "token", "message"),
    [
        (("zone", "list"), "not-a-valid-token-xx", "unknown token"),
        (("records", "set", "example.test", "w", "A", "192.0.2.1"), READER, "may only read"),
        (("records", "set", "example.test", "w", "A", "300.1.1.1"), WRITER, "data[0]"),
        (("records", "list", "nope.test"), WRITER, "zone nope.test. is not here"),
        (("conflicts", "resolve", "abc", "--keep", "local"), WRITER, "no open conflict abc"),
        (("targets", "plan", "r53"), WRITER, "works on the node itself"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    node: Node, args: tuple[str, ...], token: str, message: str
) -> None:
    result = xdnsd(node, *args, token=token)
    assert result.returncode != 0 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("xdnsd: error") and message in line, line


def test_an_unreachable_server(node: Node) -> None:
    result = xdnsd(node, "zone", "list", server="http://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach http://127.0.0.1:9" in result.stderr
