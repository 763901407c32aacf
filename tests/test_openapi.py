"""The OpenAPI document at ``/openapi.json`` (issue 7) against the implementation.

* The document is valid OpenAPI (openapi-spec-validator), and its paths and methods are exactly
  the server's ``ROUTES`` (plus ``/``, ``/openapi.json`` and ``/metrics``), each operation named
  after its handler: the two cannot drift apart.
* A real ``xdnsd serve`` with ``[api]`` (a zone with an update policy mirrored to Route 53 at
  moto, a secondary whose primary is down, a peer that is not running, a zone with a conflict
  between nodes, a read-only and a read-write token) is asked every endpoint over real HTTP,
  errors included, and every answer (status, content type, headers, body) is validated
  against the document with openapi-core.
* schemathesis then fuzzes every operation for a bounded number of examples (fixed seed):
  no server error, and every answer conforms to the document.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import dns.name
import dns.rdata
import pytest

from tests.fakes.moto import CREDENTIALS, MotoServer
from tests.harness import XdnsdProcess, free_port
from xdnsd.api.openapi import document
from xdnsd.api.server import ROUTES
from xdnsd.model import RR, ChangeOp, Changeset
from xdnsd.store import Store
from xdnsd.zonefile import parse_zone_text

pytestmark = pytest.mark.slow

SECRET = base64.b64encode(b"openapi test tsig key, 32 bytes!").decode()
PEER_KEY = base64.b64encode(b"openapi test peer key, 32 bytes!").decode()
READER = "reader-token-0123456789"
WRITER = "writer-token-0123456789"
ZONE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
WAIT = 30.0
JSON = "application/json"


# --- the document itself ----------------------------------------------------------------------


def test_the_document_is_valid_openapi() -> None:
    from openapi_spec_validator import validate

    doc = document()
    validate(doc)
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    assert doc["openapi"].startswith("3.")


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in methods
    }


def test_the_paths_are_exactly_the_routes() -> None:
    documented = operations(document())
    wanted = {
        (verb, "/api/v1/" + pattern): (name, status) for verb, pattern, name, status in ROUTES
    }
    found = {
        (verb, re.sub(r"\{[^}/]+\}", "*", path)): op for (verb, path), op in documented.items()
    }
    assert set(found) == set(wanted) | {("GET", "/"), ("GET", "/openapi.json"), ("GET", "/metrics")}
    for key, (name, status) in wanted.items():
        assert found[key]["operationId"] == name, key
        ok = [code for code in found[key]["responses"] if code.startswith("2")]
        assert ok == [str(status)], (key, ok)
    # writes need a read-write token; everything but the page and the document needs one
    doc = document()
    for (verb, path), op in documented.items():
        public = path in ("/", "/openapi.json")
        assert (op.get("security") == []) is public, path
        if not public:
            assert "401" in op["responses"], (verb, path)
        assert ("403" in op["responses"]) is (verb in ("POST", "PUT", "DELETE")), (verb, path)
        for code, answer in op["responses"].items():
            if code.startswith(("4", "5")):
                ref = answer["$ref"].rsplit("/", 1)[-1]
                schema = doc["components"]["responses"][ref]["content"][JSON]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (verb, path, code)


# --- a real node --------------------------------------------------------------------------------


@dataclass
class Answer:
    method: str
    url: str
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    request_body: bytes | None = None
    request_type: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return str(self.json()["error"]["code"])

    @property
    def message(self) -> str:
        return str(self.json()["error"]["message"])


class OpenApiRequest:
    """openapi-core's Request protocol over what urllib sent."""

    def __init__(self, answer: Answer) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        url = urlsplit(answer.url)
        self.host_url = f"{url.scheme}://{url.netloc}"
        self.path = url.path
        self.method = answer.method.lower()
        self.body = answer.request_body
        self.content_type = answer.request_type
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(url.query, keep_blank_values=True)),
            header=Headers(),
        )


