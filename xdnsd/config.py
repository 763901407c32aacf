"""Configuration: TOML to frozen dataclasses (pure).

Errors name the file, the key and the problem.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.name

from xdnsd.server.acl import AllowEntry, Grant, PolicyError, UpdateAcl, parse_allow, parse_grant
from xdnsd.server.tsig import ALGORITHMS, TsigKey

if TYPE_CHECKING:  # cryptography is loaded when a TLS certificate is configured
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    TlsKey = (
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey
    )

DEFAULT_PORT = 53


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    @property
    def family_v6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family_v6 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[ListenAddress, ...]
    data_dir: Path
    workers: int = 1
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 1000
    version: str | None = None  # answered to CH TXT version.bind; hidden when unset
    identity: str | None = None  # answered to CH TXT id.server / hostname.bind
    journal_depth: int = 1000
    cache_size: int = 200_000
    catalog_zone: dns.name.Name | None = None  # publish the zone list as an RFC 9432 catalog
    # for zones without their own allow_transfer (BIND's options-level allow-transfer)
    allow_transfer: UpdateAcl = field(default_factory=UpdateAcl)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    peer_listen: ListenAddress | None = None  # where the other nodes connect (replication)
    # how long a delete is kept (after every peer has it) before it is collected; a peer away
    # longer than this is brought back by a state transfer
    tombstone_retention: float = 7 * 86400.0
    # seconds between digest comparisons with each peer (anti-entropy beyond version vectors)
    anti_entropy_interval: float = 30.0


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Another node of the cluster: where to reach it and the key both share."""

    id: str
    address: ListenAddress
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    name: dns.name.Name
    file: Path | None
    update_acl: UpdateAcl = field(default_factory=UpdateAcl)
    transfer_acl: UpdateAcl = field(default_factory=UpdateAcl)  # its allow list: who may AXFR/IXFR
    secondaries: tuple[ListenAddress, ...] = ()  # sent a NOTIFY after every change
    notify_key: TsigKey | None = None  # signs those NOTIFYs
    # a secondary zone: its data is transferred from these primaries (in order of preference)
    primaries: tuple[ListenAddress, ...] = ()
    primary_key: TsigKey | None = None  # signs the SOA queries and transfers to the primaries
    journal_depth: int | None = None  # IXFR journal entries kept (default: [server] journal_depth)
    conflicts: str = "alert"  # or "last-writer-wins": concurrent changes that do not commute
    targets: tuple[str, ...] = ()  # the [targets.NAME] that mirror this zone

    @property
    def kind(self) -> str:
        return "secondary" if self.primaries else "primary"


TARGET_KINDS = {
    # kind -> (required settings, optional settings), beside owner / reconcile_every / force
    "route53": (
        {"hosted_zone_id"},
        {"endpoint_url", "region", "profile", "access_key_id", "secret_access_key"},
    ),
    "azure": (
        {"subscription_id", "resource_group"},
        {
            "zone_name",
            "tenant_id",
            "client_id",
            "client_secret",
            "authority_host",
            "base_url",
            "ca_file",
        },
    ),
    "rfc2136": ({"server"}, {"key", "timeout"}),
}


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """A provider's copy of one zone, driven by one node (``owner``)."""

    name: str
    kind: str  # route53, azure, rfc2136
    owner: str  # the node that pushes to it; the others only show its status
    zone: dns.name.Name | None = None  # the zone that lists it (set when zones are read)
    reconcile_every: float = 600.0  # seconds between full reconciles (drift repair)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)  # kind-specific
    key: TsigKey | None = None  # rfc2136: signs the updates and transfers


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    secret: str = field(repr=False)
    role: str = "read-only"  # or "read-write"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The HTTP API's listener and who may use it."""

    listen: ListenAddress
    tokens: tuple[ApiToken, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_insecure: bool = False  # serve plain HTTP on a non-loopback address anyway


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    server: ServerConfig
    node: NodeConfig
    zones: tuple[ZoneConfig, ...]
    keys: dict[dns.name.Name, TsigKey] = field(default_factory=dict)
    peers: tuple[PeerConfig, ...] = ()
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    api: ApiConfig | None = None


def parse_listen(value: str, where: str) -> ListenAddress:
    """``127.0.0.1:5353``, ``[::1]:5353``, ``127.0.0.1`` (port 53) or ``::1``."""
    text = value.strip()
    host: str
    port = DEFAULT_PORT
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{where}: {value!r} has '[' without ']'")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{where}: {value!r}: expected ':PORT' after ']'")
            port = _parse_port(rest[1:], value, where)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _parse_port(port_text, value, where)
    else:
        host = text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{where}: {value!r}: {host!r} is not an IP address") from None
    return ListenAddress(host, port)


