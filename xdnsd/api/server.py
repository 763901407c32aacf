"""The HTTP JSON API, read side (Twisted web, in a process of its own with its own store
handle; ``xdnsd serve`` starts it when ``[api]`` is configured).

* **Auth.** Every request carries ``Authorization: Bearer SECRET``; the secret is compared in
  constant time with each configured token's.  No or an unknown token: 401; a read-only token
  asking to write: 403.
* **Where.** ``[api] listen`` (loopback by default).  A non-loopback address needs TLS
  (``tls_cert`` / ``tls_key``) unless ``allow_insecure = true`` says otherwise explicitly.
* **Endpoints** (``/api/v1``): ``zones``, ``zones/ZONE/records`` (``?name=``, ``?type=``),
  ``zones/ZONE/history``, ``peers``, ``targets``, ``targets/NAME/history``, ``conflicts``.
  Errors are JSON: ``{"error": {"code": ..., "message": ...}}``.
* **Writes** (read-write tokens): ``PUT zones/ZONE/records`` with ``{"name", "type", "ttl",
  "data": [...]}`` replaces an RRset, ``DELETE zones/ZONE/records?name=&type=`` deletes one.
  Each is an RFC 2136 update planned by the same code as nsupdate's (``plan_update``: the
  same rules, CNAME and apex checks) inside the writer's transaction (``commit_batch``), from
  origin ``api:TOKEN``, so it is journalled, replicated and mirrored like any change, and the
  history names the token.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import dns.exception
import dns.name
import dns.rdatatype
from twisted.web import resource, server

from xdnsd.config import ApiConfig, ApiToken, Config
from xdnsd.store import Store, StoreError

log = logging.getLogger("xdnsd.api")
PREFIX = b"/api/v1/"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def authenticate(tokens: tuple[ApiToken, ...], header: bytes | None) -> ApiToken:
    """The token a request's Authorization header holds (constant-time comparison against
    every configured token), or ApiError 401."""
    if not header or not header.startswith(b"Bearer "):
        raise ApiError(401, "unauthorized", "an Authorization: Bearer token is required")
    given = header[len(b"Bearer ") :].strip()
    found = None
    for token in tokens:
        if hmac.compare_digest(given, token.secret.encode()):
            found = token  # no early exit: every token is compared
    if found is None:
        raise ApiError(401, "unauthorized", "unknown token")
    return found


class Api(resource.Resource):
    isLeaf = True

    def __init__(self, config: Config, store: Store) -> None:
        super().__init__()
        assert config.api is not None
        self.config = config
        self.api: ApiConfig = config.api
        self.store = store
        self.routes: dict[str, Callable[[list[str], dict[str, list[str]]], Any]] = {
            "zones": self.zones,
            "peers": self.peers,
            "targets": self.targets,
            "conflicts": self.conflicts,
        }

    def render(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        try:
            token = authenticate(self.api.tokens, request.getHeader(b"authorization"))
            method = request.method.decode()
            if method != "GET" and token.role != "read-write":
                raise ApiError(403, "forbidden", f"token {token.name!r} may only read")
            path = request.path
            if path == b"/metrics" and method == "GET":
                from xdnsd.api.metrics import render

                request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
                return render(self.config, self.store)
            if not path.startswith(PREFIX):
                raise ApiError(404, "not-found", "the API lives under /api/v1/")
            parts = [p for p in path[len(PREFIX) :].decode().split("/") if p]
            handler = self.routes.get(parts[0]) if parts else None
            if handler is None:
                raise ApiError(404, "not-found", f"no endpoint {path.decode()}")
            query = parse_qs(request.uri.decode().partition("?")[2])
            if method == "GET":
                body = handler(parts[1:], query)
            elif method in ("PUT", "DELETE") and parts[0] == "zones" and parts[2:] == ["records"]:
                body = self.write_records(method, parts[1], query, request, token)
            else:
                raise ApiError(405, "method-not-allowed", f"{method} {path.decode()}")
            request.setResponseCode(200)
            return json.dumps(body, indent=1).encode()
        except ApiError as exc:
            request.setResponseCode(exc.status)
            if exc.status == 401:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="xdnsd"')
            return json.dumps({"error": {"code": exc.code, "message": str(exc)}}).encode()
        except Exception:
            log.exception("API request %s failed", request.uri)
            request.setResponseCode(500)
            return json.dumps({"error": {"code": "internal", "message": "see the log"}}).encode()

    # --- endpoints --------------------------------------------------------------------------

    def _zone(self, text: str) -> dns.name.Name:
        try:
            name = dns.name.from_text(text)
        except dns.exception.DNSException as exc:
            raise ApiError(400, "bad-zone", f"zone: {text!r} is not a domain name: {exc}") from None
        if name not in {m.name for m in self.store.list_zones()}:
            raise ApiError(404, "no-zone", f"zone {name} is not here")
        return name

    def zones(self, parts: list[str], query: dict[str, list[str]]) -> Any:
        if not parts:
            return [
                {
                    "zone": meta.name.to_text(),
                    "kind": meta.kind,
                    "serial": meta.serial,
                    "vv": meta.vv,
                    "expired": meta.expired,
                }
                for meta in self.store.list_zones()
            ]
        zone = self._zone(parts[0])
        what = parts[1] if len(parts) > 1 else ""
        with self.store.snapshot() as snap:
            if what == "records":
                return self._records(snap, zone, query)
            if what == "history":
                limit = int(query.get("limit", ["50"])[0])
                return snap.history(zone, limit)
        raise ApiError(404, "not-found", f"no endpoint zones/{parts[0]}/{what}")

    def _records(self, snap: Any, zone: dns.name.Name, query: dict[str, list[str]]) -> Any:
        name_filter = None
        if "name" in query:
            try:
                name_filter = dns.name.from_text(query["name"][0], zone)
            except dns.exception.DNSException as exc:
                raise ApiError(400, "bad-name", f"name: {exc}") from None
        type_filter = None
        if "type" in query:
            try:
                type_filter = int(dns.rdatatype.from_text(query["type"][0]))
            except dns.exception.DNSException:
                raise ApiError(400, "bad-type", f"type: {query['type'][0]!r} is unknown") from None
        out = []
        for rr in snap.zone(zone).iter_records():
            if name_filter is not None and rr.owner != name_filter:
                continue
            if type_filter is not None and rr.rdtype != type_filter:
                continue
            out.append(
                {
                    "name": rr.owner.to_text(),
                    "type": dns.rdatatype.to_text(rr.rdata.rdtype),
                    "ttl": rr.ttl,
                    "data": rr.rdata.to_text(),
                }
            )
        return out

    def write_records(
        self,
        method: str,
        zone_text: str,
        query: dict[str, list[str]],
        request: Any,
        token: ApiToken,
    ) -> Any:
        """Replace (PUT) or delete (DELETE) one RRset, as an RFC 2136 update would."""
        import dns.rdata
        import dns.update

        from xdnsd.server.update import plan_update

        zone = self._zone(zone_text)
        if method == "PUT":
            try:
                doc = json.loads(request.content.read() or b"{}")
            except ValueError as exc:
                raise ApiError(400, "bad-json", f"the body is not JSON: {exc}") from None
            if not isinstance(doc, dict):
                raise ApiError(400, "bad-json", "the body must be a JSON object")
            name_text, type_text = doc.get("name"), doc.get("type")
            ttl, data = doc.get("ttl", 300), doc.get("data")
        else:
            name_text = query.get("name", [None])[0]
            type_text = query.get("type", [None])[0]
            ttl, data = 0, []
        if not isinstance(name_text, str) or not name_text:
            raise ApiError(400, "bad-field", "name: a domain name (relative to the zone) is needed")
        if not isinstance(type_text, str):
            raise ApiError(400, "bad-field", "type: a record type such as A or TXT is needed")
        try:
            name = dns.name.from_text(name_text, zone)
        except dns.exception.DNSException as exc:
            raise ApiError(400, "bad-field", f"name: {name_text!r}: {exc}") from None
        try:
            rdtype = dns.rdatatype.from_text(type_text)
        except dns.exception.DNSException:
            raise ApiError(400, "bad-field", f"type: {type_text!r} is not a record type") from None
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl < 2**31:
            raise ApiError(400, "bad-field", f"ttl: {ttl!r} is not a TTL (0 .. 2^31-1)")
        message = dns.update.UpdateMessage(zone)
        message.delete(name, rdtype)
        if method == "PUT":
            if not isinstance(data, list) or not data or not all(isinstance(d, str) for d in data):
                raise ApiError(400, "bad-field", "data: a non-empty list of record data strings")
            for i, text in enumerate(data):
                try:
                    rdata = dns.rdata.from_text("IN", rdtype, text, origin=zone)
                except Exception as exc:
                    raise ApiError(400, "bad-field", f"data[{i}]: {text!r}: {exc}") from None
                message.add(name, ttl, rdata)
        outcome: dict[str, int] = {}

        def planner(view: Any) -> Any:
            plan = plan_update(message, view, origin=f"api:{token.name}")
            outcome["rcode"] = plan.rcode
            return plan.changeset

        (result,) = self.store.commit_batch([(zone, planner)])
        if isinstance(result, Exception):
            raise ApiError(500, "not-applied", f"the change was not applied: {result}")
        rcode = outcome.get("rcode", 0)
        if rcode != 0:
            import dns.rcode

            raise ApiError(
                422,
                "refused",
                f"the change was refused as an update would be: "
                f"{dns.rcode.to_text(dns.rcode.Rcode.make(rcode))}",
            )
        return {
            "zone": zone.to_text(),
            "changed": result is not None,
            "serial": None if result is None else result.serial_to,
        }

    def peers(self, parts: list[str], query: dict[str, list[str]]) -> Any:
        found = self.store.statuses("peer/")
        return [
            found.get(f"peer/{p.id}") or {"peer": p.id, "connected": False}
            for p in self.config.peers
        ]

    def targets(self, parts: list[str], query: dict[str, list[str]]) -> Any:
        if parts:
            if parts[0] not in self.config.targets or parts[1:] != ["history"]:
                raise ApiError(404, "not-found", f"no endpoint targets/{'/'.join(parts)}")
            return (self.store.status(f"target-history/{parts[0]}") or {"runs": []})["runs"]
        found = self.store.statuses("target/")
        return [
            found.get(f"target/{t.name}")
            or {"target": t.name, "kind": t.kind, "owner": t.owner, "state": "unknown"}
            for t in self.config.targets.values()
        ]

    def conflicts(self, parts: list[str], query: dict[str, list[str]]) -> Any:
        with self.store.snapshot() as snap:
            found = [
                {"zone": meta.name.to_text(), **doc}
                for meta in snap.zones()
                for doc in snap.conflicts(meta.name)
            ]
        return found + list(self.store.statuses("target-conflict/").values())


def make_site(config: Config, store: Store) -> server.Site:
    site = server.Site(Api(config, store))
    site.displayTracebacks = False
    return site


__all__ = ["Api", "ApiError", "StoreError", "authenticate", "make_site"]