class OpenApiResponse:
    """openapi-core's Response protocol over what urllib received."""

    def __init__(self, answer: Answer) -> None:
        from werkzeug.datastructures import Headers

        self.status_code = answer.status
        self.content_type = answer.headers.get("content-type", "")
        self.headers = Headers(answer.headers)
        self.data = answer.body


@dataclass
class Validator:
    """Validates answers against the document: openapi-core for the documented operations,
    the Error schema (and the response's headers) for answers no operation has (404 for a
    path outside the API, 405 for a method a path does not list)."""

    doc: dict[str, Any] = field(default_factory=document)
    seen: set[tuple[str, str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        from openapi_core import Config, OpenAPI
        from openapi_core.deserializing.media_types.util import plain_loads

        self.openapi = OpenAPI.from_dict(
            self.doc, config=Config(extra_media_type_deserializers={"text/dns": plain_loads})
        )
        self.templates = [
            (verb, path, re.compile("^" + re.sub(r"\{[^}/]+\}", "[^/]+", path) + "$"))
            for verb, path in operations(self.doc)
        ]

    def operation(self, method: str, path: str) -> str | None:
        for verb, template, pattern in self.templates:
            if verb == method and pattern.match(path):
                return template
        return None

    def __call__(self, answer: Answer) -> None:
        path = urlsplit(answer.url).path
        template = self.operation(answer.method, path)
        if template is None:
            self.error_without_operation(answer)
            return
        self.openapi.validate_response(OpenApiRequest(answer), OpenApiResponse(answer))
        self.seen.add((answer.method, template, answer.status))

    def error_without_operation(self, answer: Answer) -> None:
        from openapi_schema_validator import OAS30Validator

        assert answer.status in (401, 403, 404, 405), answer
        assert answer.headers["content-type"] == JSON, answer.headers
        schemas = self.doc["components"]["schemas"]
        schema = {**schemas["Error"], "components": {"schemas": schemas}}
        OAS30Validator(schema).validate(answer.json())
        self.seen.add((answer.method, "(none)", answer.status))


def test_the_validator_rejects_what_the_document_does_not_say() -> None:
    """The validation below is not vacuous: a wrong body, status or content type fails it."""
    from jsonschema.exceptions import ValidationError
    from openapi_core.exceptions import OpenAPIError

    validate = Validator()

    def answer(status: int, body: bytes, content_type: str = JSON, path: str = "") -> Answer:
        url = "http://127.0.0.1:1" + (path or "/api/v1/zones/x.test/records")
        return Answer("GET", url, status, {"content-type": content_type}, body)

    record = b'[{"name": "a.x.test.", "type": "A", "ttl": 300, "data": "192.0.2.1"}]'
    validate(answer(200, record))
    validate(answer(404, b'{"error": {"code": "no-zone", "message": "zone x.test. is not here"}}'))
    for wrong in (
        answer(200, b'[{"name": "a.x.test.", "type": "A", "ttl": "300", "data": "192.0.2.1"}]'),
        answer(200, record.replace(b"}]", b', "extra": 1}]')),
        answer(200, record, "text/plain"),
        answer(418, b"{}"),
        answer(404, b'{"error": {"code": "no-zone"}}'),
        answer(201, record),
    ):
        with pytest.raises(OpenAPIError):
            validate(wrong)
    with pytest.raises(ValidationError):  # an answer no operation has: the Error schema
        validate(answer(404, b'{"error": "not-found"}', path="/elsewhere"))


class Node:
    def __init__(self, directory: Path, moto: MotoServer) -> None:
        from tests.fakes.strict_route53 import StrictRoute53

        moto.reset()
        self.moto = moto
        self.hosted_zone = moto.create_zone("example.test.")
        # Route 53's exact-match DELETE: a push meeting an edit made at the provider fails, and
        # the full run that follows holds the conflict (tests/test_mirror.py)
        self.strict = StrictRoute53(int(moto.url.rsplit(":", 1)[1]))
        self.port, self.api_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        var = directory / "var"
        seed_a_conflict_between_nodes(var, directory / "ns2")
        zone = directory / "example.test.zone"
        zone.write_text(ZONE + "www A 192.0.2.80\nwww AAAA 2001:db8::80\n")
        self.config = directory / "xdnsd.toml"
        self.config.write_text(
            f'[server]\nlisten = ["127.0.0.1:{self.port}"]\ndata_dir = "{var}"\n'
            f'[node]\nid = "ns1"\npeer_listen = "127.0.0.1:{free_port()}"\n'
            f'[[peers]]\nid = "ns2"\naddress = "127.0.0.1:{free_port()}"\nkey = "{PEER_KEY}"\n'
            f'[keys.upd]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n'
            f'[api]\nlisten = "127.0.0.1:{self.api_port}"\n'
            f'[api.tokens.reader]\nsecret = "{READER}"\n'
            f'[api.tokens.ops]\nsecret = "{WRITER}"\nrole = "read-write"\n'
            f'[targets.r53]\nkind = "route53"\nowner = "ns1"\n'
            f'hosted_zone_id = "{self.hosted_zone}"\nendpoint_url = "{self.strict.url}"\n'
            f'access_key_id = "{CREDENTIALS["aws_access_key_id"]}"\n'
            f'secret_access_key = "{CREDENTIALS["aws_secret_access_key"]}"\n'
            "reconcile_every = 3600\n"
            f'[[zones]]\nname = "example.test"\nfile = "{zone}"\n'
            'update_policy = ["grant upd zonesub ANY"]\ntargets = ["r53"]\n'
            # a secondary whose primary is not there: listed, never transferred
            f'[[zones]]\nname = "secondary.test"\nprimaries = ["127.0.0.1:{free_port()}"]\n'
        )
        self.validate = Validator()
        self.proc = XdnsdProcess(self.config, self.port)
        try:
            self.proc.wait_ready("example.test")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            assert self.proc.stop() == 0, self.proc.log()
        finally:
            self.strict.stop()

    def call(
        self,
        method: str,
        path: str,
        token: str | None = READER,
        body: Any = None,
        content_type: str = JSON,
        check: bool = True,
    ) -> Answer:
        """One request; the answer validated against the document (``check``)."""
        data = None
        if body is not None:
            if isinstance(body, bytes):
                data = body
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = json.dumps(body).encode()
        url = self.base + path
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for _ in range(100):  # the API process may still be starting
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, headers, raw = response.status, response.headers, response.read()
                break
            except urllib.error.HTTPError as exc:
                status, headers, raw = exc.code, exc.headers, exc.read()
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"the API did not answer\n{self.proc.log()}")
        answer = Answer(
            method,
            url,
            status,
            {k.lower(): v for k, v in headers.items()},
            raw,
            data,
            content_type if data is not None else "",
        )
        if check:
            self.validate(answer)
        return answer

    def wait(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {WAIT} s\n{self.proc.log()[-4000:]}")
            time.sleep(0.1)

    def zone(self, name: str) -> dict[str, Any]:
        (doc,) = [z for z in self.call("GET", "/api/v1/zones").json() if z["zone"] == name]
        return dict(doc)

    def target(self) -> dict[str, Any]:
        (doc,) = self.call("GET", "/api/v1/targets").json()
        return dict(doc)

    def edit_at_provider(self, name: str, value: str) -> None:
        client: Any = self.moto.client()
        client.change_resource_record_sets(
            HostedZoneId=self.hosted_zone,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": name,
                            "Type": "A",
                            "TTL": 300,
                            "ResourceRecords": [{"Value": value}],
                        },
                    }
                ]
            },
        )


