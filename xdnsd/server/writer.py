"""The node's single writer for dynamic updates: a process of its own.

Worker processes answer queries; an UPDATE that passed the TSIG check, the zone check and the
zone's admission gate travels over a UNIX socket to the writer process, which reads it, plans
it inside its LMDB write transaction (``Store.commit_batch``: prerequisites and the change are
atomic) and replies with the rcode once the transaction is synced.

Why a process and not a thread: py-lmdb releases the GIL around every LMDB call, and a busy
reactor thread then keeps a writer thread waiting up to the interpreter's switch interval each
time (a batch of 4 changes measured 2.9 ms alone, 68 ms beside one busy thread).  A process of
its own has no such neighbour, takes the updates of every worker (so group commits are bigger),
and leaves LMDB's writer lock uncontended.

Requests that arrive while a batch is syncing form the next batch (group commit); every reply
leaves only after its own batch is on disk.

Frames on the socket: a 4-byte length, then the payload.  Request: request id (8 bytes), key
name (2-byte length + text, empty when unsigned), source address (1-byte length + text), the
UPDATE message without its TSIG.  Reply: request id, rcode (2 bytes).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype

from xdnsd.catalog import CatalogKeeper
from xdnsd.model import Changeset, CommitResult
from xdnsd.server.acl import Requester, UpdateAcl
from xdnsd.server.notify import Notifier, NotifyTargets
from xdnsd.server.secondary import SecondaryKeeper, SecondarySpec
from xdnsd.server.update import ParsedUpdate, UpdatePlan, parse_update, plan_update
from xdnsd.stats import ProcessStats, stats_file
from xdnsd.store import Planner, Store, ZoneSnapshot

log = logging.getLogger("xdnsd.update")

_LENGTH = struct.Struct("!I")
_REPLY = struct.Struct("!QH")
_REQUEST_HEAD = struct.Struct("!QH")
MAX_FRAME = 1 << 20


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    request_id: int
    requester: Requester
    body: bytes  # the UPDATE message, TSIG removed


def encode_request(request: UpdateRequest) -> bytes:
    key = request.requester.key
    key_text = key.to_text().encode() if key is not None else b""
    address = str(request.requester.address).encode()
    payload = (
        _REQUEST_HEAD.pack(request.request_id, len(key_text))
        + key_text
        + bytes((len(address),))
        + address
        + request.body
    )
    return _LENGTH.pack(len(payload)) + payload


def decode_request(payload: bytes) -> UpdateRequest:
    request_id, key_len = _REQUEST_HEAD.unpack_from(payload)
    i = _REQUEST_HEAD.size
    key = _key_name(payload[i : i + key_len]) if key_len else None
    i += key_len
    address_len = payload[i]
    address = ipaddress.ip_address(payload[i + 1 : i + 1 + address_len].decode())
    body = payload[i + 1 + address_len :]
    return UpdateRequest(request_id, Requester(key, address), body)


_KEY_NAMES: dict[bytes, dns.name.Name] = {}


def _key_name(text: bytes) -> dns.name.Name:
    """Key names come from the config: few, and seen on every request."""
    name = _KEY_NAMES.get(text)
    if name is None:
        name = dns.name.from_text(text.decode())
        if len(_KEY_NAMES) < 10_000:
            _KEY_NAMES[text] = name
    return name


def encode_reply(request_id: int, rcode: int) -> bytes:
    return _LENGTH.pack(_REPLY.size) + _REPLY.pack(request_id, rcode)


def decode_reply(payload: bytes) -> tuple[int, int]:
    request_id, rcode = _REPLY.unpack(payload)
    return int(request_id), int(rcode)


# --------------------------------------------------------------------------- deciding


class UpdateProcessor:
    """Plans and commits batches of update requests against the store."""

    def __init__(self, store: Store, acls: Mapping[dns.name.Name, UpdateAcl]) -> None:
        self._store = store
        self._acls = acls
        self.batches = 0
        self.changes = 0

    def process(self, requests: Sequence[UpdateRequest]) -> list[int]:
        """The rcode of each request, after everything committed is synced."""
        rcodes = [int(dns.rcode.SERVFAIL)] * len(requests)
        planners: list[tuple[dns.name.Name, Planner]] = []
        plans: list[list[UpdatePlan]] = []
        indices = []
        for index, request in enumerate(requests):
            message = parse_update(request.body)
            if message is None or len(message.zone) != 1:
                rcodes[index] = dns.rcode.FORMERR
                continue
            zone = message.zone[0][0]
            acl = self._acls.get(zone, UpdateAcl())
            requester = request.requester
            if not acl.admits(requester):  # the worker checked; the config is the same here
                rcodes[index] = dns.rcode.REFUSED
                continue
            made: list[UpdatePlan] = []
            planners.append((zone, self._planner(message, zone, acl, requester, made)))
            plans.append(made)
            indices.append(index)
        if not planners:
            return rcodes
        try:
            outcomes = self._store.commit_batch(planners)
        except Exception:  # the transaction itself failed (disk, map): nothing landed
            log.exception("a batch of %d updates failed; none was applied", len(planners))
            return rcodes
        self.batches += 1
        self.changes += len(planners)
        for index, made, outcome in zip(indices, plans, outcomes, strict=True):
            if isinstance(outcome, Exception) or not made:
                continue  # SERVFAIL (commit_batch logged it)
            rcodes[index] = made[-1].rcode
            if isinstance(outcome, CommitResult) and outcome.applied and log.isEnabledFor(10):
                log.debug(
                    "update to zone %s by %s: serial %s -> %s",
                    outcome.zone,
                    requests[index].requester.provenance,
                    outcome.serial_from,
                    outcome.serial_to,
                )
        return rcodes

    @staticmethod
    def _planner(
        message: ParsedUpdate,
        zone: dns.name.Name,
        acl: UpdateAcl,
        requester: Requester,
        made: list[UpdatePlan],
    ) -> Planner:
        def permit(name: dns.name.Name, rdtype: int) -> bool:
            if acl.permits(requester, zone, name, rdtype):
                return True
            log.warning(
                "update refused by policy: zone %s, %s from %s, %s/%s",
                zone,
                requester.describe(),
                requester.address,
                name,
                dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype)),
            )
            return False

        def planner(view: ZoneSnapshot | None) -> Changeset | None:
            made.clear()  # a batch retried after growing the map plans again
            if view is None:  # the zone was dropped meanwhile
                made.append(UpdatePlan(dns.rcode.NOTAUTH, None))
                return None
            plan = plan_update(message, view, origin=requester.provenance, permit=permit)
            made.append(plan)
            return plan.changeset

        return planner


# --------------------------------------------------------------------------- the process


def serve_writer(
    processor: UpdateProcessor,
    connections: Sequence[socket.socket],
    should_stop: Callable[[], bool] | None = None,
    notifier: Notifier | None = None,
    tick: Callable[[], None] | None = None,
    secondaries: SecondaryKeeper | None = None,
) -> None:
    """Answer the workers' requests until every connection is closed or ``should_stop()``;
    send the NOTIFYs the commits call for; keep the secondary zones' timers and transfers.

    Whatever has been read is still committed and answered before returning.  A NOTIFY a worker
    passes on (a primary telling us about a secondary zone) is answered at once.
    """
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}
    for link in connections:
        link.setblocking(True)
        selector.register(link, selectors.EVENT_READ)
        buffers[link] = bytearray()
    notify_sockets = set(notifier.sockets.values()) if notifier is not None else set()
    for sock in notify_sockets:
        selector.register(sock, selectors.EVENT_READ)
    keeper_sockets = set(secondaries.sockets) if secondaries is not None else set()
    for sock in keeper_sockets:
        selector.register(sock, selectors.EVENT_READ)
    if notifier is not None:
        notifier.check()  # announce the serials we start with
    stop = should_stop or (lambda: False)
    scratch = bytearray(MAX_FRAME)
    scratch_view = memoryview(scratch)
    while buffers and not stop():
        batch: list[tuple[socket.socket, UpdateRequest]] = []
        timeout = 0.2 if notifier is None else min(0.2, notifier.timeout())
        if secondaries is not None:
            timeout = min(timeout, secondaries.timeout())
        for key, _events in selector.select(timeout=timeout):
            conn: Any = key.fileobj
            if conn in notify_sockets:
                assert notifier is not None
                notifier.readable(conn)
                continue
            if conn in keeper_sockets:
                assert secondaries is not None
                secondaries.readable(conn)
                continue
            try:
                count = conn.recv_into(scratch)  # no fresh megabyte allocated per read
            except OSError:
                count = 0
            if not count:  # the worker is gone
                selector.unregister(conn)
                conn.close()
                del buffers[conn]
                continue
            buffer = buffers[conn]
            buffer += scratch_view[:count]
            while len(buffer) >= 4:
                (length,) = _LENGTH.unpack_from(buffer)
                if length > MAX_FRAME:
                    log.error("writer: oversized frame from a worker; dropping that link")
                    buffer.clear()
                    break
                if len(buffer) < 4 + length:
                    break
                try:
                    request = decode_request(bytes(buffer[4 : 4 + length]))
                except Exception:
                    log.exception("writer: unreadable request from a worker")
                    del buffer[: 4 + length]
                    continue
                del buffer[: 4 + length]
                if len(request.body) > 2 and (request.body[2] >> 3) & 0xF == _NOTIFY:
                    rcode = _notified(secondaries, request)
                    with contextlib.suppress(OSError):
                        conn.sendall(encode_reply(request.request_id, rcode))
                    continue
                batch.append((conn, request))
        if batch:
            rcodes = processor.process([request for _conn, request in batch])
            for (conn, request), rcode in zip(batch, rcodes, strict=True):
                with contextlib.suppress(OSError):  # a worker that went away
                    conn.sendall(encode_reply(request.request_id, rcode))
            if notifier is not None:
                notifier.check()
        if secondaries is not None:
            secondaries.tick()
        if tick is not None:
            tick()  # e.g. the catalog zone following the zone list
        if notifier is not None:
            notifier.tick()
    selector.close()


_NOTIFY = int(dns.opcode.NOTIFY)


def _notified(secondaries: SecondaryKeeper | None, request: UpdateRequest) -> int:
    """The rcode for a NOTIFY a worker accepted (it checked the zone and the sender)."""
    if secondaries is None:
        return int(dns.rcode.NOTAUTH)
    try:
        message = dns.message.from_wire(request.body, keyring=False)
    except Exception:
        return int(dns.rcode.FORMERR)
    if len(message.question) != 1:
        return int(dns.rcode.FORMERR)
    zone = message.question[0].name
    serial = None
    for rrset in message.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == zone and len(rrset) == 1:
            serial = int(rrset[0].serial)
    return secondaries.notify(zone, serial, str(request.requester.address))


def run_writer_process(
    store: Store,
    acls: Mapping[dns.name.Name, UpdateAcl],
    connections: Sequence[socket.socket],
    notify: Mapping[dns.name.Name, NotifyTargets] | None = None,
    catalog: CatalogKeeper | None = None,
    secondaries: Mapping[dns.name.Name, SecondarySpec] | None = None,
    notify_sources: Mapping[int, str] | None = None,
) -> int:
    """The body of the writer process; SIGTERM / SIGINT end it after the batch in hand."""
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    processor = UpdateProcessor(store, acls)
    stats = ProcessStats(stats_file(store.path, "writer"))  # the NOTIFYs sent
    notifier = Notifier(store, notify or {}, sources=notify_sources, stats=stats)
    keeper = SecondaryKeeper(store, secondaries or {}, on_commit=notifier.check)

    def tick() -> None:
        if catalog is not None:
            catalog.tick()
        stats.maybe_flush(time.monotonic())

    try:
        serve_writer(
            processor,
            connections,
            lambda: stopping,
            notifier if notifier.enabled else None,
            tick,
            keeper if keeper.enabled else None,
        )
    finally:
        stats.flush()
        keeper.close()
        notifier.close()
        if processor.changes:
            log.info(
                "writer: %d updates decided in %d transactions",
                processor.changes,
                processor.batches,
            )
        store.close()
    return 0