def _catalog_name(text: str | None, where: str) -> dns.name.Name | None:
    if text is None:
        return None
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise ConfigError(f"{where}.catalog_zone: {text!r} is not a domain name: {exc}") from None


def _parse_port(text: str, value: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{where}: {value!r}: port must be a number from 1 to 65535")
    return int(text)


_KIND_WORDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
    bool: "true or false",
}


def _take(
    table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...
) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing required key '{key}'")
        return default
    value = table[key]
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(_KIND_WORDS.get(k, k.__name__) for k in kinds)
        raise ConfigError(f"{where}.{key}: expected {wanted}, got {value!r}")
    return value


def _no_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})"
        )


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path) -> Config:
    base = path.resolve().parent
    f = str(path)
    _no_unknown(raw, {"server", "node", "zones", "keys", "peers", "targets", "api"}, f)

    keys = _parse_keys(_take(raw, "keys", dict, f, {}), base, f)
    server = _take(raw, "server", dict, f, {})
    sw = f"{f}: [server]"
    _no_unknown(
        server,
        {
            "listen",
            "data_dir",
            "workers",
            "tcp_idle_timeout",
            "tcp_max_connections",
            "version",
            "identity",
            "journal_depth",
            "cache_size",
            "catalog_zone",
            "allow_transfer",
        },
        sw,
    )
    listen_raw = _take(server, "listen", list, sw, ["127.0.0.1:5353"])
    if not listen_raw:
        raise ConfigError(f"{sw}.listen: needs at least one address")
    listen = []
    for i, item in enumerate(listen_raw):
        if not isinstance(item, str):
            raise ConfigError(f"{sw}.listen[{i}]: expected a string like '127.0.0.1:5353'")
        listen.append(parse_listen(item, f"{sw}.listen[{i}]"))
    workers = _take(server, "workers", int, sw, 1)
    if not 1 <= workers <= 64:
        raise ConfigError(f"{sw}.workers: must be from 1 to 64, got {workers}")
    timeout = float(_take(server, "tcp_idle_timeout", (int, float), sw, 10.0))
    if timeout <= 0:
        raise ConfigError(f"{sw}.tcp_idle_timeout: must be positive")
    max_conns = _take(server, "tcp_max_connections", int, sw, 1000)
    if max_conns < 1:
        raise ConfigError(f"{sw}.tcp_max_connections: must be at least 1")
    journal_depth = _take(server, "journal_depth", int, sw, 1000)
    if journal_depth < 1:
        raise ConfigError(f"{sw}.journal_depth: must be at least 1")
    cache_size = _take(server, "cache_size", int, sw, 200_000)
    if cache_size < 0:
        raise ConfigError(f"{sw}.cache_size: must not be negative")
    server_cfg = ServerConfig(
        listen=tuple(listen),
        data_dir=(base / _take(server, "data_dir", str, sw, "var")).resolve(),
        workers=workers,
        tcp_idle_timeout=timeout,
        tcp_max_connections=max_conns,
        version=_take(server, "version", str, sw, None),
        identity=_take(server, "identity", str, sw, None),
        journal_depth=journal_depth,
        cache_size=cache_size,
        catalog_zone=_catalog_name(_take(server, "catalog_zone", str, sw, None), sw),
        allow_transfer=UpdateAcl(allow=_parse_allow_list(server, "allow_transfer", keys, sw)),
    )

    node = _take(raw, "node", dict, f, {})
    nw = f"{f}: [node]"
    _no_unknown(node, {"id", "peer_listen", "tombstone_retention", "anti_entropy_interval"}, nw)
    node_id = _node_id(_take(node, "id", str, nw, "ns1"), f"{nw}.id")
    peer_listen_text = _take(node, "peer_listen", str, nw, None)
    peer_listen = None
    if peer_listen_text is not None:
        peer_listen = parse_listen(peer_listen_text, f"{nw}.peer_listen")
    retention = float(_take(node, "tombstone_retention", (int, float), nw, 7 * 86400.0))
    if retention <= 0:
        raise ConfigError(f"{nw}.tombstone_retention: must be positive, got {retention}")
    anti_entropy = float(_take(node, "anti_entropy_interval", (int, float), nw, 30.0))
    if anti_entropy <= 0:
        raise ConfigError(f"{nw}.anti_entropy_interval: must be positive, got {anti_entropy}")
    peers = _parse_peers(_take(raw, "peers", list, f, []), node_id, f)
    targets = _parse_targets(_take(raw, "targets", dict, f, {}), keys, node_id, f)
    api_raw = _take(raw, "api", dict, f, None)
    api = None if api_raw is None else _parse_api(api_raw, base, f)

    zones = []
    seen: set[dns.name.Name] = set()
    for i, z in enumerate(_take(raw, "zones", list, f, [])):
        zw = f"{f}: [[zones]] #{i + 1}"
        if not isinstance(z, dict):
            raise ConfigError(f"{zw}: expected a table")
        _no_unknown(
            z,
            {
                "name",
                "file",
                "update_policy",
                "allow_update",
                "allow_transfer",
                "secondaries",
                "notify_key",
                "primaries",
                "primary_key",
                "journal_depth",
                "conflicts",
                "targets",
            },
            zw,
        )
        name_text = _take(z, "name", str, zw)
        try:
            name = dns.name.from_text(name_text)
        except dns.exception.DNSException as exc:
            raise ConfigError(f"{zw}.name: {name_text!r} is not a domain name: {exc}") from None
        if name in seen:
            raise ConfigError(f"{zw}.name: zone {name} is listed twice")
        seen.add(name)
        file_text = _take(z, "file", str, zw, None)
        acl = _parse_update_acl(z, keys, zw)
        transfer = _parse_allow_list(z, "allow_transfer", keys, zw)
        secondaries = _addresses(z, "secondaries", zw)
        notify_key = _key_ref(z, "notify_key", keys, zw)
        primaries = _addresses(z, "primaries", zw)
        primary_key = _key_ref(z, "primary_key", keys, zw)
        if primaries:
            for word in ("file", "update_policy", "allow_update"):
                if word in z:
                    raise ConfigError(
                        f"{zw}.{word}: zone {name} is a secondary (it has 'primaries'): its "
                        f"data comes from the primaries, so it takes no '{word}'"
                    )
        elif primary_key is not None:
            raise ConfigError(f"{zw}.primary_key: set without 'primaries'")
        policy = _take(z, "conflicts", str, zw, "alert")
        if policy not in ("alert", "last-writer-wins"):
            raise ConfigError(f"{zw}.conflicts: {policy!r}: use 'alert' or 'last-writer-wins'")
        zone_depth = _take(z, "journal_depth", int, zw, None)
        if zone_depth is not None and zone_depth < 1:
            raise ConfigError(f"{zw}.journal_depth: must be at least 1")
        zone_targets = _take(z, "targets", list, zw, [])
        for t in zone_targets:
            if not isinstance(t, str) or t not in targets:
                raise ConfigError(f"{zw}.targets: {t!r} is not a [targets.NAME] table")
            if targets[t].zone is not None:
                raise ConfigError(
                    f"{zw}.targets: {t!r} already mirrors zone {targets[t].zone}; "
                    "a target is one provider zone"
                )
            targets[t] = dataclasses.replace(targets[t], zone=name)
        zones.append(
            ZoneConfig(
                name,
                (base / file_text).resolve() if file_text else None,
                acl,
                UpdateAcl(allow=transfer),
                tuple(secondaries),
                notify_key,
                tuple(primaries),
                primary_key,
                zone_depth,
                policy,
                tuple(zone_targets),
            )
        )
    for t in targets.values():
        if t.zone is None:
            raise ConfigError(
                f"{f}: [targets.{t.name}]: no zone lists it (add it to a zone's 'targets')"
            )
    return Config(
        path=path,
        server=server_cfg,
        node=NodeConfig(node_id, peer_listen, retention, anti_entropy),
        zones=tuple(zones),
        targets=targets,
        api=api,
        keys=keys,
        peers=peers,
    )


