"""The HTTP API, read side (issue 7, first part): a real ``xdnsd serve`` with ``[api]``, real
HTTP on 127.0.0.1: tokens and roles, every read endpoint, errors as JSON."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import XdnsdProcess, free_port, nsupdate
from xdnsd.config import ConfigError, load_config

SECRET = "YXBpIHRlc3QgdHNpZyBrZXksIDMyIGJ5dGVzISEhIQ=="
READER = "reader-token-0123456789"
WRITER = "writer-token-0123456789"
ZONE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"


class Node:
    def __init__(self, directory: Path) -> None:
        self.port, self.api_port = free_port(), free_port()
        zone = directory / "example.test.zone"
        zone.write_text(ZONE + "www A 192.0.2.80\nwww AAAA 2001:db8::80\n")
        self.config = directory / "xdnsd.toml"
        self.config.write_text(
            f'[server]\nlisten = ["127.0.0.1:{self.port}"]\ndata_dir = "{directory / "var"}"\n'
            f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
            f'[api]\nlisten = "127.0.0.1:{self.api_port}"\n'
            f'[api.tokens.reader]\nsecret = "{READER}"\n'
            f'[api.tokens.ops]\nsecret = "{WRITER}"\nrole = "read-write"\n'
            f'[[zones]]\nname = "example.test"\nfile = "{zone}"\n'
            'update_policy = ["grant upd zonesub ANY"]\n'
        )
        self.proc = XdnsdProcess(self.config, self.port)
        self.proc.wait_ready("example.test")
        self.get("/api/v1/zones")  # waits for the API process too

    def get(
        self, path: str, token: str | None = READER, method: str = "GET", body: Any = None
    ) -> tuple[int, Any]:
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", data=data, method=method
        )
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for _ in range(50):  # the API process may still be starting
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())
            except urllib.error.URLError:
                import time

                time.sleep(0.1)
        raise AssertionError(f"the API did not answer\n{self.proc.log()}")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    try:
        yield n
    finally:
        assert n.proc.stop() == 0, n.proc.log()


def test_tokens_and_roles(node: Node) -> None:
    status, body = node.get("/api/v1/zones", token=None)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = node.get("/api/v1/zones", token="not-a-token-at-all-x")
    assert status == 401 and body["error"]["message"] == "unknown token"
    status, body = node.get("/api/v1/zones", method="POST")  # a read-only token writing
    assert status == 403 and "may only read" in body["error"]["message"]
    status, _ = node.get("/api/v1/zones", token=WRITER)
    assert status == 200


def test_read_endpoints(node: Node) -> None:
    status, zones = node.get("/api/v1/zones")
    assert status == 200 and [z["zone"] for z in zones] == ["example.test."]
    assert zones[0]["serial"] == 1
    nsupdate(
        node.port, "update add new.example.test 300 A 192.0.2.9\n", f"hmac-sha256:upd:{SECRET}"
    )
    status, records = node.get("/api/v1/zones/example.test/records?name=www")
    assert status == 200
    assert sorted((r["type"], r["data"]) for r in records) == [
        ("A", "192.0.2.80"),
        ("AAAA", "2001:db8::80"),
    ]
    status, records = node.get("/api/v1/zones/example.test/records?type=A")
    assert {r["name"] for r in records} == {
        "ns1.example.test.",
        "www.example.test.",
        "new.example.test.",
    }
    status, history = node.get("/api/v1/zones/example.test/history")
    assert status == 200 and history[0]["origin"].startswith("key:upd") and history[0]["added"] == 1
    for path in ("/api/v1/peers", "/api/v1/targets", "/api/v1/conflicts"):
        status, body = node.get(path)
        assert status == 200 and body == [], (path, body)


def test_errors_are_json_and_name_the_problem(node: Node) -> None:
    status, body = node.get("/api/v1/zones/other.test/records")
    assert status == 404 and "other.test." in body["error"]["message"]
    status, body = node.get("/api/v1/zones/example.test/records?type=NOPE")
    assert (
        status == 400
        and body["error"]["code"] == "bad-field"
        and "type" in body["error"]["message"]
    )
    status, body = node.get("/api/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not-found"


def test_a_public_listener_needs_tls(tmp_path: Path) -> None:
    config = tmp_path / "x.toml"
    config.write_text('[api]\nlisten = "192.0.2.1:8053"\n')
    with pytest.raises(ConfigError, match=r"\[api\].listen: .* not a loopback address"):
        load_config(config)
    config.write_text('[api]\nlisten = "192.0.2.1:8053"\nallow_insecure = true\n')
    assert load_config(config).api is not None
    config.write_text('[api]\n[api.tokens.x]\nsecret = "short"\n')
    with pytest.raises(ConfigError, match="at least 16"):
        load_config(config)


def served(port: int, name: str, rdtype: str) -> list[str]:
    import dns.message
    import dns.query

    answer = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=2)
    return sorted(str(rd) for rrset in answer.answer for rd in rrset)


def test_writes_are_changes_like_updates(node: Node) -> None:
    body = {"name": "www", "type": "A", "ttl": 600, "data": ["192.0.2.81", "192.0.2.82"]}
    status, result = node.get("/api/v1/zones/example.test/records", WRITER, "PUT", body)
    assert status == 200 and result["changed"] and result["serial"] == 2, result
    assert served(node.port, "www.example.test", "A") == ["192.0.2.81", "192.0.2.82"]
    status, history = node.get("/api/v1/zones/example.test/history?records=1")
    assert history[0]["origin"] == "api:ops"  # the token's name
    assert history[0]["changes"] == {  # what changed (without the SOA's serial step)
        "removed": [{"name": "www.example.test.", "type": "A", "ttl": 300, "data": "192.0.2.80"}],
        "added": [
            {"name": "www.example.test.", "type": "A", "ttl": 600, "data": d}
            for d in ("192.0.2.81", "192.0.2.82")
        ],
    }
    assert history[-1]["changes"] is None  # the creation: no journal entry
    status, result = node.get(
        "/api/v1/zones/example.test/records?name=www&type=AAAA", WRITER, "DELETE"
    )
    assert status == 200 and result["changed"]
    assert served(node.port, "www.example.test", "AAAA") == []
    # the read-only token may not write
    status, _ = node.get("/api/v1/zones/example.test/records", READER, "PUT", body)
    assert status == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "the body is not JSON"),
        ({"type": "A", "data": ["192.0.2.1"]}, "name:"),
        ({"name": "x", "type": "NOPE", "data": ["1"]}, "type: 'NOPE'"),
        ({"name": "x", "type": "A", "ttl": -1, "data": ["192.0.2.1"]}, "ttl: -1"),
        ({"name": "x", "type": "A", "data": ["192.0.2.1", "not-an-address"]}, "data[1]"),
        ({"name": "x", "type": "A", "data": []}, "data:"),
    ],
)
def test_bad_writes_name_the_field(node: Node, body: Any, field: str) -> None:
    status, answer = node.get("/api/v1/zones/example.test/records", WRITER, "PUT", body)
    assert status == 400 and field in answer["error"]["message"], answer
    status, zones = node.get("/api/v1/zones")
    assert status == 200 and zones[0]["serial"] == 1  # nothing changed


def test_concurrent_writes_all_land(node: Node) -> None:
    import concurrent.futures

    def put(i: int) -> int:
        body = {"name": f"c{i}", "type": "A", "ttl": 300, "data": [f"192.0.2.{i + 1}"]}
        return node.get("/api/v1/zones/example.test/records", WRITER, "PUT", body)[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(put, range(20))) == [200] * 20
    status, zones = node.get("/api/v1/zones")
    assert status == 200 and zones[0]["serial"] == 1 + 20
    for i in range(20):
        assert served(node.port, f"c{i}.example.test", "A") == [f"192.0.2.{i + 1}"]


def test_metrics_parse_with_prometheus_client(node: Node) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    status, _ = node.get("/metrics", token=None)
    assert status == 401  # metrics need a token too
    request = urllib.request.Request(f"http://127.0.0.1:{node.api_port}/metrics")
    request.add_header("Authorization", f"Bearer {READER}")
    with urllib.request.urlopen(request, timeout=5) as answer:
        text = answer.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["xdnsd_zone_serial"].samples
    assert sample.labels == {"zone": "example.test."} and sample.value == 1
    assert families["xdnsd_conflicts_detected"].samples[0].value == 0
    assert families["xdnsd_store_bytes"].samples[0].value > 0


def text_call(node: Node, path: str, method: str = "GET", body: bytes | None = None) -> Any:
    """A call whose body or answer is a master file (``text/dns``), not JSON."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.api_port}{path}", data=body, method=method
    )
    request.add_header("Authorization", f"Bearer {WRITER}")
    request.add_header("Content-Type", "text/dns")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_zone_lifecycle(node: Node) -> None:
    """Create (from name servers, and from a master file), import, export, delete."""
    status, made = node.get(
        "/api/v1/zones", WRITER, "POST", {"zone": "new.test", "ns": ["ns1.new.test.", "ns2"]}
    )
    assert status == 201 and made["created"] and made["records"] == 3, (made, node.proc.log())
    assert served(node.port, "new.test", "NS") == ["ns1.new.test.", "ns2.new.test."]
    status, again = node.get("/api/v1/zones", WRITER, "POST", {"zone": "new.test", "ns": ["a"]})
    assert status == 409 and again["error"]["code"] == "exists"
    status, detail = node.get("/api/v1/zones/new.test")
    assert status == 200 and detail["records"] == 3 and detail["kind"] == "primary"

    # import: the zone becomes exactly the file (one change), named in the history
    text = "$TTL 60\n@ SOA ns1 h 7 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.1\nw TXT hi\n"
    status, kind, body = text_call(node, "/api/v1/zones/new.test/file", "PUT", text.encode())
    result = json.loads(body)
    # the SOA, NS ns1 (its TTL changes), the A and the TXT; NS ns1 at 3600 and NS ns2 go
    assert status == 200 and result["added"] == 4 and result["removed"] == 2, result
    assert served(node.port, "w.new.test", "TXT") == ['"hi"']
    assert served(node.port, "new.test", "NS") == ["ns1.new.test."]
    status, history = node.get("/api/v1/zones/new.test/history")
    assert [h["origin"] for h in history] == ["api:ops", "api:ops"]
    status, kind, exported = text_call(node, "/api/v1/zones/new.test/file")
    assert status == 200 and kind.startswith("text/dns")
    assert 'w.new.test.\t60\tIN\tTXT\t"hi"' in exported.replace(" ", "\t"), exported

    # a zone created from a master file
    status, made = node.get(
        "/api/v1/zones", WRITER, "POST", {"zone": "file.test", "file": text.replace("h 7", "h 1")}
    )
    assert status == 201 and made["records"] == 4
    assert served(node.port, "w.file.test", "TXT") == ['"hi"']

    status, gone = node.get("/api/v1/zones/new.test", WRITER, "DELETE")
    assert status == 200 and gone["deleted"]
    status, zones = node.get("/api/v1/zones")
    assert sorted(z["zone"] for z in zones) == ["example.test.", "file.test."]
    import dns.message
    import dns.query
    import dns.rcode

    query = dns.message.make_query("new.test", "SOA")
    answer = dns.query.udp(query, "127.0.0.1", port=node.port, timeout=2)
    assert answer.rcode() == dns.rcode.REFUSED  # not served any more
    status, _ = node.get("/api/v1/zones/new.test", WRITER, "DELETE")
    assert status == 404


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$TTL 60\n@ SOA ns1 h 1 3600 900 604800 60\n@ NS ns1\nx A 999.1.1.1\n", "file:4:"),
        ("$INCLUDE /etc/passwd\n", "file:1:"),
        ("$TTL 60\n@ NS ns1\n", "SOA"),
    ],
)
def test_bad_master_files_change_nothing(node: Node, text: str, message: str) -> None:
    status, _, body = text_call(node, "/api/v1/zones/example.test/file", "PUT", text.encode())
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "bad-zone-file" and message in error["message"]
    status, zones = node.get("/api/v1/zones")
    assert zones[0]["serial"] == 1
    status, _ = node.get(
        "/api/v1/zones",
        WRITER,
        "POST",
        {"zone": "bad.test", "file": text.replace("@", "bad.test.")},
    )
    assert status == 400
    assert [z["zone"] for z in node.get("/api/v1/zones")[1]] == ["example.test."]