def seed_a_conflict_between_nodes(var: Path, other: Path) -> None:
    """The node's store (before it starts) with zone conflict.test, in which this node (ns1)
    and its peer ns2 set different CNAMEs at one name concurrently: a ``replaced`` conflict."""
    zone = dns.name.from_text("conflict.test.")
    one, two = Store(var, "ns1"), Store(other, "ns2")
    try:
        one.commit(Changeset(zone, added=tuple(parse_zone_text(ZONE, zone)), op=ChangeOp.CREATE))
        with one.snapshot() as snap:
            two.commit(snap.changes_since(zone, {})[0])
        www = dns.name.from_text("www", zone)
        for store, target in ((one, "a.example."), (two, "b.example.")):
            cname = dns.rdata.from_text("IN", "CNAME", target)
            store.commit(Changeset(zone, (), (RR(www, 300, cname),), origin="operator:test"))
            time.sleep(0.002)
        with two.snapshot() as snap:
            for cs in snap.changes_since(zone, dict(one.list_zones()[0].vv)):
                one.commit(cs)
        with one.snapshot() as snap:
            assert [c["kind"] for c in snap.conflicts(zone)] == ["replaced"]
    finally:
        one.close()
        two.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("openapi"), moto)
    try:
        n.wait("the API", lambda: n.call("GET", "/api/v1/zones", check=False).status == 200)
        n.wait("the first sync", lambda: n.target().get("state") == "in-sync")
        n.wait("the peer's status", lambda: "updated" in n.call("GET", "/api/v1/peers").json()[0])
        n.wait("the secondary's first try", lambda: n.zone("secondary.test.")["transfer"])
        yield n
    finally:
        n.close()


