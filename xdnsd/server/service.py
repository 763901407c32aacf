"""The DNS wing's services: sockets, listeners and the query answerer of one worker process."""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

import dns.name
from twisted.internet.task import LoopingCall

from xdnsd.config import ListenAddress, ServerConfig
from xdnsd.server.acl import UpdateAcl
from xdnsd.server.answer import ServerIdentity
from xdnsd.server.fastpath import QueryAnswerer
from xdnsd.server.handler import MessageHandler
from xdnsd.server.protocols import TCPFactory, UDPListener
from xdnsd.server.secondary import SecondarySpec
from xdnsd.server.tsig import TsigKey
from xdnsd.server.writerlink import WriterLink, connect_writer
from xdnsd.stats import FLUSH_INTERVAL, ProcessStats
from xdnsd.store import SharedResponseCache, Store, TransferCache

log = logging.getLogger("xdnsd.server")

UDP_RECEIVE_BUFFER = 8 << 20  # absorbs bursts so a busy worker does not lose queries


class ListenError(Exception):
    """An address the server cannot listen on; the message says which and why."""


def bind_socket(address: ListenAddress, kind: int, reuseport: bool) -> socket.socket:
    family = socket.AF_INET6 if address.family_v6 else socket.AF_INET
    proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            # only TCP: on UDP, SO_REUSEADDR would let a second server bind the same port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_DGRAM:
            _grow_receive_buffer(sock)
        sock.bind((address.host, address.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"cannot listen on {address}/{proto}: address already in use "
                "(is another DNS server running on that port?)"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ListenError(
                f"cannot listen on {address}/{proto}: no such address on this host"
            ) from None
        if exc.errno == errno.EACCES:
            raise ListenError(
                f"cannot listen on {address}/{proto}: permission denied "
                "(ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            ) from None
        raise ListenError(f"cannot listen on {address}/{proto}: {exc.strerror}") from None
    return sock


def _grow_receive_buffer(sock: socket.socket) -> None:
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, UDP_RECEIVE_BUFFER)
    except OSError:  # not privileged: take what rmem_max allows
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)


def check_addresses_free(addresses: tuple[ListenAddress, ...]) -> None:
    """Fail early, with a clear message, when a port is taken (before workers share it)."""
    for address in addresses:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            bind_socket(address, kind, reuseport=False).close()


@dataclass
class DNSService:
    """Listeners of one worker; start() binds and registers them with the reactor."""

    config: ServerConfig
    store: Store
    reactor: Any
    reuseport: bool
    shared_cache: SharedResponseCache | None = None
    keys: dict[dns.name.Name, TsigKey] = field(default_factory=dict)
    update_acls: dict[dns.name.Name, UpdateAcl] = field(default_factory=dict)
    transfer_acls: dict[dns.name.Name, UpdateAcl] = field(default_factory=dict)
    secondaries: dict[dns.name.Name, SecondarySpec] = field(default_factory=dict)
    transfer_cache: TransferCache | None = None  # full transfers rendered once per version
    answerer: QueryAnswerer = field(init=False)
    writer_socket: socket.socket | None = None  # this worker's end of the link to the writer
    # this worker's counters, flushed every FLUSH_INTERVAL and at stop() (see xdnsd.stats)
    stats: ProcessStats = field(default_factory=ProcessStats)
    writer: WriterLink = field(init=False)
    handler: MessageHandler = field(init=False)
    udp: list[UDPListener] = field(default_factory=list)
    tcp_ports: list[Any] = field(default_factory=list)
    _flushing: LoopingCall | None = field(default=None, init=False)  # writes the counters

    def __post_init__(self) -> None:
        identity = ServerIdentity(version=self.config.version, identity=self.config.identity)
        self.store.expect_zones(list(self.secondaries))  # SERVFAIL until the first transfer
        self.answerer = QueryAnswerer(
            self.store,
            identity,
            self.config.cache_size,
            self.shared_cache,
            handoff=True,
            stats=self.stats,
        )
        if self.writer_socket is not None:
            self.writer = connect_writer(self.reactor, self.writer_socket)
        else:  # no writer process (tests of the query path): every update is SERVFAIL
            self.writer = WriterLink()
            self.writer.lost = True
        self.handler = MessageHandler(
            self.store,
            self.writer,
            self.keys,
            self.update_acls,
            identity,
            self.transfer_acls,
            self.config.allow_transfer,
            self.secondaries,
            transfer_cache=self.transfer_cache,
            stats=self.stats,
        )

    def bind(self) -> list[tuple[socket.socket, socket.socket]]:
        sockets = []
        try:
            for address in self.config.listen:
                udp = bind_socket(address, socket.SOCK_DGRAM, self.reuseport)
                sockets.append((udp, bind_socket(address, socket.SOCK_STREAM, self.reuseport)))
        except ListenError:
            for udp, tcp in sockets:
                udp.close()
                tcp.close()
            raise
        return sockets

    def start(self, sockets: list[tuple[socket.socket, socket.socket]]) -> None:
        factory = TCPFactory(
            self.answerer.tcp,
            self.config.tcp_idle_timeout,
            self.config.tcp_max_connections,
            self.handler.handle,
            self.stats,
        )
        for udp_sock, tcp_sock in sockets:
            listener = UDPListener(
                udp_sock, self.answerer.udp, self.reactor, self.handler.handle, self.stats
            )
            listener.start()
            self.udp.append(listener)
            port = self.reactor.adoptStreamPort(tcp_sock.fileno(), tcp_sock.family, factory)
            tcp_sock.close()  # the reactor holds its own duplicate of the descriptor
            self.tcp_ports.append(port)
        if self.stats.path is not None:
            self._flushing = LoopingCall(self.stats.flush)
            self._flushing.clock = self.reactor
            self._flushing.start(FLUSH_INTERVAL, now=True)

    def stop(self) -> None:
        if self._flushing is not None:
            self._flushing.stop()
            self._flushing = None
        self.writer.closing = True
        for listener in self.udp:
            listener.stop()
        for port in self.tcp_ports:
            port.stopListening()
        self.udp.clear()
        self.tcp_ports.clear()
        self.stats.flush()  # what was counted until now (the worker is stopping)
