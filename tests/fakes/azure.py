"""An emulator of the Azure Resource Manager DNS API (version 2018-05-01) over HTTPS on
127.0.0.1, for azure-mgmt-dns's ``DnsManagementClient`` to talk to unchanged.

What it does as Azure does (../shared/PROVIDERS.md, the REST reference):

* zones: ``PUT``/``GET``/``DELETE .../dnsZones/{zone}``; a new zone holds the apex SOA and NS;
* record sets: ``PUT``/``PATCH``/``GET``/``DELETE .../dnsZones/{zone}/{TYPE}/{name}`` (``@``
  the apex), listed by ``.../all`` and ``.../recordsets`` (``$top`` 1-1000, default 100) in
  pages continued by an absolute ``nextLink`` with a ``$skipToken``;
* every write gives a new ``etag``; ``If-Match`` and ``If-None-Match: *`` are honoured (HTTP
  412 ``PreconditionFailed``, also for ``If-Match`` on a set that does not exist); DELETE
  answers 200, or 204 when there was nothing;
* the JSON shapes (``properties.TTL``, ``ARecords``, ``caaRecords``, ``CNAMERecord``, ...),
  errors as ``{"error": {"code", "message"}}``; paths match case-insensitively; at most 20
  records a set, 4,096 characters of TXT a set;
* a bearer token is required: one the emulator issued (and not expired) or ``FAKE_TOKEN``
  (``FakeCredential``'s); else 401 ``AuthenticationFailed``/``InvalidAuthenticationToken``;
* Microsoft Entra ID (the identity platform) for one tenant and one application
  (``tenant``, ``client_id``, ``client_secret``), as MSAL's client-credentials grant uses it:
  ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (its endpoints on this server) and
  ``POST /{tenant}/oauth2/v2.0/token`` (``grant_type=client_credentials``, the secret in the
  form or HTTP Basic, a ``.../.default`` scope) answering a random bearer token for an hour;
  refusals as Entra answers them (``{"error", "error_description": "AADSTS...",
  "error_codes", ...}``): a wrong or missing secret 401 ``invalid_client``, an unknown client
  400 ``unauthorized_client``, an unknown tenant 400 ``invalid_tenant`` / ``invalid_request``.

Test hooks: ``inject`` (the next requests, identity ones too, answer 429 with
``Retry-After``, or another status), ``stop``/``start`` (an outage: the port closes, open
connections are cut, then the same port serves again), ``put``/``touch``/``sets`` (edits "at
Azure" behind the client's back, each giving a new etag), ``log`` (method, path, headers of
every request, identity ones too), ``grants`` (the token requests' form fields, the secret
left out), ``tokens`` (those issued).  TLS uses a throwaway CA made with ``cryptography``
(``ca_path`` is the client's ``connection_verify``); accepted sockets get ``TCP_NODELAY``
(without it each SDK call waits ~40-80 ms on Nagle and delayed ACKs).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import itertools
import json
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness import free_port

API_VERSION = "2018-05-01"
FIELDS = {  # record type -> its JSON field in properties
    "A": "ARecords",
    "AAAA": "AAAARecords",
    "CAA": "caaRecords",
    "CNAME": "CNAMERecord",
    "MX": "MXRecords",
    "NS": "NSRecords",
    "PTR": "PTRRecords",
    "SOA": "SOARecord",
    "SRV": "SRVRecords",
    "TXT": "TXTRecords",
}
_IDENTITY = re.compile(
    r"^/(?P<tenant>[^/]+)/(?:(?P<config>v2\.0/\.well-known/openid-configuration)|"
    r"(?P<token>oauth2/v2\.0/token))$",
    re.IGNORECASE,
)
FAKE_TOKEN = "fake-token"  # what FakeCredential hands out: ARM takes it too
TOKEN_LIFETIME = 3600
_ZONE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/microsoft\.network/"
    r"dnszones/(?P<zone>[^/]+)(?:/(?P<rest>.*))?$",
    re.IGNORECASE,
)


class FakeCredential:
    """A token credential for the emulator without Entra ID: ``token`` (``FAKE_TOKEN``, which
    the emulator takes; any other it refuses)."""

    def __init__(self, token: str = FAKE_TOKEN) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 86400)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, int(time.time()) + 86400)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class EntraError(Exception):
    """A refusal as Microsoft Entra ID words it (AADSTS code and text)."""

    def __init__(self, status: int, error: str, aadsts: int, text: str) -> None:
        super().__init__(text)
        self.status, self.error, self.aadsts = status, error, aadsts

    def json(self, url: str) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC)
        trace, correlation = secrets.token_hex(16), secrets.token_hex(16)
        return {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.aadsts}: {self}\r\nTrace ID: {trace}\r\n"
                f"Correlation ID: {correlation}\r\nTimestamp: {now:%Y-%m-%d %H:%M:%SZ}"
            ),
            "error_codes": [self.aadsts],
            "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{url}/error?code={self.aadsts}",
        }


def _make_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (its PEM written to ``directory/ca.pem``) and a server context with a
    certificate it signed for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xdnsd test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = directory / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return ca_path, context


class AzureDns:
    """The emulator; ``url`` is the client's ``base_url``, ``ca_path`` its
    ``connection_verify``."""

    def __init__(
        self,
        directory: Path,
        subscription: str = "sub-1",
        group: str = "rg-1",
        *,
        tenant: str = "00000000-0000-0000-0000-0000000000aa",
        client_id: str = "00000000-0000-0000-0000-0000000000bb",
        client_secret: str | None = None,
    ) -> None:
        self.subscription, self.group = subscription, group
        self.tenant, self.client_id = tenant, client_id
        self.client_secret = client_secret or secrets.token_urlsafe(30)
        self.tokens: dict[str, float] = {}  # bearer tokens issued -> when they expire
        self.grants: list[dict[str, str]] = []  # token requests' form fields, secret left out
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_path, self._tls = _make_tls(directory)
        self.lock = threading.Lock()
        self.zones: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self._etags = itertools.count(1)
        self._inject: list[tuple[int, str | None]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.start()

    # --- serving -------------------------------------------------------------------------

    def start(self) -> None:
        self._server = _Server(self, self._tls)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the port and cut open connections (an outage); ``start`` serves again."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut()
        if self._thread is not None:
            self._thread.join(5)

    # --- hooks ---------------------------------------------------------------------------

    def inject(self, count: int, status: int = 429, retry_after: str | None = "1") -> None:
        """The next ``count`` requests answer ``status`` (with ``Retry-After``)."""
        with self.lock:
            self._inject += [(status, retry_after)] * count

    def requests(self, method: str | None = None) -> list[tuple[str, str, dict[str, str]]]:
        with self.lock:
            return [r for r in self.log if method is None or r[0] == method]

    def sets(self, zone: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The zone's record sets, (relative name lowercased, TYPE) -> stored set."""
        with self.lock:
            return dict(self.zones[zone.lower()])

    def put(self, zone: str, name: str, rdtype: str, ttl: int, records: Any) -> str:
        """Create or replace a record set at the provider (``records`` as the JSON field of
        its type holds it); its new etag."""
        with self.lock:
            stored = self._store(zone.lower(), name, rdtype.upper(), {"TTL": ttl})
            stored["properties"][FIELDS[rdtype.upper()]] = records
            return str(stored["etag"])

    def touch(self, zone: str, name: str, rdtype: str) -> str:
        """A write at the provider that changes nothing but the etag; the new etag."""
        with self.lock:
            stored = self.zones[zone.lower()][(name.lower(), rdtype.upper())]
            stored["etag"] = self._new_etag()
            return str(stored["etag"])

    def create_zone(self, zone: str) -> None:
        with self.lock:
            self._create_zone(zone.lower())

    # --- the API -------------------------------------------------------------------------

    def _new_etag(self) -> str:
        return f"{next(self._etags):08x}-0000-0000-0000-{time.monotonic_ns() % 10**12:012d}"

    def _create_zone(self, zone: str) -> None:
        sets = self.zones.setdefault(zone, {})
        if ("@", "SOA") not in sets:
            soa = {
                "host": "ns1-01.azure-dns.com.",
                "email": "azuredns-hostmaster.microsoft.com",
                "serialNumber": 1,
                "refreshTime": 3600,
                "retryTime": 300,
                "expireTime": 2419200,
                "minimumTTL": 300,
            }
            self._store(zone, "@", "SOA", {"TTL": 3600, "SOARecord": soa})
            ns = [
                {"nsdname": f"ns{i}-01.azure-dns.{tld}."} for i, tld in enumerate(["com", "net"], 1)
            ]
            self._store(zone, "@", "NS", {"TTL": 172800, "NSRecords": ns})

    def _store(self, zone: str, name: str, rdtype: str, props: dict[str, Any]) -> dict[str, Any]:
        sets = self.zones[zone]
        stored = {"name": name, "type": rdtype, "etag": self._new_etag(), "properties": props}
        sets[(name.lower(), rdtype)] = stored
        return stored

    def _set_json(self, zone: str, stored: dict[str, Any]) -> dict[str, Any]:
        name, rdtype = stored["name"], stored["type"]
        props = {"metadata": {}, **stored["properties"]}
        props["fqdn"] = f"{zone}." if name == "@" else f"{name}.{zone}."
        props["provisioningState"] = "Succeeded"
        props.setdefault("targetResource", {})
        return {
            "id": f"{self._zone_id(zone)}/{rdtype}/{name}",
            "name": name,
            "type": f"Microsoft.Network/dnszones/{rdtype}",
            "etag": stored["etag"],
            "properties": props,
        }

    def _zone_id(self, zone: str) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.group}"
            f"/providers/Microsoft.Network/dnszones/{zone}"
        )

    def _zone_json(self, zone: str) -> dict[str, Any]:
        sets = self.zones[zone]
        ns = sets[("@", "NS")]["properties"]["NSRecords"]
        return {
            "id": self._zone_id(zone),
            "name": zone,
            "type": "Microsoft.Network/dnszones",
            "etag": "00000000-0000-0000-0000-000000000000",
            "location": "global",
            "tags": {},
            "properties": {
                "maxNumberOfRecordSets": 10000,
                "numberOfRecordSets": len(sets),
                "nameServers": [r["nsdname"] for r in ns],
                "zoneType": "Public",
            },
        }

    # --- Microsoft Entra ID ----------------------------------------------------------------

    def check_token(self, authorization: str) -> None:
        """An ARM request's ``Authorization``: a bearer token issued here (or FAKE_TOKEN)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header "
                "is missing or not a bearer token.",
            )
        if token != FAKE_TOKEN and self.tokens.get(token, 0.0) <= time.time():
            raise ApiError(401, "InvalidAuthenticationToken", "The access token is invalid.")

    def identity(
        self, method: str, tenant: str, config: bool, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        """An Entra ID request (the openid configuration, or a token): (status, JSON)."""
        if tenant.lower() != self.tenant.lower():
            if config:
                raise EntraError(
                    400,
                    "invalid_tenant",
                    90002,
                    f"Tenant '{tenant}' not found. Check to make "
                    "sure you have the correct tenant ID and are signing into the correct cloud.",
                )
            raise EntraError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        base = f"{self.url}/{self.tenant}"
        if config:
            if method != "GET":
                raise EntraError(405, "invalid_request", 900561, "The endpoint only accepts GET.")
            return 200, {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "jwks_uri": f"{self.url}/{self.tenant}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "127.0.0.1",
                "request_uri_parameter_supported": False,
            }
        if method != "POST":
            raise EntraError(405, "invalid_request", 900561, "The endpoint only accepts POST.")
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        basic = headers.get("authorization", "")
        if basic.lower().startswith("basic "):  # client_secret_basic
            pair = base64.b64decode(basic[6:]).decode()
            user, _, password = pair.partition(":")
            client_id = client_id or urllib.parse.unquote_plus(user)
            secret = secret or urllib.parse.unquote_plus(password)
        self.grants.append({k: v for k, v in form.items() if k != "client_secret"})
        grant = form.get("grant_type")
        if grant != "client_credentials":
            raise EntraError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        if client_id != self.client_id:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' "
                f"was not found in the directory '{self.tenant}'.",
            )
        if not secret:
            raise EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following "
                "parameter: 'client_assertion' or 'client_secret'.",
            )
        if not secrets.compare_digest(secret, self.client_secret):
            raise EntraError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the "
                "secret being sent in the request is the client secret value, not the client "
                f"secret ID, for a secret added to app '{self.client_id}'.",
            )
        scope = form.get("scope", "")
        if len(scope.split()) != 1 or not scope.endswith("/.default"):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not "
                "valid. Client credential flows must have a scope value with /.default suffixed "
                "to the resource identifier (application ID URI).",
            )
        token = secrets.token_urlsafe(48)
        self.tokens[token] = time.time() + TOKEN_LIFETIME
        return 200, {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": token,
        }

    # --- ARM -------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        """One API request: (status, JSON body or None)."""
        match = _ZONE.match(path)
        if not match or match["sub"] != self.subscription or match["rg"].lower() != self.group:
            raise ApiError(404, "ResourceGroupNotFound", f"no resource group at {path}")
        zone, rest = match["zone"].lower(), match["rest"]
        if not rest:
            if method == "PUT":
                created = zone not in self.zones
                self._create_zone(zone)
                return (201 if created else 200), self._zone_json(zone)
            if zone not in self.zones:
                raise ApiError(404, "ResourceNotFound", f"The zone {zone} does not exist.")
            if method == "GET":
                return 200, self._zone_json(zone)
            if method == "DELETE":
                del self.zones[zone]
                return 200, None
            raise ApiError(405, "MethodNotAllowed", method)
        if zone not in self.zones:
            raise ApiError(404, "ParentResourceNotFound", f"The zone {zone} does not exist.")
        parts = rest.split("/")
        if len(parts) == 1 and parts[0].lower() in ("all", "recordsets") and method == "GET":
            return 200, self._list(zone, path, query)
        if len(parts) == 1 and parts[0].upper() in FIELDS and method == "GET":
            return 200, self._list(zone, path, query, parts[0].upper())
        if len(parts) != 2 or parts[0].upper() not in FIELDS:
            raise ApiError(400, "BadRequest", f"unknown resource {rest}")
        rdtype, name = parts[0].upper(), urllib.parse.unquote(parts[1])
        return self._record_set(zone, method, rdtype, name, headers, body)

    def _list(
        self, zone: str, path: str, query: dict[str, str], rdtype: str | None = None
    ) -> dict[str, Any]:
        try:
            top = int(query.get("$top", "100"))
        except ValueError:
            top = 0
        if not 1 <= top <= 1000:
            raise ApiError(400, "BadRequest", f"Invalid $top value: '{query.get('$top')}'.")
        token = query.get("$skiptoken")
        start = int(base64.urlsafe_b64decode(token + "==").decode()) if token else 0
        sets = sorted(
            (s for s in self.zones[zone].values() if rdtype is None or s["type"] == rdtype),
            key=lambda s: (s["name"] != "@", s["name"].lower(), s["type"]),
        )
        page: dict[str, Any] = {
            "value": [self._set_json(zone, s) for s in sets[start : start + top]]
        }
        if start + top < len(sets):
            skip = base64.urlsafe_b64encode(str(start + top).encode()).decode().rstrip("=")
            page["nextLink"] = (
                f"{self.url}{path}?api-version={API_VERSION}&$top={top}&$skipToken={skip}"
            )
        return page

    def _record_set(
        self, zone: str, method: str, rdtype: str, name: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        key = (name.lower(), rdtype)
        current = self.zones[zone].get(key)
        if_match, if_none = headers.get("if-match"), headers.get("if-none-match")
        if if_match is not None and (current is None or if_match not in ("*", current["etag"])):
            raise ApiError(412, "PreconditionFailed", "The Precondition failed (If-Match).")
        if if_none == "*" and current is not None and method == "PUT":
            raise ApiError(412, "PreconditionFailed", "The record set already exists.")
        if method == "GET":
            if current is None:
                raise ApiError(404, "NotFound", f"The resource record '{name}' does not exist.")
            return 200, self._set_json(zone, current)
        if method == "DELETE":
            if rdtype == "SOA" or (rdtype == "NS" and name == "@"):
                raise ApiError(400, "BadRequest", "The apex SOA and NS cannot be deleted.")
            if current is None:
                return 204, None
            del self.zones[zone][key]
            return 200, None
        if method not in ("PUT", "PATCH"):
            raise ApiError(405, "MethodNotAllowed", method)
        props = dict((body or {}).get("properties") or {})
        if method == "PATCH":
            if current is None:
                raise ApiError(404, "NotFound", f"The resource record '{name}' does not exist.")
            props = {**current["properties"], **props}
        if rdtype == "SOA" and current is None:
            raise ApiError(400, "BadRequest", "SOA record sets cannot be created.")
        self._validate(rdtype, props)
        stored = self._store(zone, current["name"] if current else name, rdtype, props)
        return (200 if current else 201), self._set_json(zone, stored)

    @staticmethod
    def _validate(rdtype: str, props: dict[str, Any]) -> None:
        if not isinstance(props.get("TTL"), int):
            raise ApiError(400, "BadRequest", "The TTL is required.")
        others = [f for t, f in FIELDS.items() if t != rdtype and props.get(f)]
        if others:
            raise ApiError(400, "BadRequest", f"{rdtype} record set with {others[0]}.")
        records = props.get(FIELDS[rdtype])
        count = (1 if records else 0) if rdtype in ("CNAME", "SOA") else len(records or [])
        if count > 20:
            raise ApiError(400, "BadRequest", "At most 20 records a record set.")
        if rdtype == "TXT":
            strings = [s for r in records or [] for s in r.get("value") or []]
            if sum(len(s) for s in strings) > 4096 or any(len(s) > 1024 for s in strings):
                raise ApiError(400, "BadRequest", "TXT data over 4096 characters.")
        props.pop("fqdn", None)
        props.pop("provisioningState", None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, emulator: AzureDns, tls: ssl.SSLContext) -> None:
        self.emulator, self.tls = emulator, tls
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(("127.0.0.1", emulator.port), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.open_lock:
            self.open.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def cut(self) -> None:
        """Cut the connections still open (keep-alive ones an outage must end too)."""
        with self.open_lock:
            conns = list(self.open)
        for conn in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # cut connections, failed handshakes: nothing a test needs on stderr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session uses it
    timeout = 10
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.request.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        emulator = self.server.emulator
        url = urllib.parse.urlsplit(self.path)
        query = {k.lower(): v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        with emulator.lock:
            emulator.log.append((self.command, url.path, headers))
            injected = emulator._inject.pop(0) if emulator._inject else None
        extra: dict[str, str] = {}
        try:
            status, answer = self._answer(url.path, query, headers, raw, injected, extra)
        except EntraError as exc:
            status, answer = exc.status, exc.json(emulator.url)
        except ApiError as exc:
            status, answer = exc.status, {"error": {"code": exc.code, "message": str(exc)}}
            if status == 401:
                extra["WWW-Authenticate"] = (
                    'Bearer authorization_uri="https://login.windows.net/", error="invalid_token",'
                    f' error_description="{exc}"'
                )
        except ValueError as exc:
            status, answer = 400, {"error": {"code": "BadRequest", "message": str(exc)}}
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        if isinstance(answer, dict) and answer.get("etag") and "error" not in answer:
            self.send_header("ETag", str(answer["etag"]))
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", f"{time.monotonic_ns():x}")
        self.end_headers()
        self.wfile.write(data)

    def _answer(
        self,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        raw: bytes,
        injected: tuple[int, str | None] | None,
        extra: dict[str, str],
    ) -> tuple[int, Any]:
        emulator = self.server.emulator
        if injected is not None:
            status, retry_after = injected
            if retry_after is not None:
                extra["Retry-After"] = retry_after
            code = "TooManyRequests" if status == 429 else "InternalServerError"
            raise ApiError(status, code, f"injected HTTP {status}")
        entra = _IDENTITY.match(path)
        with emulator.lock:
            if entra:
                tenant, config = entra["tenant"], bool(entra["config"])
                return emulator.identity(self.command, tenant, config, headers, raw)
            emulator.check_token(headers.get("authorization", ""))
        if query.get("api-version") != API_VERSION:
            raise ApiError(400, "InvalidApiVersionParameter", "api-version is required.")
        body = json.loads(raw) if raw else None
        with emulator.lock:
            return emulator.handle(self.command, path, query, headers, body)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _serve