# --- every endpoint, by hand ------------------------------------------------------------------


def test_public_answers(node: Node) -> None:
    page = node.call("GET", "/", token=None)
    assert page.status == 200 and page.headers["content-type"].startswith("text/html"), page
    served = node.call("GET", "/openapi.json", token=None)
    assert served.status == 200 and served.json() == document()
    metrics = node.call("GET", "/metrics")
    assert metrics.status == 200 and b"xdnsd_zone_serial" in metrics.body
    assert node.call("GET", "/metrics", token=None).status == 401


def test_tokens_and_roles(node: Node) -> None:
    answer = node.call("GET", "/api/v1/zones", token=None)
    assert answer.status == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    assert node.call("GET", "/api/v1/status", token="not-a-token-at-all-x").status == 401
    for method, path in (
        ("POST", "/api/v1/zones"),
        ("PUT", "/api/v1/zones/example.test/file"),
        ("DELETE", "/api/v1/zones/example.test"),
        ("PUT", "/api/v1/zones/example.test/records"),
        ("POST", "/api/v1/zones/example.test/records"),
        ("DELETE", "/api/v1/zones/example.test/records?name=www&type=A"),
        ("POST", "/api/v1/conflicts/x/resolve"),
    ):
        answer = node.call(method, path, body={} if method != "DELETE" else None)
        assert answer.status == 403 and answer.code == "forbidden", (method, path, answer)


