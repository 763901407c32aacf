"""A worker's link to the node's writer process (see :mod:`xdnsd.server.writer`)."""

from __future__ import annotations

import logging
import socket
from typing import Any

import dns.rcode
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from xdnsd.server.acl import Requester
from xdnsd.server.writer import MAX_FRAME, UpdateRequest, decode_reply, encode_request

log = logging.getLogger("xdnsd.update")


class WriterLink(Int32StringReceiver):
    """Sends update requests to the writer process; each Deferred fires with the rcode."""

    MAX_LENGTH = MAX_FRAME

    def __init__(self) -> None:
        self._pending: dict[int, Deferred[int]] = {}
        self._next_id = 0
        self.lost = False
        self.closing = False  # the server is stopping: the writer's end closing is expected

    def submit(self, requester: Requester, body: bytes) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        if self.lost:
            d.callback(int(dns.rcode.SERVFAIL))
            return d
        self._next_id += 1
        self._pending[self._next_id] = d
        transport: Any = self.transport
        transport.write(encode_request(UpdateRequest(self._next_id, requester, body)))
        return d

    def stringReceived(self, string: bytes) -> None:
        request_id, rcode = decode_reply(string)
        d = self._pending.pop(request_id, None)
        if d is not None:
            d.callback(rcode)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.lost and not self.closing:
            log.error(
                "the writer process is gone (%s): updates are answered SERVFAIL until xdnsd "
                "is restarted (%d were waiting)",
                reason.getErrorMessage(),
                len(self._pending),
            )
        self.lost = True
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.callback(int(dns.rcode.SERVFAIL))


class _LinkFactory(protocol.Factory):
    noisy = False

    def __init__(self, link: WriterLink) -> None:
        self.link = link

    def buildProtocol(self, addr: Any) -> WriterLink:
        return self.link


def connect_writer(reactor: Any, sock: socket.socket) -> WriterLink:
    """Adopt this worker's end of the socket pair to the writer process."""
    link = WriterLink()
    reactor.adoptStreamConnection(sock.fileno(), socket.AF_UNIX, _LinkFactory(link))
    sock.close()  # the reactor holds its own duplicate
    return link