def _parse_api(raw: dict[str, Any], base: Path, f: str) -> ApiConfig:
    aw = f"{f}: [api]"
    _no_unknown(raw, {"listen", "tokens", "tls_cert", "tls_key", "allow_insecure"}, aw)
    listen = parse_listen(_take(raw, "listen", str, aw, "127.0.0.1:8053"), f"{aw}.listen")
    tokens = []
    for name, table in _take(raw, "tokens", dict, aw, {}).items():
        tw = f"{aw}.tokens.{name}"
        if not isinstance(table, dict):
            raise ConfigError(f"{tw}: expected a table")
        _no_unknown(table, {"secret", "role"}, tw)
        secret = _take(table, "secret", str, tw)
        if len(secret) < 16:
            raise ConfigError(f"{tw}.secret: {len(secret)} characters; use at least 16")
        role = _take(table, "role", str, tw, "read-only")
        if role not in ("read-only", "read-write"):
            raise ConfigError(f"{tw}.role: {role!r}: use 'read-only' or 'read-write'")
        tokens.append(ApiToken(name, secret, role))
    cert, key = _take(raw, "tls_cert", str, aw, None), _take(raw, "tls_key", str, aw, None)
    if (cert is None) != (key is None):
        given, missing = ("tls_cert", "tls_key") if key is None else ("tls_key", "tls_cert")
        raise ConfigError(
            f"{aw}: {given} is set but {missing} is not: give both tls_cert and tls_key, or neither"
        )
    insecure = _take(raw, "allow_insecure", bool, aw, False)
    loopback = ipaddress.ip_address(listen.host).is_loopback
    if not loopback and cert is None and not insecure:
        raise ConfigError(
            f"{aw}.listen: {listen} is not a loopback address: serve it with TLS (tls_cert, "
            "tls_key) or say allow_insecure = true"
        )
    cert_path = None if cert is None else (base / cert).resolve()
    key_path = None if key is None else (base / key).resolve()
    if cert_path is not None and key_path is not None:
        load_tls_files(cert_path, key_path, aw)  # fail at load, not when the API starts
    return ApiConfig(listen, tuple(tokens), cert_path, key_path, insecure)