def test_reads(node: Node) -> None:
    zones = {z["zone"]: z for z in node.call("GET", "/api/v1/zones").json()}
    assert set(zones) == {"example.test.", "conflict.test.", "secondary.test."}
    assert zones["example.test."]["targets"] == ["r53"]
    secondary = zones["secondary.test."]
    assert secondary["serial"] is None and secondary["kind"] == "secondary"  # its primary is down
    assert secondary["transfer"]["error"] and secondary["expired"] is True, secondary
    counted = node.call("GET", "/api/v1/zones?count=1").json()
    assert all("records" in z for z in counted)
    zone = node.call("GET", "/api/v1/zones/example.test").json()
    assert zone["records"] == 5 and zone["kind"] == "primary"
    assert node.call("GET", "/api/v1/zones/secondary.test").status == 404
    text = node.call("GET", "/api/v1/zones/example.test/file")
    assert text.status == 200 and text.headers["content-type"].startswith("text/dns")
    assert "192.0.2.80" in text.body.decode()
    records = node.call("GET", "/api/v1/zones/example.test/records?name=www&type=AAAA").json()
    assert records == [
        {"name": "www.example.test.", "type": "AAAA", "ttl": 300, "data": "2001:db8::80"}
    ]
    assert len(node.call("GET", "/api/v1/zones/example.test/records").json()) == 5
    history = node.call("GET", "/api/v1/zones/example.test/history?limit=1").json()
    assert len(history) == 1 and history[0]["op"] == "create"
    assert node.call("GET", "/api/v1/zones/conflict.test/history").status == 200
    (peer,) = node.call("GET", "/api/v1/peers").json()
    assert peer["peer"] == "ns2" and peer["connected"] is False
    assert node.call("GET", "/api/v1/targets").json()[0]["state"] == "in-sync"
    runs = node.call("GET", "/api/v1/targets/r53/history").json()
    assert runs and runs[0]["full"] is True and runs[0]["error"] is None
    (conflict,) = node.call("GET", "/api/v1/conflicts").json()
    assert conflict["kind"] == "replaced" and conflict["zone"] == "conflict.test."
    status = node.call("GET", "/api/v1/status").json()
    assert status["node"] == "ns1" and [n["id"] for n in status["nodes"]] == ["ns1", "ns2"]
    cells = {z["zone"]: z["cells"] for z in status["zones"]}
    assert cells["example.test."] == {"ns1": "in-sync", "ns2": "down", "r53": "in-sync"}
    assert status["syncs"] and status["changes"] and status["conflicts"]


def test_read_errors(node: Node) -> None:
    for path, status, code in (
        ("/api/v1/zones/nope.test", 404, "no-zone"),
        ("/api/v1/zones/a..b", 400, None),
        ("/api/v1/zones/nope.test/file", 404, "no-zone"),
        ("/api/v1/zones/nope.test/records", 404, "no-zone"),
        ("/api/v1/zones/example.test/records?name=a..b", 400, None),
        ("/api/v1/zones/example.test/records?name=www.elsewhere.", 400, None),
        ("/api/v1/zones/nope.test/history", 404, "no-zone"),
        ("/api/v1/zones/example.test/history?limit=x", 400, None),
        ("/api/v1/zones/example.test/history?limit=0", 400, None),
        ("/api/v1/targets/nope/history", 404, "no-target"),
        ("/api/v1/nothing", 404, "not-found"),
        ("/api/v1/zones/example.test/nothing", 404, "not-found"),
        ("/elsewhere", 404, "not-found"),
    ):
        answer = node.call("GET", path)
        assert answer.status == status and code in (None, answer.code), (path, answer)
    answer = node.call("GET", "/api/v1/zones/example.test/records?type=NOPE")
    assert answer.status == 400 and "type" in answer.message, answer


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        # dnspython's rdatatype.from_text raises ValueError (not a DNSException) for a type
        # number over 65535, which ops._rdtype lets through
        ("GET", "/api/v1/zones/example.test/records?type=TYPE70000", None),
        ("PUT", "/api/v1/zones/example.test/records", {"name": "x", "type": "TYPE70000"}),
        ("DELETE", "/api/v1/zones/example.test/records?name=x&type=TYPE70000", None),
        # "²".isdigit() is true but int("²") raises ValueError: server.get_history lets it through
        ("GET", "/api/v1/zones/example.test/history?limit=%C2%B2", None),
        # value: RDATA that does not parse as the conflict's type (here a CNAME); dnspython's
        # error is a DNSException, not the ValueError ops.resolve turns into 400
        ("POST", "/api/v1/conflicts/{replaced}/resolve", {"value": "a..b"}),
    ],
)
def test_bad_parameters_are_400_not_500(node: Node, method: str, path: str, body: Any) -> None:
    if "{replaced}" in path:
        (conflict,) = node.call("GET", "/api/v1/conflicts").json()
        path = path.format(replaced=conflict["id"])
    answer = node.call(method, path, WRITER, body, check=False)
    assert answer.status == 400, f"{method} {path} {body}: {answer.status} {answer.body!r}"
    node.validate(answer)


