"""Twisted transports for DNS: bytes in, bytes out.

UDP is a raw file descriptor registered with the reactor rather than a ``DatagramProtocol``: one
readiness event drains the socket with plain ``recvfrom``/``sendto`` calls, which keeps Twisted's
per-packet machinery off the hot path.  TCP follows RFC 7766: two-byte length framing, pipelined
queries answered in order, an idle timeout and a connection limit.

Both time the queries they answer inline for ``xdnsd_query_duration_seconds``.  TCP times each
message (answer and write).  UDP reads the clock twice per readiness event, not per query: the
batch's time (receiving, answering and sending every datagram it drained), less the time of the
answers the engine computed (timed one by one by the fast path: they are the slow ones), is
shared equally among the answers from the cache.  The histogram's sum and count are exact; a
cache hit's bucket is its batch's mean (its own time when the batch is one query, the usual case
below saturation).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IPullProducer, IReadDescriptor
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from xdnsd.stats import ProcessStats

log = logging.getLogger("xdnsd.server")

Answerer = Callable[[bytes], "bytes | None"]
# (message, client address, over TCP?, reply) for messages the answerer hands off (b"")
Reply = Callable[["bytes | None"], None]
Stream = Callable[[Iterator[bytes]], None]  # several messages in turn (TCP only: transfers)
Handoff = Callable[[bytes, Any, bool, Reply, "Stream | None"], None]

# drain at most this many datagrams per readiness event so TCP and timers still get their turn
UDP_BATCH = 512


@implementer(IReadDescriptor)
class UDPListener:
    """A bound, non-blocking UDP socket answered inline from the reactor's read events."""

    def __init__(
        self,
        sock: socket.socket,
        answer: Answerer,
        reactor: Any,
        handoff: Handoff | None = None,
        stats: ProcessStats | None = None,
    ) -> None:
        sock.setblocking(False)
        self.socket = sock
        self._answer = answer
        self._handoff = handoff
        self._reactor = reactor
        self._stats = stats or ProcessStats()
        self.errors = 0

    def start(self) -> None:
        self._reactor.addReader(self)

    def stop(self) -> None:
        self._reactor.removeReader(self)
        self.socket.close()

    def fileno(self) -> int:
        return self.socket.fileno()

    def logPrefix(self) -> str:
        return "xdnsd-udp"

    def doRead(self) -> None:
        recvfrom = self.socket.recvfrom
        sendto = self.socket.sendto
        answer = self._answer
        stats = self._stats
        fresh, fresh_ns = stats.udp_fresh, stats.udp_fresh_ns  # timed by the fast path
        answered = 0
        not_queries_ns = 0  # messages handed off are not queries
        start = time.perf_counter_ns()
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(65535)
            except BlockingIOError:
                break
            except OSError:
                continue  # e.g. an ICMP error queued on the socket
            try:
                response = answer(data)
                if response:
                    answered += 1  # counted by the answerer, sent or not
                    sendto(response, addr)
                elif response is not None and self._handoff is not None:
                    handed = time.perf_counter_ns()
                    self._handoff(data, addr, False, self._replier(addr), None)
                    not_queries_ns += time.perf_counter_ns() - handed
            except OSError:
                pass  # a full socket buffer or an unreachable client: the datagram is dropped
            except Exception:
                self.errors += 1
                log.exception("unexpected error answering a UDP packet from %s", addr[0])
        hits = answered - (stats.udp_fresh - fresh)
        if hits > 0:
            spent = (
                time.perf_counter_ns() - start - not_queries_ns - (stats.udp_fresh_ns - fresh_ns)
            )
            stats.durations[0].observe_shared(max(spent, hits), hits)

    def _replier(self, addr: Any) -> Callable[[bytes | None], None]:
        def reply(response: bytes | None) -> None:
            if response is not None:
                with contextlib.suppress(OSError):  # closed or full: the client retries
                    self.socket.sendto(response, addr)

        return reply

    def connectionLost(self, reason: Failure) -> None:
        log.info("UDP listener closed: %s", reason.getErrorMessage())