def load_tls_files(cert: Path, key: Path, where: str) -> tuple[list[x509.Certificate], TlsKey]:
    """The certificate chain (the leaf first, then the intermediates the file holds, in its
    order) and the private key of ``[api] tls_cert`` / ``tls_key``, both PEM; ConfigError
    naming the key, the file and the problem when a file is unreadable, is not PEM, or the key
    is not the leaf certificate's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    def read(path: Path, name: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}.{name}: {path}: cannot read: {exc.strerror}") from None

    cert_pem, key_pem = read(cert, "tls_cert"), read(key, "tls_key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ConfigError(
            f"{where}.tls_cert: {cert}: not a PEM certificate (expected -----BEGIN "
            "CERTIFICATE----- blocks: the server's certificate, then any intermediates)"
        ) from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(
            f"{where}.tls_key: {key}: the key is encrypted; xdnsd needs it without a passphrase"
        ) from None
    except (ValueError, NotImplementedError):  # not a key, or of a kind not supported
        raise ConfigError(f"{where}.tls_key: {key}: not a PEM private key") from None
    if not isinstance(
        private,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ConfigError(
            f"{where}.tls_key: {key}: not an RSA, EC, Ed25519 or Ed448 key (TLS needs one)"
        )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, spki) != chain[0].public_key().public_bytes(
        der, spki
    ):
        raise ConfigError(
            f"{where}.tls_key: {key}: the key does not match the certificate in {cert} "
            f"(the first one, {chain[0].subject.rfc4514_string() or 'no subject'})"
        )
    return chain, private


def _parse_targets(
    raw: dict[str, Any], keys: dict[dns.name.Name, TsigKey], node_id: str, f: str
) -> dict[str, TargetConfig]:
    out: dict[str, TargetConfig] = {}
    for name, table in raw.items():
        tw = f"{f}: [targets.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{tw}: expected a table")
        kind = _take(table, "kind", str, tw)
        if kind not in TARGET_KINDS:
            raise ConfigError(f"{tw}.kind: {kind!r}: use one of {', '.join(sorted(TARGET_KINDS))}")
        required, optional = TARGET_KINDS[kind]
        _no_unknown(table, {"kind", "owner", "reconcile_every", *required, *optional}, tw)
        owner = _node_id(_take(table, "owner", str, tw, node_id), f"{tw}.owner")
        every = float(_take(table, "reconcile_every", (int, float), tw, 600.0))
        if every <= 0:
            raise ConfigError(f"{tw}.reconcile_every: must be positive, got {every}")
        settings: dict[str, Any] = {}
        for key in sorted(required | optional):
            if key in ("key", "reconcile_every"):
                continue
            value = _take(table, key, (str, int, float), tw, None if key in optional else ...)
            if value is not None:
                settings[key] = value
        if kind == "rfc2136":
            settings["server"] = parse_listen(str(settings["server"]), f"{tw}.server")
        tsig = _key_ref(table, "key", keys, tw) if kind == "rfc2136" else None
        out[name] = TargetConfig(name, kind, owner, None, every, settings, tsig)
    return out


def _node_id(text: str, where: str) -> str:
    if (
        not text
        or len(text.encode()) > 64
        or not text.replace("-", "").replace("_", "").replace(".", "").isalnum()
    ):
        raise ConfigError(f"{where}: {text!r} must be 1-64 letters, digits, '-', '_' or '.'")
    return text


MIN_PEER_KEY = 16  # bytes of shared secret between two nodes


def _parse_peers(raw: list[Any], node_id: str, f: str) -> tuple[PeerConfig, ...]:
    peers: list[PeerConfig] = []
    for i, table in enumerate(raw):
        pw = f"{f}: [[peers]] #{i + 1}"
        if not isinstance(table, dict):
            raise ConfigError(f"{pw}: expected a table with 'id', 'address' and 'key'")
        _no_unknown(table, {"id", "address", "key"}, pw)
        peer_id = _node_id(_take(table, "id", str, pw), f"{pw}.id")
        if peer_id == node_id:
            raise ConfigError(f"{pw}.id: {peer_id!r} is this node's own id ([node] id)")
        if any(p.id == peer_id for p in peers):
            raise ConfigError(f"{pw}.id: peer {peer_id!r} is listed twice")
        address = parse_listen(_take(table, "address", str, pw), f"{pw}.address")
        try:
            key = base64.b64decode(_take(table, "key", str, pw), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{pw}.key: not valid base64") from None
        if len(key) < MIN_PEER_KEY:
            raise ConfigError(
                f"{pw}.key: {len(key)} bytes; use at least {MIN_PEER_KEY} random bytes "
                "(e.g. `openssl rand -base64 32`)"
            )
        peers.append(PeerConfig(peer_id, address, key))
    return tuple(peers)


def _addresses(zone: dict[str, Any], key_name: str, zw: str) -> list[ListenAddress]:
    """A list of ``IP[:port]`` strings (``secondaries``, ``primaries``); empty when absent."""
    out = []
    for j, item in enumerate(_take(zone, key_name, list, zw, [])):
        if not isinstance(item, str):
            raise ConfigError(f"{zw}.{key_name}[{j}]: expected a string like '192.0.2.1:53'")
        out.append(parse_listen(item, f"{zw}.{key_name}[{j}]"))
    return out


def _key_ref(
    zone: dict[str, Any], key_name: str, keys: dict[dns.name.Name, TsigKey], zw: str
) -> TsigKey | None:
    """The [keys] entry a zone setting names, or None when the setting is absent."""
    text = _take(zone, key_name, str, zw, None)
    if text is None:
        return None
    try:
        key = keys.get(dns.name.from_text(text))
    except dns.exception.DNSException:
        key = None
    if key is None:
        raise ConfigError(f"{zw}.{key_name}: no key named {text!r} in [keys]")
    return key


_KEY_FILE = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}\s*;', re.MULTILINE | re.DOTALL
)
_KEY_FIELD = re.compile(r'(?P<field>algorithm|secret)\s+"?(?P<value>[^";\s]+)"?\s*;')


def _read_key_file(path: Path, name: dns.name.Name, where: str) -> tuple[str, str]:
    """(algorithm, secret) of key ``name`` in a BIND key file (``key "NAME" { ... };``)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{where}.file: cannot read {path}: {exc.strerror}") from None
    text = re.sub(r"(#|//)[^\n]*", "", text)
    found = []
    for match in _KEY_FILE.finditer(text):
        found.append(match.group("name"))
        if dns.name.from_text(match.group("name")) != name:
            continue
        fields = {m.group("field"): m.group("value") for m in _KEY_FIELD.finditer(match["body"])}
        if "algorithm" not in fields or "secret" not in fields:
            line = text.count("\n", 0, match.start()) + 1
            raise ConfigError(
                f"{path}:{line}: key {match.group('name')!r} needs 'algorithm' and 'secret'"
            )
        return fields["algorithm"], fields["secret"]
    listed = ", ".join(found) if found else "none"
    raise ConfigError(f"{where}.file: {path} has no key named {name} (keys found: {listed})")


