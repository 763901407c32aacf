"""NOTIFY out (RFC 1996): tell a zone's secondaries that its serial changed.

Runs inside the writer process (plain sockets, driven by the writer's select loop): after each
batch of commits, and every second for changes made elsewhere (``xdnsd zone import``), the zones'
serials are compared with the last ones announced; each secondary of a changed zone gets a
NOTIFY (SOA in the answer section, TSIG-signed when the zone names a key), retried with backoff
until it answers (any rcode: a secondary that refuses will not change its mind) or the attempts
run out, which is logged.  Each NOTIFY's outcome is counted for ``/metrics``: ``ok``, the RCODE
of an error answer (``refused``), ``timeout`` (given up) or ``superseded`` (a newer serial to
announce before an answer came).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset

from xdnsd.config import ListenAddress
from xdnsd.server.tsig import TsigKey
from xdnsd.stats import ProcessStats, rcode_result
from xdnsd.store import Store

log = logging.getLogger("xdnsd.notify")

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)  # after each unanswered attempt; then give up
POLL_INTERVAL = 1.0  # look for changes committed outside the writer


@dataclass(frozen=True, slots=True)
class NotifyTargets:
    secondaries: tuple[ListenAddress, ...]
    key: TsigKey | None = None


@dataclass(slots=True)
class _Pending:
    zone: dns.name.Name
    serial: int
    address: tuple[str, int]
    wire: bytes
    attempts: int
    due: float


class Notifier:
    def __init__(
        self,
        store: Store,
        targets: Mapping[dns.name.Name, NotifyTargets],
        clock: Callable[[], float] = time.monotonic,
        sources: Mapping[int, str] | None = None,
        stats: ProcessStats | None = None,
    ) -> None:
        """``sources``: address family -> the address NOTIFYs of that family are sent from
        (the server's own listening address: Windows DNS and BIND secondaries accept a NOTIFY
        only from an address they have as the zone's primary)."""
        self._store = store
        self._stats = stats if stats is not None else ProcessStats()
        self._targets = {zone: t for zone, t in targets.items() if t.secondaries}
        self._clock = clock
        self._announced: dict[dns.name.Name, int] = {}
        self._pending: dict[tuple[int, tuple[str, int]], _Pending] = {}
        self._next_poll = 0.0
        self._next_id = int(time.time() * 1000) & 0xFFFF
        self.sockets: dict[int, socket.socket] = {}
        if self._targets:
            for family in {
                socket.AF_INET6 if a.family_v6 else socket.AF_INET
                for t in self._targets.values()
                for a in t.secondaries
            }:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                source = (sources or {}).get(family)
                if source is not None:
                    try:
                        sock.bind((source, 0))
                    except OSError as exc:
                        log.warning("NOTIFY: cannot send from %s (%s)", source, exc)
                sock.setblocking(False)
                self.sockets[family] = sock
        self.sent = 0
        self.acknowledged = 0

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    @property
    def pending(self) -> int:
        """NOTIFYs sent and neither answered nor given up yet."""
        return len(self._pending)

    def check(self) -> None:
        """Announce every zone whose serial differs from the one last announced."""
        if not self._targets:
            return
        self._next_poll = self._clock() + POLL_INTERVAL
        serials = {meta.name: meta.serial for meta in self._store.list_zones()}
        for zone, targets in self._targets.items():
            serial = serials.get(zone)
            if serial is None or self._announced.get(zone) == serial:
                continue
            self._announced[zone] = serial
            wire_for = self._message(zone, targets.key)
            if wire_for is None:
                continue
            for address in targets.secondaries:
                # a newer serial replaces what is still being retried for this secondary
                for key in [
                    k
                    for k, p in self._pending.items()
                    if p.zone == zone and p.address == (address.host, address.port)
                ]:
                    del self._pending[key]
                    self._stats.count_notify("sent", "superseded")
                self._send(zone, serial, (address.host, address.port), wire_for)

    def _message(self, zone: dns.name.Name, key: TsigKey | None) -> Callable[[int], bytes] | None:
        with self._store.snapshot() as snap:
            soa = snap.zone(zone).soa()

        def wire(message_id: int) -> bytes:
            message = dns.message.make_query(zone, dns.rdatatype.SOA)
            message.id = message_id
            message.set_opcode(dns.opcode.NOTIFY)
            message.flags = dns.flags.AA | (message.flags & ~dns.flags.RD)
            message.answer.append(dns.rrset.from_rdata(soa.owner, soa.ttl, soa.rdata))
            if key is not None:
                message.use_tsig(key.dnspython_key(), algorithm=key.algorithm)
            return message.to_wire()

        return wire

    def _send(
        self,
        zone: dns.name.Name,
        serial: int,
        address: tuple[str, int],
        wire_for: Callable[[int], bytes],
    ) -> None:
        self._next_id = (self._next_id + 1) & 0xFFFF
        pending = _Pending(zone, serial, address, wire_for(self._next_id), 0, 0.0)
        self._pending[(self._next_id, address)] = pending
        self._attempt(pending)

    def _attempt(self, pending: _Pending) -> None:
        family = socket.AF_INET6 if ":" in pending.address[0] else socket.AF_INET
        with contextlib.suppress(OSError):  # unreachable now: the retry may get through
            self.sockets[family].sendto(pending.wire, pending.address)
        self.sent += 1
        pending.due = self._clock() + RETRY_DELAYS[min(pending.attempts, len(RETRY_DELAYS) - 1)]
        pending.attempts += 1

    def readable(self, sock: socket.socket) -> None:
        """Take the answers waiting on ``sock``: each one ends its NOTIFY's retries."""
        while True:
            try:
                data, address = sock.recvfrom(4096)
            except (BlockingIOError, OSError):
                return
            if len(data) < 12 or not data[2] & 0x80:
                continue
            (message_id,) = struct.unpack_from("!H", data)
            pending = self._pending.pop((message_id, (address[0], address[1])), None)
            if pending is None:
                continue
            self.acknowledged += 1
            rcode = data[3] & 0xF
            self._stats.count_notify("sent", "ok" if rcode == 0 else rcode_result(rcode))
            if rcode != dns.rcode.NOERROR:
                log.warning(
                    "NOTIFY for zone %s serial %d: %s:%d answered %s",
                    pending.zone,
                    pending.serial,
                    *pending.address,
                    dns.rcode.to_text(dns.rcode.Rcode(rcode)),
                )

    def tick(self) -> None:
        """Retry what is due, give up what has had its attempts, poll for outside changes."""
        now = self._clock()
        for key, pending in list(self._pending.items()):
            if pending.due > now:
                continue
            if pending.attempts > len(RETRY_DELAYS):
                del self._pending[key]
                self._stats.count_notify("sent", "timeout")
                log.warning(
                    "NOTIFY for zone %s serial %d to %s:%d: no answer after %d attempts; "
                    "given up (the secondary will still see the change at its next refresh)",
                    pending.zone,
                    pending.serial,
                    *pending.address,
                    pending.attempts,
                )
            else:
                self._attempt(pending)
        if self._targets and now >= self._next_poll:
            self.check()

    def timeout(self) -> float:
        """Seconds until the next retry or poll is due."""
        if not self._targets:
            return 1.0
        due = min([p.due for p in self._pending.values()] + [self._next_poll])
        return max(0.0, due - self._clock())

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
