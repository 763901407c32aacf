"""The HTTP JSON API and the status page (Twisted web, in a process of its own with its own
store handle; ``xdnsd serve`` starts it when ``[api]`` is configured).

* **Auth.** Every API request carries ``Authorization: Bearer SECRET``; the secret is compared
  in constant time with every configured token's.  No or an unknown token: 401; a read-only
  token asking to write: 403.  ``/`` (the status page's HTML, which holds no data: its script
  asks for a token) and ``/openapi.json`` need none.
* **Where.** ``[api] listen`` (loopback by default).  A non-loopback address needs TLS
  (``tls_cert`` / ``tls_key``) unless ``allow_insecure = true`` says otherwise explicitly.
* **Endpoints**: ``ROUTES`` below; the OpenAPI 3 document at ``/openapi.json`` describes each
  (``xdnsd/api/openapi.py``), ``/metrics`` is Prometheus' text format.  What they do is in
  ``xdnsd/api/ops.py``, shared with the CLI.  Errors are JSON:
  ``{"error": {"code": ..., "message": ...}}``, the message naming the field or line at fault.
* **Writes** (read-write tokens) are changesets through the one commit path with origin
  ``api:TOKEN``, so they are journalled, replicated and mirrored like any change, and the
  zone's history names the token.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from twisted.web import resource, server

from xdnsd.api.ops import Operations, OpError
from xdnsd.config import ApiConfig, ApiToken, Config
from xdnsd.store import Store, StoreError

log = logging.getLogger("xdnsd.api")
PREFIX = b"/api/v1/"


def authenticate(tokens: tuple[ApiToken, ...], header: bytes | None) -> ApiToken:
    """The token a request's Authorization header holds (constant-time comparison against
    every configured token), or OpError 401."""
    if not header or not header.startswith(b"Bearer "):
        raise OpError(401, "unauthorized", "an Authorization: Bearer token is required")
    given = header[len(b"Bearer ") :].strip()
    found = None
    for token in tokens:
        if hmac.compare_digest(given, token.secret.encode()):
            found = token  # no early exit: every token is compared
    if found is None:
        raise OpError(401, "unauthorized", "unknown token")
    return found


Handler = Callable[["Call"], Any]


class Call:
    """One request as the handlers see it: the path's variables, the query, the body, and who
    is asking (``who``: the origin recorded for writes, ``api:TOKEN``)."""

    def __init__(self, request: Any, args: list[str], token: ApiToken) -> None:
        self.request = request
        self.args = args
        self.query = parse_qs(request.uri.decode().partition("?")[2])
        self.who = f"api:{token.name}"

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def text(self) -> str:
        body = self.request.content.read() if self.request.content is not None else b""
        if len(body) > MAX_BODY:
            raise OpError(413, "too-large", f"the body is over {MAX_BODY} bytes")
        try:
            return str(body.decode())
        except UnicodeDecodeError as exc:
            raise OpError(400, "bad-body", f"the body is not UTF-8: {exc.reason}") from None

    def json(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.text() or "{}")
        except ValueError as exc:
            raise OpError(400, "bad-json", f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise OpError(400, "bad-json", "the body must be a JSON object")
        return doc


class Text(str):
    """A handler's answer sent as a master file (``text/dns``) instead of JSON."""


MAX_BODY = 256 * 1024 * 1024
# (method, path pattern under /api/v1/ with "*" for a variable part, handler name, status)
ROUTES: tuple[tuple[str, str, str, int], ...] = (
    ("GET", "status", "get_status", 200),
    ("GET", "zones", "get_zones", 200),
    ("POST", "zones", "post_zones", 201),
    ("GET", "zones/*", "get_zone", 200),
    ("DELETE", "zones/*", "delete_zone", 200),
    ("GET", "zones/*/file", "get_file", 200),
    ("PUT", "zones/*/file", "put_file", 200),
    ("GET", "zones/*/records", "get_records", 200),
    ("PUT", "zones/*/records", "put_records", 200),
    ("POST", "zones/*/records", "post_records", 200),
    ("DELETE", "zones/*/records", "delete_records", 200),
    ("GET", "zones/*/history", "get_history", 200),
    ("GET", "deleted-zones", "get_deleted_zones", 200),
    ("GET", "peers", "get_peers", 200),
    ("GET", "targets", "get_targets", 200),
    ("GET", "targets/*/history", "get_target_history", 200),
    ("GET", "conflicts", "get_conflicts", 200),
    ("POST", "conflicts/*/resolve", "post_resolve", 200),
)


class MethodNotAllowed(OpError):
    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(405, "method-not-allowed", f"{method} is not one of {', '.join(allowed)}")
        self.allowed = allowed


def route(method: str, parts: list[str]) -> tuple[str, int, list[str]]:
    """(handler name, status, path variables) for a request, or OpError 404 / 405 (HEAD is
    answered as GET, without the body)."""
    if method == "HEAD":
        method = "GET"
    allowed = []
    for verb, pattern, name, status in ROUTES:
        want = pattern.split("/")
        if len(want) != len(parts):
            continue
        if any(w not in ("*", p) for w, p in zip(want, parts, strict=True)):
            continue
        if verb == method:
            return name, status, [p for w, p in zip(want, parts, strict=True) if w == "*"]
        allowed.append(verb)
    if allowed:
        raise MethodNotAllowed(method, allowed)
    raise OpError(404, "not-found", f"no endpoint /api/v1/{'/'.join(parts)}")