def test_zone_writes(node: Node) -> None:
    created = node.call(
        "POST",
        "/api/v1/zones",
        WRITER,
        {"zone": "made.test", "ns": ["ns1.made.test.", "ns2"], "email": "admin@made.test"},
    )
    assert created.status == 201 and created.json()["records"] == 3, created
    again = node.call("POST", "/api/v1/zones", WRITER, {"zone": "made.test", "ns": ["ns1"]})
    assert again.status == 409 and again.code == "exists"
    from_file = node.call("POST", "/api/v1/zones", WRITER, {"zone": "file.test", "file": ZONE})
    assert from_file.status == 201 and from_file.json()["serial_to"] == 1, from_file
    bad_line = ZONE + "www A 192.0.2.1\nwww IN A not-an-address\n"
    answer = node.call("POST", "/api/v1/zones", WRITER, {"zone": "bad.test", "file": bad_line})
    assert answer.status == 400 and answer.code == "bad-zone-file" and ":6" in answer.message
    for body, what in (
        (b"{not json", "not JSON"),
        (b"[1]", "JSON object"),
        ({"zone": "x.test"}, "ns:"),
        ({"zone": "x.test", "file": ZONE, "ns": ["ns1"]}, "ns:"),
        ({"ns": ["ns1"]}, "zone:"),
        ({"zone": "x.test", "file": "$INCLUDE /etc/passwd\n"}, ""),
    ):
        answer = node.call("POST", "/api/v1/zones", WRITER, body)
        assert answer.status == 400 and what in answer.message, (body, answer)
    answer = node.call("POST", "/api/v1/zones", WRITER, {"zone": "secondary.test", "ns": ["a"]})
    assert answer.status == 409 and answer.code == "secondary"

    # the master file in and out
    path = "/api/v1/zones/made.test/file"
    text = node.call("GET", path).body.decode()
    same = node.call("PUT", path, WRITER, text, "text/dns")
    assert same.status == 200 and same.json()["added"] == same.json()["removed"] == 0, same
    more = node.call("PUT", path, WRITER, text + "www 300 IN A 192.0.2.7\n", "text/dns")
    assert more.json()["added"] == 1 and more.json()["created"] is False
    new = node.call("PUT", "/api/v1/zones/put.test/file", WRITER, ZONE, "text/dns")
    assert new.status == 200 and new.json()["created"] is True
    bad = node.call("PUT", path, WRITER, text + "www IN A 300.1.1.1\n", "text/dns")
    assert bad.status == 400 and bad.code == "bad-zone-file", bad
    not_utf8 = node.call("PUT", path, WRITER, b"\xff\xfe", "text/dns")
    assert not_utf8.status == 400 and not_utf8.code == "bad-body"
    secondary = node.call("PUT", "/api/v1/zones/secondary.test/file", WRITER, ZONE, "text/dns")
    assert secondary.status == 409

    deleted = node.call("DELETE", "/api/v1/zones/put.test", WRITER)
    assert deleted.status == 200 and deleted.json()["deleted"] is True
    (tomb,) = node.call("GET", "/api/v1/deleted-zones").json()
    assert tomb["zone"] == "put.test." and tomb["deleted_by"] == "api:ops", tomb
    assert node.call("DELETE", "/api/v1/zones/put.test", WRITER).status == 404
    assert node.call("DELETE", "/api/v1/zones/a..b", WRITER).status == 400