def _parse_keys(table: dict[str, Any], base: Path, f: str) -> dict[dns.name.Name, TsigKey]:
    keys: dict[dns.name.Name, TsigKey] = {}
    for key_text, spec in table.items():
        kw = f"{f}: [keys.{key_text}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{kw}: expected a table with 'algorithm' and 'secret' or 'file'")
        _no_unknown(spec, {"algorithm", "secret", "file", "allow_truncated"}, kw)
        try:
            name = dns.name.from_text(key_text)
        except dns.exception.DNSException as exc:
            raise ConfigError(f"{kw}: {key_text!r} is not a valid key name: {exc}") from None
        algorithm = _take(spec, "algorithm", str, kw, None)
        secret = _take(spec, "secret", str, kw, None)
        file_text = _take(spec, "file", str, kw, None)
        if (secret is None) == (file_text is None):
            raise ConfigError(f"{kw}: give exactly one of 'secret' and 'file'")
        if file_text is not None:
            file_algorithm, secret = _read_key_file((base / file_text).resolve(), name, kw)
            algorithm = algorithm or file_algorithm
        algorithm = (algorithm or "hmac-sha256").lower()
        if algorithm not in ALGORITHMS:
            raise ConfigError(
                f"{kw}.algorithm: {algorithm!r} is not supported "
                f"(supported: {', '.join(ALGORITHMS)})"
            )
        assert secret is not None
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{kw}.secret: not valid base64") from None
        if not raw:
            raise ConfigError(f"{kw}.secret: must not be empty")
        if name in keys:
            raise ConfigError(f"{kw}: key {name} is defined twice")
        allow_truncated = _take(spec, "allow_truncated", bool, kw, False)
        keys[name] = TsigKey(name, ALGORITHMS[algorithm][0], raw, allow_truncated)
    return keys


