"""Replication between the nodes of a cluster: the Twisted side of ``session.PeerSession``.

It runs in a process of its own (``xdnsd serve`` starts it when ``[[peers]]`` are configured)
with its own handle on the store: changes from peers are committed there with ``Store.commit``
(LMDB's writer lock orders them with the writer process's), so they are journalled, served,
NOTIFYed (the writer's notifier polls serials) and logged like any other.

* **Connections.** Of two nodes, the one with the lower id dials (so a pair has one
  connection); it redials with backoff (1 s doubling to 30 s) whenever the connection is lost.
  Both sides listen on ``[node] peer_listen``.  A peer must authenticate (``session``) before
  anything about zones is exchanged.
* **Catch-up.** On connect each side sends its version vectors; each answers with the changes
  the other's vectors lack, in the order it applied them (``Snapshot.changes_since``), in
  batches.  A change whose dependencies are not in yet waits (``NotReady``) until they are.
* **Push.** Every ``POLL`` seconds the zones' generations are compared (shared memory, no
  transaction); a zone that changed sends this node's new changes to every connected peer (in
  a full mesh each origin pushes its own; what came from elsewhere goes with the next vector
  exchange, so a partial mesh converges too, within ``VECTORS_EVERY``).
* **Acknowledgements.** After applying a batch a node sends ACK with its vectors: what the peer
  may count as delivered (status, lag).  Every ``VECTORS_EVERY`` seconds the nodes exchange
  vectors again, which also repairs a push that was lost (anti-entropy by vectors).
* **State transfer.** A peer that lacks a zone, or lacks changes this node no longer has in
  its oplog (collected, or received inside a state), gets the zone's whole merge state in
  parts (``Snapshot.state_entries``, one read transaction) and merges it (``ChangeOp.STATE``).
* **Digests.** Every ``digest_every`` seconds, for each zone whose vector the peer reported
  equal to ours, the nodes exchange digests of what they serve (64 buckets by name); buckets
  that differ at equal vectors are asked for and merged as a union: divergence that vectors
  cannot see (a restored backup, a store changed behind xdnsd's back) is repaired.
* **Dropped zones.** A drop (``ChangeOp.DROP``) leaves a tombstone in the store
  (``model.ZoneTombstone``).  Every tombstone goes to every peer, as a DROP change, once per
  connection (and again while the peer still reports the dropped life of the zone), before
  anything of a later life of the zone: a peer that holds the zone drops it, one that never
  had it keeps the tombstone, so no state or change of the dropped life is accepted anywhere
  (the store discards them: ``Store._incarnation_gate``).  Vectors carry each zone's
  incarnation; a peer at another life of a zone than ours is not sent changes by its vector:
  an older life gets the drop and then our state, a newer one sends us its drop.
* **Tombstones.** A peer's acknowledged vector counts once this node has everything in it
  (it is *stable*: every change concurrent with what it covers is here); stable vectors are
  kept in the store (``cursors``).  Every ``gc_every`` seconds, deletes and oplog entries
  older than the retention and within every peer's stable vector are collected
  (``Store.collect_garbage``); a peer away longer than the retention is not waited for, and
  gets a state transfer when it returns.
* **Flow control.** Each connection is a push producer of its transport: when the peer reads
  slower than we send and the send buffer passes ``SEND_BUFFER``, pushing and state parts
  stop until it drains; changes waiting for dependencies are bounded (``WAITING_MAX``).
* **Status.** Each peer's state goes to the store (``sync_status``, ``peer/ID``): connected or
  not, since when, the last vectors it acknowledged, the changes it still lacks, the last
  error; ``xdnsd peers`` prints it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.name
from twisted.internet import interfaces, protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from xdnsd.model import ChangeOp, Changeset, StateTransfer
from xdnsd.replication.session import (
    MAX_FRAME,
    AckReceived,
    Authenticated,
    ChangesReceived,
    DigestReceived,
    Failed,
    PeerSession,
    StateReceived,
    StateRequested,
    VectorsReceived,
)
from xdnsd.store import NotReady, Store, StoreError

log = logging.getLogger("xdnsd.replication")

POLL = 0.02  # seconds between looks for local changes (the writer wakes us sooner: wake())
BATCH = 500  # changes per CHANGES frame (and never over half of MAX_FRAME)
STATUS_EVERY = 1.0  # seconds between status writes
VECTORS_EVERY = 2.0  # seconds between vector exchanges (anti-entropy: repairs a lost push)
RECONNECT_MAX = 30.0
STATUS_PREFIX = "peer/"
DIGEST_EVERY = 30.0  # seconds between digest exchanges
STATE_PART = 256 << 10  # bytes of entries per STATE frame
SEND_BUFFER = 1 << 20  # bytes queued to a peer before pushing pauses
WAITING_MAX = 100_000  # changes waiting for their dependencies, at most
ACK_EVERY = 0.05  # seconds between ACKs to one peer, at least


@dataclass
class PeerState:
    id: str
    host: str
    port: int
    key: bytes
    connection: PeerConnection | None = None
    since: float | None = None  # connected since (wall clock)
    acked: dict[dns.name.Name, dict[str, int]] = field(default_factory=dict)
    sent: dict[dns.name.Name, dict[str, int]] = field(default_factory=dict)
    # per zone: our history sequence up to which everything was looked at for this peer, and
    # up to which this node's own changes were (the push after a local commit)
    sent_sequence: dict[dns.name.Name, int] = field(default_factory=dict)
    own_sequence: dict[dns.name.Name, int] = field(default_factory=dict)
    error: str | None = None
    delay: float = 1.0  # next redial after this many seconds
    # on this connection: whether its vectors came in yet, and the zones they named
    vectors_in: bool = False
    reported: set[dns.name.Name] = field(default_factory=set)
    state_out: set[dns.name.Name] = field(default_factory=set)  # states being sent to it
    incoming: dict[dns.name.Name, list[tuple[int, bytes, bytes]]] = field(default_factory=dict)
    more: bool = False  # a push stopped by flow control: go on when the transport drains
    # the incarnation of each zone the peer last reported (VECTORS), and of its acked vectors
    incarnations: dict[dns.name.Name, int] = field(default_factory=dict)
    acked_inc: dict[dns.name.Name, int] = field(default_factory=dict)
    # on this connection: the tombstones sent (zone -> incarnation)
    drops_sent: dict[dns.name.Name, int] = field(default_factory=dict)
    # durable (``cursors``): the acknowledged vectors this node had everything of (and the
    # zone's incarnation they are of), and when the peer was last heard from
    stable: dict[dns.name.Name, dict[str, int]] = field(default_factory=dict)
    stable_inc: dict[dns.name.Name, int] = field(default_factory=dict)
    seen: float = 0.0
    last_ack: float = 0.0  # monotonic time of the last ACK sent
    ack_pending: bool = False


@implementer(interfaces.IPushProducer)
class PeerConnection(protocol.Protocol):
    def __init__(self, replicator: Replicator, expect: str | None) -> None:
        self.replicator = replicator
        keys = {p.id: p.key for p in replicator.peers.values()}
        self.session = PeerSession(replicator.node_id, keys, expect=expect)
        self.expect = expect
        self.peer: PeerState | None = None
        self.paused = False
        self.streams: deque[Iterator[bytes]] = deque()  # frames to send as the peer reads

    # flow control: the transport pauses us when its send buffer is full
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.pump()
        if self.peer is not None and self.peer.more and not self.paused:
            self.peer.more = False
            self.replicator._push(self.peer)

    def stopProducing(self) -> None:
        self.paused = True

    def pump(self) -> None:
        """Send queued frames (state parts) until they are done or the transport is full."""
        while self.streams and not self.paused:
            try:
                frame = next(self.streams[0])
            except StopIteration:
                self.streams.popleft()
                continue
            except Exception:
                self.streams.popleft()
                log.exception("building a state for peer %s failed", self.expect or "?")
                continue
            self.send(frame)

    def send(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(data)

    def close(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def connectionMade(self) -> None:
        transport: Any = self.transport
        # a change is a small frame sent as soon as it is committed: Nagle's algorithm would
        # hold it back until the previous one is acknowledged (up to the peer's delayed-ACK
        # timer, 40 ms on Linux)
        transport.setTcpNoDelay(True)
        transport.bufferSize = SEND_BUFFER
        transport.registerProducer(self, True)
        self.send(self.session.hello())

    def dataReceived(self, data: bytes) -> None:
        events, reply = self.session.receive(data)
        if reply:
            self.send(reply)
        # the changes of consecutive frames in one read are committed together (one sync)
        changes: list[Changeset] = []
        for event in events:
            if isinstance(event, ChangesReceived) and self.peer is not None:
                changes.extend(event.changes)
                continue
            if changes and self.peer is not None:
                self.replicator.receive(self.peer, tuple(changes))
                changes = []
            if isinstance(event, Failed):
                transport: Any = self.transport
                log.warning(
                    "peer connection with %s refused: %s", transport.getPeer(), event.reason
                )
                self.close()
                return
            if isinstance(event, Authenticated):
                self.peer = self.replicator.connected(event.peer, self)
            elif self.peer is not None:
                if isinstance(event, VectorsReceived):
                    self.replicator.acknowledged(self.peer, event.vectors, event.incarnations)
                    self.peer.vectors_in = True
                    self.replicator.send_missing(self.peer, event.vectors, event.incarnations)
                elif isinstance(event, AckReceived):
                    self.replicator.acknowledged(self.peer, event.vectors, event.incarnations)
                elif isinstance(event, StateReceived):
                    self.replicator.receive_state(self.peer, event)
                elif isinstance(event, StateRequested):
                    self.replicator.send_state(self.peer, event.zone, event.buckets, event.repair)
                elif isinstance(event, DigestReceived):
                    self.replicator.compare_digests(self.peer, event.digests)
        if changes and self.peer is not None:
            self.replicator.receive(self.peer, tuple(changes))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        for stream in self.streams:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # ends its read transaction
        self.streams.clear()
        if self.peer is not None:
            self.replicator.disconnected(self.peer, self, reason.getErrorMessage())
        elif self.expect is not None:  # our dial ended before the peer was authenticated
            self.replicator.redial(self.replicator.peers[self.expect], "not authenticated")


class _Dialer(protocol.ClientFactory):
    noisy = False

    def __init__(self, replicator: Replicator, peer: PeerState) -> None:
        self.replicator = replicator
        self.peer = peer

    def buildProtocol(self, addr: Any) -> PeerConnection:
        return PeerConnection(self.replicator, self.peer.id)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.replicator.redial(self.peer, reason.getErrorMessage())


class _Listener(protocol.Factory):
    noisy = False

    def __init__(self, replicator: Replicator) -> None:
        self.replicator = replicator

    def buildProtocol(self, addr: Any) -> PeerConnection:
        return PeerConnection(self.replicator, None)


def _given(cs: Changeset) -> Any:
    """A planner (``Store.commit_batch``) that commits ``cs`` as it is."""
    return lambda view: cs


class Replicator:
    def __init__(
        self,
        store: Store,
        node_id: str,
        peers: Mapping[str, tuple[str, int, bytes]],
        reactor: Any,
        retention: float = 7 * 86400.0,
        digest_every: float = DIGEST_EVERY,
    ) -> None:
        """``peers``: node id -> (host, port, key); ``retention``: seconds a delete is kept
        after every peer has it (config ``[node] tombstone_retention``)."""
        self.store = store
        self.node_id = node_id
        self.reactor = reactor
        self.retention = retention
        self.gc_every = min(max(retention / 4, 1.0), 600.0)
        self.digest_every = digest_every
        self.peers = {
            pid: PeerState(pid, host, port, key) for pid, (host, port, key) in peers.items()
        }
        started = time.time()
        cursors = store.statuses(STATUS_PREFIX, table="cursors")
        for peer in self.peers.values():
            doc = cursors.get(STATUS_PREFIX + peer.id, {})
            peer.seen = float(doc.get("seen", started))
            peer.stable = {
                dns.name.from_text(z): {str(n): int(c) for n, c in vv.items()}
                for z, vv in doc.get("stable", {}).items()
            }
            peer.stable_inc = {
                dns.name.from_text(z): int(n) for z, n in doc.get("stable_incarnations", {}).items()
            }
        self._last_gc = started
        self._last_digests = started
        self._digests: dict[int, tuple[int, tuple[dict[str, int], list[int]]]] = {}
        self._generations: dict[int, int] = {}
        self.waiting: list[Changeset] = []  # changes from peers whose dependencies are not in
        self._zone_set = -1
        self._zone_ids: list[int] = []
        self._last_status = 0.0
        self._last_vectors = time.time()
        self.applied = 0

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, listen: tuple[str, int] | None) -> Any:
        port = None
        if listen is not None:
            port = self.reactor.listenTCP(listen[1], _Listener(self), interface=listen[0])
        for peer in self.peers.values():
            if self.node_id < peer.id:
                self._dial(peer)
        self._snapshot_generations()
        self._poll()
        return port

    def _dial(self, peer: PeerState) -> None:
        self.reactor.connectTCP(peer.host, peer.port, _Dialer(self, peer), timeout=5)

    def redial(self, peer: PeerState, why: str) -> None:
        if peer.error != why:
            log.info("peer %s at %s:%d: %s; retrying", peer.id, peer.host, peer.port, why)
        peer.error = why
        delay, peer.delay = peer.delay, min(peer.delay * 2, RECONNECT_MAX)
        self.reactor.callLater(delay, self._dial, peer)

    def connected(self, peer_id: str, connection: PeerConnection) -> PeerState:
        peer = self.peers[peer_id]
        if peer.connection is not None and peer.connection is not connection:
            peer.connection.close()
        peer.connection = connection
        peer.since = time.time()
        peer.delay = 1.0
        peer.error = None
        peer.sent = {}
        peer.sent_sequence = {}
        peer.own_sequence = {}
        peer.vectors_in = False
        peer.reported = set()
        peer.incarnations = {}
        peer.drops_sent = {}
        peer.state_out = set()
        peer.incoming = {}
        peer.more = False
        peer.seen = time.time()
        log.info("peer %s connected", peer_id)
        connection.send(connection.session.vectors(*self._vectors()))
        return peer

    def disconnected(self, peer: PeerState, connection: PeerConnection, why: str) -> None:
        if peer.connection is not connection:
            return
        peer.connection = None
        peer.since = None
        peer.error = why
        log.warning("peer %s disconnected: %s", peer.id, why)
        if self.node_id < peer.id:
            self.redial(peer, why)

    # --- changes ------------------------------------------------------------------------

    def _vectors(self) -> tuple[dict[dns.name.Name, dict[str, int]], dict[dns.name.Name, int]]:
        """The zones' version vectors, and the incarnation of each (those above 0)."""
        metas = self.store.list_zones()
        vectors = {meta.name: dict(meta.vv) for meta in metas}
        return vectors, {meta.name: meta.incarnation for meta in metas if meta.incarnation}

    def send_missing(
        self,
        peer: PeerState,
        vectors: Mapping[dns.name.Name, Mapping[str, int]],
        incarnations: Mapping[dns.name.Name, int] | None = None,
    ) -> None:
        """Send ``peer`` what its ``vectors`` lack, zone by zone, in batches."""
        incarnations = incarnations or {}
        mine = {meta.name: meta.incarnation for meta in self.store.list_zones()}
        dropped = {tomb.zone: tomb.incarnation for tomb in self.store.dropped_zones()}
        peer.incarnations = {zone: incarnations.get(zone, 0) for zone in vectors}
        peer.reported = set()
        for zone, vv in vectors.items():
            theirs = peer.incarnations[zone]
            if theirs <= dropped.get(zone, -1):
                peer.drops_sent.pop(zone, None)  # it still has a dropped life: the drop again
            ours = mine.get(zone)
            if ours is not None and ours != theirs:
                # another life of the zone than ours: its vector says nothing of our changes
                # (an older one gets the drop, then our state; a newer one sends its drop)
                peer.sent.pop(zone, None)
                peer.sent_sequence.pop(zone, None)
                peer.own_sequence.pop(zone, None)
                continue
            peer.reported.add(zone)
            # within one connection what was sent arrives (TCP): only raise what we know it
            # has (what was looked at before, up to sent_sequence, was sent or known: still so)
            known = peer.sent.setdefault(zone, {})
            for node, counter in vv.items():
                known[node] = max(known.get(node, 0), counter)
        self._push(peer)

    def _send_drops(self, peer: PeerState, connection: PeerConnection) -> None:
        """The tombstones this connection has not carried yet, as DROP changes: before
        anything of a later life of their zones."""
        drops = []
        for tomb in self.store.dropped_zones():
            if peer.drops_sent.get(tomb.zone, -1) >= tomb.incarnation:
                continue
            if peer.incarnations.get(tomb.zone, -1) > tomb.incarnation:
                continue  # it has a later life of the zone: it had the drop
            drops.append(tomb.changeset())
            peer.drops_sent[tomb.zone] = tomb.incarnation
        for start in range(0, len(drops), BATCH):
            connection.send(connection.session.changes(drops[start : start + BATCH]))

    def _push(self, peer: PeerState, own_only: bool = False) -> None:
        """Send ``peer`` the changes it lacks; with ``own_only``, only this node's (the push
        after a local commit: in a full mesh every origin pushes its own, and the changes
        that came from elsewhere reach a peer with the next vector exchange).  A zone it
        lacks, or lacks changes of that the oplog no longer holds, goes as a state."""
        connection = peer.connection
        if connection is None or not connection.session.open or not peer.vectors_in:
            return
        self._send_drops(peer, connection)
        for meta in self.store.list_zones():
            zone = meta.name
            if connection.paused:
                peer.more = True  # go on when the peer has read what is queued
                return
            if zone in peer.state_out:
                continue
            if peer.incarnations.get(zone, -1) > meta.incarnation:
                continue  # the peer has a later life of the zone: ours goes with its drop
            known = peer.sent.setdefault(zone, {})
            if all(known.get(n, 0) >= c for n, c in meta.vv.items()):
                continue
            if own_only and known.get(self.node_id, 0) >= meta.vv.get(self.node_id, 0):
                continue
            with self.store.snapshot() as snap:
                try:
                    whole = zone not in peer.reported or snap.oplog_gap(zone, known)
                    if not whole:
                        after = peer.sent_sequence.get(zone, 0)
                        if own_only:
                            after = max(after, peer.own_sequence.get(zone, 0))
                        changes = snap.encoded_changes_since(zone, known, after=after)
                        sequence = snap.sequence(zone)
                except StoreError:
                    continue  # dropped meanwhile
            if whole:
                self.send_state(peer, zone, None, repair=False)
                continue
            if own_only:
                changes = [(dot, raw) for dot, raw in changes if dot.node == self.node_id]
            for start in range(0, len(changes), BATCH):
                if connection.paused:
                    peer.more = True
                    return
                batch = changes[start : start + BATCH]
                frame = connection.session.changes(raw for _dot, raw in batch)
                if len(frame) > MAX_FRAME // 2 and len(batch) > 1:
                    for _dot, raw in batch:  # big changes: one per frame
                        connection.send(connection.session.changes([raw]))
                else:
                    connection.send(frame)
                for dot, _raw in batch:
                    known[dot.node] = max(known.get(dot.node, 0), dot.counter)
            if not own_only:  # everything up to here has been looked at for this peer
                peer.sent_sequence[zone] = sequence
            peer.own_sequence[zone] = sequence

    def send_state(
        self,
        peer: PeerState,
        zone: dns.name.Name,
        buckets: frozenset[int] | None,
        repair: bool,
    ) -> None:
        """Queue the zone's state (or the names in ``buckets``) for ``peer``: sent in parts
        as fast as it reads them."""
        connection = peer.connection
        if connection is None or not connection.session.open or zone in peer.state_out:
            return
        peer.state_out.add(zone)
        connection.streams.append(self._state_parts(peer, connection, zone, buckets, repair))
        connection.pump()

    def _state_parts(
        self,
        peer: PeerState,
        connection: PeerConnection,
        zone: dns.name.Name,
        buckets: frozenset[int] | None,
        repair: bool,
    ) -> Iterator[bytes]:
        session = connection.session
        count = 0
        try:
            with self.store.snapshot() as snap:  # one version, however long the peer takes
                try:
                    meta, entries = snap.state_entries(zone, buckets)
                except StoreError:
                    return
                vv = dict(meta.vv)
                part: list[tuple[int, bytes, bytes]] = []
                size = 0
                for entry in entries:
                    part.append(entry)
                    count += 1
                    size += len(entry[1]) + len(entry[2]) + 7
                    if size >= STATE_PART:
                        yield session.state(
                            zone,
                            vv,
                            meta.serial_base,
                            repair,
                            buckets,
                            part,
                            False,
                            meta.incarnation,
                        )
                        part, size = [], 0
                yield session.state(
                    zone, vv, meta.serial_base, repair, buckets, part, True, meta.incarnation
                )
            if not repair:  # it has all of it now (TCP): as if every change had been sent
                known = peer.sent.setdefault(zone, {})
                for node, counter in vv.items():
                    known[node] = max(known.get(node, 0), counter)
                peer.reported.add(zone)
            log.info(
                "sent the %s of zone %s to peer %s: %d entries",
                "state" if buckets is None else f"{len(buckets)} bucket(s)",
                zone,
                peer.id,
                count,
            )
        finally:
            peer.state_out.discard(zone)

    def receive_state(self, peer: PeerState, part: StateReceived) -> None:
        """Collect a state's parts; merge it (one commit) when the last is in."""
        entries = peer.incoming.setdefault(part.zone, [])
        entries.extend(part.entries)
        if not part.last:
            return
        del peer.incoming[part.zone]
        transfer = StateTransfer(
            dict(part.vv),
            part.serial_base,
            tuple(entries),
            part.repair,
            part.buckets,
            part.incarnation,
        )
        cs = Changeset(part.zone, origin=f"peer:{peer.id}", op=ChangeOp.STATE, state=transfer)
        started = time.monotonic()
        (outcome,) = self.store.commit_batch([(part.zone, _given(cs))])
        if isinstance(outcome, NotReady):
            log.info(
                "state of zone %s from peer %s not merged yet: %s", part.zone, peer.id, outcome
            )
        elif isinstance(outcome, Exception):
            log.error("state of zone %s from peer %s not merged: %s", part.zone, peer.id, outcome)
        elif outcome is not None and not outcome.applied and part.zone not in self._live():
            pass  # a state of a dropped zone (the store logged it); the peer gets the drop
        else:
            log.info(
                "merged the %s of zone %s from peer %s: %d entries in %.2f s",
                "state" if part.buckets is None else f"{len(part.buckets)} repaired bucket(s)",
                part.zone,
                peer.id,
                len(entries),
                time.monotonic() - started,
            )
        self.receive(peer, ())  # what waited for changes inside the state, and the ACK

    def _live(self) -> set[dns.name.Name]:
        return {meta.name for meta in self.store.list_zones()}

    def acknowledged(
        self,
        peer: PeerState,
        vectors: Mapping[dns.name.Name, Mapping[str, int]],
        incarnations: Mapping[dns.name.Name, int] | None = None,
    ) -> None:
        """A peer's vectors (ACK or VECTORS): its lag, and what may be collected."""
        incarnations = incarnations or {}
        peer.acked = {z: dict(vv) for z, vv in vectors.items()}
        peer.acked_inc = {z: incarnations.get(z, 0) for z in vectors}
        peer.seen = time.time()
        metas = {meta.name: meta for meta in self.store.list_zones()}
        for zone, vv in vectors.items():
            meta = metas.get(zone)
            if meta is None or peer.acked_inc[zone] != meta.incarnation:
                continue  # another life of the zone: its vector is not of ours
            if peer.stable_inc.get(zone, 0) != meta.incarnation:
                peer.stable[zone] = {}  # what it had of an earlier life counts no more
                peer.stable_inc[zone] = meta.incarnation
            own = meta.vv
            if all(own.get(n, 0) >= c for n, c in vv.items()):
                stable = peer.stable.setdefault(zone, {})
                for node, counter in vv.items():
                    stable[node] = max(stable.get(node, 0), counter)

    # --- anti-entropy by digest ------------------------------------------------------------

    def _digest(self, zone_id: int, generation: int, zone: dns.name.Name) -> Any:
        cached = self._digests.get(zone_id)
        if cached is not None and cached[0] == generation:
            return cached[1]
        with self.store.snapshot() as snap:
            digest = snap.digest(zone)
        self._digests[zone_id] = (generation, digest)
        return digest

    def send_digests(self, peer: PeerState) -> None:
        """Digests of the zones whose vector the peer last reported equal to ours."""
        connection = peer.connection
        if connection is None or not connection.session.open or connection.paused:
            return
        digests = {}
        for meta in self.store.list_zones():
            same_life = peer.acked_inc.get(meta.name, 0) == meta.incarnation
            if same_life and peer.acked.get(meta.name) == meta.vv:
                digest = self._digest(meta.zone_id, meta.generation, meta.name)
                if digest[0] == meta.vv:
                    digests[meta.name] = digest
        if digests:
            connection.send(connection.session.digests(digests))

    def compare_digests(
        self, peer: PeerState, digests: Mapping[dns.name.Name, tuple[dict[str, int], list[int]]]
    ) -> None:
        """A zone at the same vector on both nodes must serve the same: ask the peer for the
        names in the buckets that differ, to merge as a union."""
        connection = peer.connection
        if connection is None or not connection.session.open:
            return
        zones = {meta.name: meta for meta in self.store.list_zones()}
        for zone, (vv, buckets) in digests.items():
            meta = zones.get(zone)
            if meta is None or meta.vv != vv:
                continue
            if peer.incarnations.get(zone, 0) != meta.incarnation:
                continue  # another life of the zone
            mine = self._digest(meta.zone_id, meta.generation, zone)
            if mine[0] != vv or len(mine[1]) != len(buckets):
                continue
            differ = frozenset(
                i for i, (a, b) in enumerate(zip(mine[1], buckets, strict=True)) if a != b
            )
            if differ:
                log.warning(
                    "zone %s: peer %s serves different data at the same version vector "
                    "(%d of %d digest buckets differ); asking for them to repair",
                    zone,
                    peer.id,
                    len(differ),
                    len(buckets),
                )
                connection.send(connection.session.state_request(zone, differ, True))

    # --- tombstones ---------------------------------------------------------------------

    def collect(self, now: float | None = None) -> dict[str, int]:
        """Collect deletes and oplog entries every peer has and the retention has passed."""
        now = time.time() if now is None else now
        total: dict[str, int] = {}
        for meta in self.store.list_zones():
            horizon = dict(meta.vv)
            for peer in self.peers.values():
                connected = peer.connection is not None and peer.connection.session.open
                if not connected and now - peer.seen > self.retention:
                    continue  # away too long: not waited for; it gets a state when back
                theirs = peer.stable.get(meta.name, {})
                if peer.stable_inc.get(meta.name, 0) != meta.incarnation:
                    theirs = {}  # acknowledged of an earlier life of the zone
                for node in horizon:
                    horizon[node] = min(horizon[node], theirs.get(node, 0))
            if not any(horizon.values()):
                continue
            counts = self.store.collect_garbage(
                meta.name, horizon, int((now - self.retention) * 1000)
            )
            if any(counts.values()):
                log.info(
                    "zone %s: collected %s",
                    meta.name,
                    ", ".join(f"{n} {k}" for k, n in counts.items() if n),
                )
            for kind, n in counts.items():
                total[kind] = total.get(kind, 0) + n
        return total

    def receive(self, peer: PeerState, changes: tuple[Changeset, ...]) -> None:
        """Commit what a peer sent, in one transaction per pass (one sync for many changes).
        A change that must wait for others (from any peer) waits in ``self.waiting``, which
        every pass tries again: its dependencies may come over another link."""
        self.waiting.extend(changes)
        progress = True
        while progress and self.waiting:
            progress = False
            batch, self.waiting = self.waiting, []
            planners = [(cs.zone, _given(cs)) for cs in batch]
            outcomes = self.store.commit_batch(planners) if planners else []
            for cs, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, NotReady):
                    self.waiting.append(cs)
                elif isinstance(outcome, Exception):
                    log.error("change %s from peer %s not applied: %s", cs.dot, peer.id, outcome)
                else:
                    progress = True
                    if outcome is not None and outcome.applied:
                        self.applied += 1
        if len(self.waiting) > WAITING_MAX:
            # bounded: drop what came from this peer and start its connection over; what it
            # sent is sent again after the vector exchange of the new connection
            log.warning(
                "%d changes wait for others; dropping peer %s's and reconnecting",
                len(self.waiting),
                peer.id,
            )
            self.waiting = [cs for cs in self.waiting if cs.origin != f"peer:{peer.id}"][
                :WAITING_MAX
            ]
            if peer.connection is not None:
                peer.connection.close()
            return
        self._ack_soon(peer)

    def _ack_soon(self, peer: PeerState) -> None:
        """Acknowledge what is applied: at once, or at most every ``ACK_EVERY`` seconds
        under a stream of changes (one ACK then covers many)."""
        if peer.ack_pending:
            return
        wait = peer.last_ack + ACK_EVERY - time.monotonic()
        if wait > 0:
            peer.ack_pending = True
            self.reactor.callLater(wait, self._ack, peer)
        else:
            self._ack(peer)

    def _ack(self, peer: PeerState) -> None:
        peer.ack_pending = False
        peer.last_ack = time.monotonic()
        connection = peer.connection
        if connection is not None and connection.session.open:
            connection.send(connection.session.ack(*self._vectors()))

    # --- the loop -----------------------------------------------------------------------

    def _snapshot_generations(self) -> dict[int, int]:
        """The zones whose generation moved since the last look: read from the shared
        generation table (no LMDB transaction), the zone list only when it changed (slot 0)."""
        generations = self.store.generations
        zone_set = generations.get(0)
        changed = {}
        if zone_set != self._zone_set:
            self._zone_set = zone_set
            self._zone_ids = [meta.zone_id for meta in self.store.list_zones()]
            changed[0] = zone_set  # a zone created or dropped: push (a drop has no zone left)
        for zone_id in self._zone_ids:
            generation = generations.get(zone_id)
            if self._generations.get(zone_id) != generation:
                changed[zone_id] = generation
                self._generations[zone_id] = generation
        return changed

    def wake(self) -> None:
        """The writer committed (``WakeReader``): push this node's new changes now."""
        try:
            if self._snapshot_generations():
                self._push_changed()
        except Exception:
            log.exception("replication push failed")

    def _push_changed(self) -> None:
        for peer in self.peers.values():
            self._push(peer, own_only=True)

    def _poll(self) -> None:
        try:
            if self._snapshot_generations():
                self._push_changed()
            now = time.time()
            if now - self._last_vectors >= VECTORS_EVERY:
                self._last_vectors = now
                vectors, incarnations = self._vectors()
                for peer in self.peers.values():
                    if peer.connection is not None and peer.connection.session.open:
                        session = peer.connection.session
                        peer.connection.send(session.vectors(vectors, incarnations))
            if now - self._last_digests >= self.digest_every:
                self._last_digests = now
                for peer in self.peers.values():
                    self.send_digests(peer)
            if now - self._last_gc >= self.gc_every:
                self._last_gc = now
                self.collect(now)
            if now - self._last_status >= STATUS_EVERY:
                self._last_status = now
                self.write_status()
        except Exception:
            log.exception("replication poll failed")
        self.reactor.callLater(POLL, self._poll)

    def write_status(self) -> None:
        """Every peer's status (``sync_status``) and cursor (``cursors``): one transaction."""
        metas = self.store.list_zones()
        docs: list[tuple[str, dict[str, Any], str]] = []
        for peer in self.peers.values():
            lag = 0
            for meta in metas:
                zone, vv = meta.name, meta.vv
                acked = peer.acked.get(zone, {})
                if peer.acked_inc.get(zone, 0) != meta.incarnation:
                    acked = {}
                lag += sum(max(0, c - acked.get(n, 0)) for n, c in vv.items())
            docs.append(
                (
                    STATUS_PREFIX + peer.id,
                    {
                        "peer": peer.id,
                        "address": f"{peer.host}:{peer.port}",
                        "connected": peer.connection is not None and peer.connection.session.open,
                        # it reads slower than we send: sending waits for it (flow control)
                        "send_paused": peer.connection is not None and peer.connection.paused,
                        "since": peer.since,
                        "acked": {z.to_text(): vv for z, vv in peer.acked.items()},
                        "lag": lag,
                        "error": peer.error,
                        "updated": time.time(),
                    },
                    "sync_status",
                )
            )
            docs.append(
                (
                    STATUS_PREFIX + peer.id,
                    {
                        "seen": peer.seen,
                        "stable": {z.to_text(): vv for z, vv in peer.stable.items()},
                        "stable_incarnations": {
                            z.to_text(): n for z, n in peer.stable_inc.items() if n
                        },
                    },
                    "cursors",
                )
            )
        self.store.put_statuses(docs)


@implementer(interfaces.IReadDescriptor)
class WakeReader:
    """The replication end of a datagram socket pair whose other end the writer process
    writes a byte to after each commit (``wake_on_commit``): no polling delay for a push."""

    def __init__(self, sock: Any, replicator: Replicator) -> None:
        self.sock = sock
        self.replicator = replicator
        sock.setblocking(False)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def logPrefix(self) -> str:
        return "replication-wake"

    def doRead(self) -> None:
        try:
            while self.sock.recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self.replicator.wake()

    def connectionLost(self, reason: Failure) -> None:
        self.sock.close()


def wake_on_commit(store: Store, sock: Any) -> None:
    """In the writer process: after each commit, wake the replication process (``sock``:
    the writer's end of the pair; a full socket means a wake-up is pending already)."""
    sock.setblocking(False)

    def listener(result: Any, cs: Changeset) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending already
            sock.send(b"!")

    store.add_listener(listener)