def test_record_writes(node: Node) -> None:
    records = "/api/v1/zones/file.test/records"
    www = {"name": "www", "type": "A", "ttl": 600, "data": ["192.0.2.1", "192.0.2.2"]}
    put = node.call("PUT", records, WRITER, www)
    assert put.status == 200 and put.json() == {"zone": "file.test.", "changed": True, "serial": 2}
    added = node.call("POST", records, WRITER, {**www, "data": ["192.0.2.3"]})
    assert added.json()["changed"] is True
    unchanged = node.call("POST", records, WRITER, {**www, "data": ["192.0.2.3"]})
    assert unchanged.status == 200 and unchanged.json()["changed"] is False
    # a CNAME beside other data, which RFC 2136 3.4.2.2 ignores: the API says so (no change)
    cname = node.call("POST", records, WRITER, {"name": "www", "type": "CNAME", "data": ["x."]})
    assert cname.status == 422 and cname.code == "ignored" and "CNAME" in cname.message
    # NSEC records are not updatable: refused as an update would be
    nsec = {"name": "www", "type": "NSEC", "data": ["x.file.test. A"]}
    refused = node.call("PUT", records, WRITER, nsec)
    assert refused.status == 422 and refused.code == "refused" and "REFUSED" in refused.message
    one = node.call("DELETE", f"{records}?name=www&type=A&data=192.0.2.1&data=192.0.2.2", WRITER)
    assert one.status == 200 and one.json()["changed"] is True
    left = node.call("GET", f"{records}?name=www").json()
    assert [r["data"] for r in left] == ["192.0.2.3"]
    rrset = node.call("DELETE", f"{records}?name=www&type=A", WRITER)
    assert rrset.json()["changed"] is True
    for body in (
        b"{not json",
        {"type": "A", "data": ["192.0.2.1"]},
        {"name": "x", "type": "NOPE", "data": ["1"]},
        {"name": "x", "type": "A", "ttl": -1, "data": ["192.0.2.1"]},
        {"name": "x", "type": "A", "data": ["192.0.2.1", "not-an-address"]},
        {"name": "x", "type": "A", "data": []},
        {"name": "x.elsewhere.", "type": "A", "data": ["192.0.2.1"]},
    ):
        for method in ("PUT", "POST"):
            answer = node.call(method, records, WRITER, body)
            assert answer.status == 400, (method, body, answer)
    assert node.call("DELETE", f"{records}?type=A", WRITER).status == 400
    assert node.call("DELETE", f"{records}?name=www&type=A&data=nope", WRITER).status == 400
    gone = "/api/v1/zones/nope.test/records"
    assert node.call("PUT", gone, WRITER, www).status == 404
    assert node.call("DELETE", f"{gone}?name=www&type=A", WRITER).status == 404
    secondary = "/api/v1/zones/secondary.test/records"
    assert node.call("POST", secondary, WRITER, www).status in (404, 409)