def _parse_update_acl(
    zone: dict[str, Any], keys: dict[dns.name.Name, TsigKey], zw: str
) -> UpdateAcl:
    policy_raw = _take(zone, "update_policy", list, zw, None)
    allow_raw = _take(zone, "allow_update", list, zw, None)
    if policy_raw is not None and allow_raw is not None:
        raise ConfigError(f"{zw}: use either 'update_policy' or 'allow_update', not both (as BIND)")
    policy: list[Grant] = []
    for i, text in enumerate(policy_raw or []):
        where = f"{zw}.update_policy[{i}]"
        if not isinstance(text, str):
            raise ConfigError(f"{where}: expected a string like 'grant KEY zonesub ANY'")
        try:
            grant = parse_grant(text, where)
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None
        if not grant.identity.is_wild() and grant.identity not in keys:
            raise ConfigError(f"{where}: {text!r}: no key named {grant.identity} in [keys]")
        policy.append(grant)
    return UpdateAcl(
        policy=tuple(policy) if policy_raw is not None else None,
        allow=_parse_allow_list(zone, "allow_update", keys, zw),
    )


def _parse_allow_list(
    zone: dict[str, Any], key_name: str, keys: dict[dns.name.Name, TsigKey], zw: str
) -> tuple[AllowEntry, ...] | None:
    """A BIND-style address match list (``allow_update``, ``allow_transfer``); None if unset."""
    raw = _take(zone, key_name, list, zw, None)
    if raw is None:
        return None
    allow: list[AllowEntry] = []
    for i, text in enumerate(raw):
        where = f"{zw}.{key_name}[{i}]"
        if not isinstance(text, str):
            raise ConfigError(f"{where}: expected a string like '127.0.0.1' or 'key NAME'")
        try:
            entry = parse_allow(text, where)
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None
        if entry.key is not None and entry.key not in keys:
            raise ConfigError(f"{where}: {text!r}: no key named {entry.key} in [keys]")
        allow.append(entry)
    return tuple(allow)