class DNSOverTCP(Int16StringReceiver, TimeoutMixin):
    """One TCP connection (RFC 7766)."""

    factory: TCPFactory

    def _close(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def _abort(self) -> None:
        transport: Any = self.transport
        transport.abortConnection()

    def connectionMade(self) -> None:
        if self.factory.connections >= self.factory.max_connections:
            log.warning(
                "TCP connection limit (%d) reached; closing a new connection",
                self.factory.max_connections,
            )
            self._abort()
            self._counted = False
            return
        self._counted = True
        self.factory.connections += 1
        self.setTimeout(self.factory.idle_timeout)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._lost = True
        self.setTimeout(None)
        for producer in getattr(self, "_streams", ()):
            producer.stopProducing()  # releases what the generators hold (a read snapshot)
        self._streams: deque[_MessageProducer] = deque()
        if getattr(self, "_counted", False):
            self.factory.connections -= 1
            self._counted = False

    def stringReceived(self, string: bytes) -> None:
        start = time.perf_counter_ns()
        self.resetTimeout()
        try:
            response = self.factory.answer(string)
        except Exception:
            log.exception("unexpected error answering a TCP message")
            self._close()
            return
        if response is None:
            # nothing sensible to say to this message (e.g. it is a response): close, like Knot
            self._close()
            return
        if not response and self.factory.handoff is not None:
            transport: Any = self.transport
            self.factory.handoff(string, transport.getPeer(), True, self._reply, self.stream)
            return
        self.sendString(response)
        self.factory.durations.observe(time.perf_counter_ns() - start)

    def stream(self, messages: Iterator[bytes]) -> None:
        """Send ``messages`` one by one as the socket drains (a zone transfer is never held
        whole in memory); several streams on one connection go one after the other."""
        if getattr(self, "_lost", False):
            _close_iterator(messages)
            return
        if not hasattr(self, "_streams"):
            self._streams = deque()
        self._streams.append(_MessageProducer(self, messages))
        if len(self._streams) == 1:
            self._start_stream()

    def _start_stream(self) -> None:
        transport: Any = self.transport
        transport.registerProducer(self._streams[0], False)

    def _stream_done(self, producer: _MessageProducer, failed: bool) -> None:
        transport: Any = self.transport
        transport.unregisterProducer()
        if self._streams and self._streams[0] is producer:
            self._streams.popleft()
        if failed:
            self._close()
        elif self._streams:
            self._start_stream()

    def _reply(self, response: bytes | None) -> None:
        """An answer given later (an update, after its commit); pipelining may reorder."""
        if getattr(self, "_lost", False):
            return
        if response is None:
            self._close()
            return
        self.resetTimeout()
        self.sendString(response)

    def timeoutConnection(self) -> None:
        self._close()


class TCPFactory(protocol.ServerFactory):
    noisy = False

    def __init__(
        self,
        answer: Answerer,
        idle_timeout: float,
        max_connections: int,
        handoff: Handoff | None = None,
        stats: ProcessStats | None = None,
    ) -> None:
        self.answer = answer
        self.handoff = handoff
        self.durations = (stats or ProcessStats()).durations[1]
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        proto = DNSOverTCP()
        proto.factory = self
        return proto


def _close_iterator(messages: Iterator[bytes]) -> None:
    close = getattr(messages, "close", None)
    if close is not None:
        close()


@implementer(IPullProducer)
class _MessageProducer:
    """Writes the next message of a stream each time the TCP transport asks for more."""

    def __init__(self, proto: DNSOverTCP, messages: Iterator[bytes]) -> None:
        self._proto = proto
        self._messages = messages
        self._done = False

    def resumeProducing(self) -> None:
        if self._done:
            return
        try:
            message = next(self._messages)
        except StopIteration:
            self._done = True
            self._proto._stream_done(self, failed=False)
            return
        except Exception:
            log.exception("a multi-message answer failed part-way; closing the connection")
            self._done = True
            _close_iterator(self._messages)
            self._proto._stream_done(self, failed=True)
            return
        self._proto.resetTimeout()
        self._proto.sendString(message)

    def stopProducing(self) -> None:
        if not self._done:
            self._done = True
            _close_iterator(self._messages)