def test_add_and_delete_single_records(node: Node) -> None:
    path = "/api/v1/zones/example.test/records"
    status, result = node.get(
        path, WRITER, "POST", {"name": "www", "type": "A", "data": ["192.0.2.81"]}
    )
    assert status == 200 and result["changed"], result
    assert served(node.port, "www.example.test", "A") == ["192.0.2.80", "192.0.2.81"]
    status, result = node.get(f"{path}?name=www&type=A&data=192.0.2.80", WRITER, "DELETE")
    assert status == 200 and result["changed"]
    assert served(node.port, "www.example.test", "A") == ["192.0.2.81"]
    # names in the data are relative to the zone, as in a master file
    status, _ = node.get(path, WRITER, "PUT", {"name": "@", "type": "MX", "data": ["10 mail"]})
    assert status == 200 and served(node.port, "example.test", "MX") == ["10 mail.example.test."]
    # the same rules as an update: a CNAME beside other data is refused whole
    body = {"name": "www", "type": "CNAME", "data": ["elsewhere.test."]}
    status, answer = node.get(path, WRITER, "POST", body)
    assert status == 422 and answer["error"]["code"] == "ignored", answer
    assert "CNAME" in answer["error"]["message"]
    assert served(node.port, "www.example.test", "CNAME") == []
    # and what an update is refused for (BIND: NSEC records are not updatable) is refused
    body = {"name": "www", "type": "NSEC", "data": ["z.example.test. A"]}
    status, answer = node.get(path, WRITER, "POST", body)
    assert status == 422 and answer["error"]["code"] == "refused", answer
    assert "REFUSED" in answer["error"]["message"]
    status, answer = node.get(
        path, WRITER, "POST", {"name": "x.other.test.", "type": "A", "data": ["192.0.2.1"]}
    )
    assert status == 400 and "not in zone" in answer["error"]["message"]


def test_status_and_resolve_errors(node: Node) -> None:
    status, view = node.get("/api/v1/status")
    assert status == 200 and view["node"] == "ns1"  # the default node id
    (zone,) = view["zones"]
    assert zone["zone"] == "example.test." and zone["cells"] == {"ns1": "in-sync"}
    assert view["changes"][0]["zone"] == "example.test." and view["conflicts"] == []
    status, answer = node.get("/api/v1/conflicts/nope/resolve", WRITER, "POST", {"keep": "local"})
    assert status == 404 and answer["error"]["code"] == "no-conflict"
    status, answer = node.get("/api/v1/conflicts/nope/resolve", WRITER, "POST", {})
    assert status == 400 and "keep" in answer["error"]["message"]
    status, answer = node.get("/api/v1/status", WRITER, "DELETE")
    assert status == 405