def test_conflicts_and_their_resolution(node: Node) -> None:
    # a conflict with the provider: www changed at Route 53 and in the zone since the last run
    node.edit_at_provider("www.example.test.", "192.0.2.70")
    body = {"name": "www", "type": "A", "data": ["192.0.2.90"]}
    assert node.call("PUT", "/api/v1/zones/example.test/records", WRITER, body).status == 200
    node.wait("held", lambda: node.target()["state"] == "held")
    target = node.target()
    assert target["reason"] and target["last_run"]["conflicts"] == 1, target
    found = {c["kind"]: c for c in node.call("GET", "/api/v1/conflicts").json()}
    assert set(found) == {"replaced", "provider"}
    provider = found["provider"]
    assert provider["local"][3] == ["192.0.2.90"] and provider["remote"][3] == ["192.0.2.70"]
    status = node.call("GET", "/api/v1/status").json()
    cells = {z["zone"]: z["cells"] for z in status["zones"]}
    assert cells["example.test."]["r53"] == "held"

    resolve = "/api/v1/conflicts/{}/resolve"
    for body in ({}, {"keep": "local", "value": "x."}, {"keep": 1}, {"value": ""}, b"[]"):
        answer = node.call("POST", resolve.format(provider["id"]), WRITER, body)
        assert answer.status == 400, (body, answer)
    answer = node.call("POST", resolve.format(provider["id"]), WRITER, {"keep": "ns2"})
    assert answer.status == 400  # a target conflict: local, remote or the target's name
    answer = node.call("POST", resolve.format("0123456789abcdef"), WRITER, {"keep": "local"})
    assert answer.status == 404 and answer.code == "no-conflict"
    kept = node.call("POST", resolve.format(provider["id"]), WRITER, {"keep": "remote"})
    assert kept.status == 200 and "serial" not in kept.json(), kept
    between = found["replaced"]
    answer = node.call("POST", resolve.format(between["id"]), WRITER, {"keep": "nobody"})
    assert answer.status == 400, answer
    done = node.call("POST", resolve.format(between["id"]), WRITER, {"keep": "local"})
    assert done.status == 200 and done.json()["serial"] > 0, done
    assert node.call("GET", "/api/v1/conflicts").json() == []
    node.wait("in sync again", lambda: node.target()["state"] == "in-sync")


def test_methods_a_path_does_not_list(node: Node) -> None:
    """405 for a known path with a method it does not list: an Error, and (RFC 9110 15.5.6:
    "MUST generate an Allow header field") the methods it does list."""
    for method, path, allowed in (
        ("PATCH", "/api/v1/zones", {"GET", "POST"}),
        ("GET", "/api/v1/conflicts/x/resolve", {"POST"}),
        ("POST", "/api/v1/zones/example.test/history", {"GET"}),
    ):
        answer = node.call(method, path, WRITER)
        assert answer.status == 405 and answer.code == "method-not-allowed", answer
        for verb in allowed:
            assert verb in answer.message
        assert "allow" in answer.headers, (
            f"{method} {path} answered 405 without an Allow header (RFC 9110 15.5.6); "
            f"it should carry Allow: {', '.join(sorted(allowed))}"
        )
        assert {v.strip() for v in answer.headers["allow"].split(",")} == allowed


def test_every_operation_was_validated(node: Node) -> None:
    """The tests above reached every documented operation, with most of its answers."""
    seen = {(verb, path) for verb, path, _status in node.validate.seen}
    assert set(operations(document())) <= seen, set(operations(document())) - seen
    statuses = {status for _verb, _path, status in node.validate.seen}
    assert {200, 201, 400, 401, 403, 404, 409, 422} <= statuses


# --- a bounded fuzz -------------------------------------------------------------------------------


def test_schemathesis_fuzz(node: Node) -> None:
    """Every operation for a few examples each (fixed seed): no server error, and the status,
    content type, headers and body are as documented.  Writes go to a scratch zone."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    scratch = {"zone": "scratch.test", "ns": ["ns1"]}
    assert node.call("POST", "/api/v1/zones", WRITER, scratch).status == 201
    schema = schemathesis.openapi.from_dict(document())
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    failures: dict[str, str] = {}  # the first of each operation

    def fuzz(operation: Any) -> Callable[[], None]:
        write = operation.method.upper() in ("POST", "PUT", "DELETE")

        cases = st.one_of(operation.as_strategy(mode) for mode in GenerationMode)

        @settings(
            max_examples=30,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases, token=st.sampled_from([WRITER, READER, "bad"]))
        def run(case: Any, token: str) -> None:
            if write and "zone" in (case.path_parameters or {}):
                case.path_parameters["zone"] = "scratch.test"
            response = case.call(
                base_url=node.base, headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                failures.setdefault(case.operation.label, str(exc))

        return run

    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") == "delete_zone":
            continue  # deleting the scratch zone would leave the other writes nothing to do
        fuzz(operation)()
    assert not failures, "\n\n".join(f"{op}: {why}" for op, why in failures.items())
