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
* **Status.** Each peer's state goes to the store (``sync_status``, ``peer/ID``): connected or
  not, since when, the last vectors it acknowledged, the changes it still lacks, the last
  error; ``xdnsd peers`` prints it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.name
from twisted.internet import protocol
from twisted.python.failure import Failure

from xdnsd.model import Changeset
from xdnsd.replication.session import (
    MAX_FRAME,
    AckReceived,
    Authenticated,
    ChangesReceived,
    Failed,
    PeerSession,
    VectorsReceived,
)
from xdnsd.store import NotReady, Store

log = logging.getLogger("xdnsd.replication")

POLL = 0.002  # seconds between looks for local changes to push (shared memory: cheap)
BATCH = 500  # changes per CHANGES frame (and never over half of MAX_FRAME)
STATUS_EVERY = 1.0  # seconds between status writes
VECTORS_EVERY = 2.0  # seconds between vector exchanges (anti-entropy: repairs a lost push)
RECONNECT_MAX = 30.0
STATUS_PREFIX = "peer/"


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
    # per zone: our history sequence up to which everything was looked at for this peer
    sent_sequence: dict[dns.name.Name, int] = field(default_factory=dict)
    error: str | None = None
    delay: float = 1.0  # next redial after this many seconds


class PeerConnection(protocol.Protocol):
    def __init__(self, replicator: Replicator, expect: str | None) -> None:
        self.replicator = replicator
        keys = {p.id: p.key for p in replicator.peers.values()}
        self.session = PeerSession(replicator.node_id, keys, expect=expect)
        self.expect = expect
        self.peer: PeerState | None = None

    def send(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(data)

    def close(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def connectionMade(self) -> None:
        self.send(self.session.hello())

    def dataReceived(self, data: bytes) -> None:
        events, reply = self.session.receive(data)
        if reply:
            self.send(reply)
        for event in events:
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
                    self.peer.acked = {z: dict(vv) for z, vv in event.vectors.items()}
                    self.replicator.send_missing(self.peer, event.vectors)
                elif isinstance(event, ChangesReceived):
                    self.replicator.receive(self.peer, event.changes)
                elif isinstance(event, AckReceived):
                    self.peer.acked = {z: dict(vv) for z, vv in event.vectors.items()}

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
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
    ) -> None:
        """``peers``: node id -> (host, port, key)."""
        self.store = store
        self.node_id = node_id
        self.reactor = reactor
        self.peers = {
            pid: PeerState(pid, host, port, key) for pid, (host, port, key) in peers.items()
        }
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
        log.info("peer %s connected", peer_id)
        connection.send(connection.session.vectors(self._vectors()))
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

    def _vectors(self) -> dict[dns.name.Name, dict[str, int]]:
        return {meta.name: dict(meta.vv) for meta in self.store.list_zones()}

    def send_missing(
        self, peer: PeerState, vectors: Mapping[dns.name.Name, Mapping[str, int]]
    ) -> None:
        """Send ``peer`` what its ``vectors`` lack, zone by zone, in batches."""
        # within one connection what was sent arrives (TCP): only raise what we know it has
        for zone, vv in vectors.items():
            known = peer.sent.setdefault(zone, {})
            for node, counter in vv.items():
                if counter > known.get(node, 0):
                    known[node] = counter
                    peer.sent_sequence.pop(zone, None)  # it got news from elsewhere: look again
        self._push(peer)

    def _push(self, peer: PeerState, own_only: bool = False) -> None:
        """Send ``peer`` the changes it lacks; with ``own_only``, only this node's (the push
        after a local commit: in a full mesh every origin pushes its own, and the changes
        that came from elsewhere reach a peer with the next vector exchange)."""
        connection = peer.connection
        if connection is None or not connection.session.open:
            return
        for meta in self.store.list_zones():
            known = peer.sent.setdefault(meta.name, {})
            if all(known.get(n, 0) >= c for n, c in meta.vv.items()):
                continue
            if own_only and known.get(self.node_id, 0) >= meta.vv.get(self.node_id, 0):
                continue
            with self.store.snapshot() as snap:
                after = peer.sent_sequence.get(meta.name, 0)
                changes = snap.encoded_changes_since(meta.name, known, after=after)
                if not own_only:  # everything up to here has been looked at for this peer
                    peer.sent_sequence[meta.name] = snap.sequence(meta.name)
            if own_only:
                changes = [(dot, raw) for dot, raw in changes if dot.node == self.node_id]
            for start in range(0, len(changes), BATCH):
                batch = changes[start : start + BATCH]
                frame = connection.session.changes(raw for _dot, raw in batch)
                if len(frame) > MAX_FRAME // 2 and len(batch) > 1:
                    for _dot, raw in batch:  # big changes: one per frame
                        connection.send(connection.session.changes([raw]))
                else:
                    connection.send(frame)
                for dot, _raw in batch:
                    known[dot.node] = max(known.get(dot.node, 0), dot.counter)

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
            outcomes = self.store.commit_batch(planners)
            for cs, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, NotReady):
                    self.waiting.append(cs)
                elif isinstance(outcome, Exception):
                    log.error("change %s from peer %s not applied: %s", cs.dot, peer.id, outcome)
                else:
                    progress = True
                    if outcome is not None and outcome.applied:
                        self.applied += 1
        connection = peer.connection
        if connection is not None and connection.session.open:
            connection.send(connection.session.ack(self._vectors()))

    # --- the loop -----------------------------------------------------------------------

    def _snapshot_generations(self) -> dict[int, int]:
        """The zones whose generation moved since the last look: read from the shared
        generation table (no LMDB transaction), the zone list only when it changed (slot 0)."""
        generations = self.store.generations
        zone_set = generations.get(0)
        if zone_set != self._zone_set:
            self._zone_set = zone_set
            self._zone_ids = [meta.zone_id for meta in self.store.list_zones()]
        changed = {}
        for zone_id in self._zone_ids:
            generation = generations.get(zone_id)
            if self._generations.get(zone_id) != generation:
                changed[zone_id] = generation
                self._generations[zone_id] = generation
        return changed

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
                vectors = self._vectors()
                for peer in self.peers.values():
                    if peer.connection is not None and peer.connection.session.open:
                        peer.connection.send(peer.connection.session.vectors(vectors))
            if now - self._last_status >= STATUS_EVERY:
                self._last_status = now
                self.write_status()
        except Exception:
            log.exception("replication poll failed")
        self.reactor.callLater(POLL, self._poll)

    def write_status(self) -> None:
        zones = {meta.name: meta.vv for meta in self.store.list_zones()}
        for peer in self.peers.values():
            lag = 0
            for zone, vv in zones.items():
                acked = peer.acked.get(zone, {})
                lag += sum(max(0, c - acked.get(n, 0)) for n, c in vv.items())
            self.store.put_status(
                STATUS_PREFIX + peer.id,
                {
                    "peer": peer.id,
                    "address": f"{peer.host}:{peer.port}",
                    "connected": peer.connection is not None and peer.connection.session.open,
                    "since": peer.since,
                    "acked": {z.to_text(): vv for z, vv in peer.acked.items()},
                    "lag": lag,
                    "error": peer.error,
                    "updated": time.time(),
                },
            )
