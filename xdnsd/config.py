"""Configuration: TOML to frozen dataclasses (pure).

Errors name the file, the key and the problem.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.name

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


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    name: dns.name.Name
    file: Path | None


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    server: ServerConfig
    node: NodeConfig
    zones: tuple[ZoneConfig, ...]


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
    _no_unknown(raw, {"server", "node", "zones"}, f)

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
    )

    node = _take(raw, "node", dict, f, {})
    nw = f"{f}: [node]"
    _no_unknown(node, {"id"}, nw)
    node_id = _take(node, "id", str, nw, "ns1")
    if (
        not node_id
        or len(node_id.encode()) > 64
        or not node_id.replace("-", "").replace("_", "").replace(".", "").isalnum()
    ):
        raise ConfigError(f"{nw}.id: {node_id!r} must be 1-64 letters, digits, '-', '_' or '.'")

    zones = []
    seen: set[dns.name.Name] = set()
    for i, z in enumerate(_take(raw, "zones", list, f, [])):
        zw = f"{f}: [[zones]] #{i + 1}"
        if not isinstance(z, dict):
            raise ConfigError(f"{zw}: expected a table")
        _no_unknown(z, {"name", "file"}, zw)
        name_text = _take(z, "name", str, zw)
        try:
            name = dns.name.from_text(name_text)
        except dns.exception.DNSException as exc:
            raise ConfigError(f"{zw}.name: {name_text!r} is not a domain name: {exc}") from None
        if name in seen:
            raise ConfigError(f"{zw}.name: zone {name} is listed twice")
        seen.add(name)
        file_text = _take(z, "file", str, zw, None)
        zones.append(ZoneConfig(name, (base / file_text).resolve() if file_text else None))
    return Config(path=path, server=server_cfg, node=NodeConfig(node_id), zones=tuple(zones))