class Api(resource.Resource):
    isLeaf = True

    def __init__(self, config: Config, store: Store) -> None:
        super().__init__()
        assert config.api is not None
        self.config = config
        self.api: ApiConfig = config.api
        self.store = store
        self.ops = Operations(config, store)

    def render(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        try:
            method = request.method.decode()
            path = request.path
            if method == "GET" and path in (b"/", b"/index.html"):  # holds no data
                from xdnsd.api.status_page import PAGE

                request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
                request.setHeader(b"Content-Security-Policy", CSP)
                return PAGE
            if method == "GET" and path == b"/openapi.json":
                from xdnsd.api.openapi import document

                return json.dumps(document(), indent=1).encode()
            token = authenticate(self.api.tokens, request.getHeader(b"authorization"))
            if method not in ("GET", "HEAD") and token.role != "read-write":
                raise OpError(403, "forbidden", f"token {token.name!r} may only read")
            if path == b"/metrics" and method == "GET":
                from xdnsd.api.metrics import render

                request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
                return render(self.config, self.store)
            if not path.startswith(PREFIX):
                raise OpError(404, "not-found", "the API lives under /api/v1/")
            try:
                parts = [unquote(p) for p in path[len(PREFIX) :].decode().split("/") if p]
            except UnicodeDecodeError:
                raise OpError(400, "bad-path", "the path is not UTF-8") from None
            name, status, args = route(method, parts)
            body = getattr(self, name)(Call(request, args, token))
            request.setResponseCode(status)
            if isinstance(body, Text):
                request.setHeader(b"Content-Type", b"text/dns; charset=utf-8")
                return body.encode()
            return json.dumps(body, indent=1).encode()
        except OpError as exc:
            request.setResponseCode(exc.status)
            if exc.status == 401:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="xdnsd"')
            if isinstance(exc, MethodNotAllowed):
                request.setHeader(b"Allow", ", ".join(exc.allowed).encode())
            return json.dumps({"error": {"code": exc.code, "message": str(exc)}}).encode()
        except Exception:
            log.exception("API request %s failed", request.uri)
            request.setResponseCode(500)
            return json.dumps({"error": {"code": "internal", "message": "see the log"}}).encode()

    # --- endpoints: each takes the Call and returns a JSON-ready value ----------------------

    def get_status(self, call: Call) -> Any:
        return self.ops.status()

    def get_zones(self, call: Call) -> Any:
        return self.ops.zones(count=call.param("count") in ("1", "true", "yes"))

    def post_zones(self, call: Call) -> Any:
        doc = call.json()
        return self.ops.create_zone(
            doc.get("zone"),
            call.who,
            file=doc.get("file"),
            ns=doc.get("ns"),
            email=doc.get("email"),
        )

    def get_zone(self, call: Call) -> Any:
        return self.ops.zone(call.args[0])

    def delete_zone(self, call: Call) -> Any:
        return self.ops.drop_zone(call.args[0], call.who)

    def get_file(self, call: Call) -> Any:
        return Text(self.ops.export_zone(call.args[0]))

    def put_file(self, call: Call) -> Any:
        return self.ops.import_zone(call.args[0], call.text(), call.who)

    def get_records(self, call: Call) -> Any:
        return self.ops.records(call.args[0], call.param("name"), call.param("type"))

    def put_records(self, call: Call) -> Any:
        return self.ops.write_rrset(call.args[0], "replace", call.json(), call.who)

    def post_records(self, call: Call) -> Any:
        return self.ops.write_rrset(call.args[0], "add", call.json(), call.who)

    def delete_records(self, call: Call) -> Any:
        doc: dict[str, Any] = {"name": call.param("name"), "type": call.param("type")}
        if "data" in call.query:
            doc["data"] = call.query["data"]
        return self.ops.write_rrset(call.args[0], "delete", doc, call.who)

    def get_history(self, call: Call) -> Any:
        limit = call.param("limit") or "50"
        if not (limit.isascii() and limit.isdigit()):
            raise OpError(400, "bad-field", f"limit: {limit!r} is not a number")
        records = call.param("records") in ("1", "true", "yes")
        return self.ops.history(call.args[0], int(limit), records)

    def get_deleted_zones(self, call: Call) -> Any:
        return self.ops.deleted_zones()

    def get_peers(self, call: Call) -> Any:
        return self.ops.peers()

    def get_targets(self, call: Call) -> Any:
        return self.ops.targets()

    def get_target_history(self, call: Call) -> Any:
        return self.ops.target_history(call.args[0])

    def get_conflicts(self, call: Call) -> Any:
        return self.ops.conflicts()

    def post_resolve(self, call: Call) -> Any:
        doc = call.json()
        return self.ops.resolve(
            call.args[0], call.who, keep=doc.get("keep"), value=doc.get("value")
        )


# the status page: its own inline script and style only, no frames, no other origin
CSP = (
    b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)


def make_site(config: Config, store: Store) -> server.Site:
    site = server.Site(Api(config, store))
    site.displayTracebacks = False
    return site


__all__ = ["Api", "OpError", "StoreError", "authenticate", "make_site", "route"]
