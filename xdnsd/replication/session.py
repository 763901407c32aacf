"""The peer protocol between two xdnsd nodes, sans-I/O (bytes in, events and bytes out).

A connection carries length-prefixed frames: a 4-byte length, a 1-byte type, the payload.
Both sides start with HELLO (protocol version, node id, a random nonce), then prove that they
hold the key configured for the other (AUTH: HMAC-SHA256 over both nonces and both ids, the
prover's id first, so a proof cannot be reflected back), and only then exchange anything about
zones:

``VECTORS``  the zones a node holds and the version vector of each (on connect, and whenever
             asked), with the incarnation of each zone re-created after a drop (under the
             key ``!incarnations``, which no zone name can be; absent: all are 0): the other
             side answers with the changes the vector lacks;
``CHANGES``  changesets (``model.encode_changeset``), in the order to apply them; a dropped
             zone's tombstone goes as a ``ChangeOp.DROP`` change (``ZoneTombstone.changeset``);
``ACK``      the version vectors a node has now applied (lag, and when tombstones may go).
``STATE``    a zone's whole merge state (``model.StateTransfer``) in parts, for a node the
             changes cannot bring up to date (new, or missing changes collected since);
``DIGEST``   per zone, the vector and a digest of what is served, in buckets by name (every
             ``DIGEST_EVERY``): a node at the same vector whose buckets differ asks for them
             with ``STATE_REQUEST`` and merges them as a union (anti-entropy beyond vectors).

An unknown node id, a wrong proof, an unexpected frame or a frame over ``MAX_FRAME`` ends the
session (``Failed``) before the peer has learned anything but our node id; the transport then
closes the connection.  The transport (Twisted) only moves bytes and runs timers.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.name

from xdnsd.model import STATE_KINDS, Changeset, decode_changeset, encode_changeset

PROTOCOL = 1
MAX_FRAME = 16 << 20
_HEAD = struct.Struct("!IB")
_PROOF_LABEL = b"xdnsd peer auth v1"


class Frame(enum.IntEnum):
    HELLO = 1
    AUTH = 2
    VECTORS = 3
    CHANGES = 4
    ACK = 5
    DIGEST = 6
    STATE_REQUEST = 7
    STATE = 8


Vectors = dict[dns.name.Name, dict[str, int]]


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authenticated:
    peer: str


@dataclass(frozen=True, slots=True)
class VectorsReceived:
    vectors: Vectors
    incarnations: dict[dns.name.Name, int] = field(default_factory=dict)  # only those > 0


@dataclass(frozen=True, slots=True)
class ChangesReceived:
    changes: tuple[Changeset, ...]


@dataclass(frozen=True, slots=True)
class AckReceived:
    vectors: Vectors
    incarnations: dict[dns.name.Name, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DigestReceived:
    digests: dict[dns.name.Name, tuple[dict[str, int], list[int]]]


@dataclass(frozen=True, slots=True)
class StateRequested:
    zone: dns.name.Name
    buckets: frozenset[int] | None
    repair: bool


@dataclass(frozen=True, slots=True)
class StateReceived:
    """One part of a zone's state; ``last`` ends it.  Every part repeats the header."""

    zone: dns.name.Name
    vv: dict[str, int]
    serial_base: int
    repair: bool
    buckets: frozenset[int] | None
    entries: list[tuple[int, bytes, bytes]]
    last: bool
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str  # for our log; the peer is told nothing


Event = (
    Authenticated
    | VectorsReceived
    | ChangesReceived
    | AckReceived
    | DigestReceived
    | StateRequested
    | StateReceived
    | Failed
)
_ENTRY = struct.Struct("!BHI")  # kind, key length, value length


class _State(enum.Enum):
    HELLO = "waiting for the peer's hello"
    AUTH = "waiting for the peer's proof"
    OPEN = "open"
    CLOSED = "closed"


def _frame(kind: Frame, payload: bytes) -> bytes:
    return _HEAD.pack(len(payload) + 1, kind) + payload


_INCARNATIONS = "!incarnations"  # not a zone's text (those end with a dot)


def _vectors_json(
    vectors: Mapping[dns.name.Name, Mapping[str, int]],
    incarnations: Mapping[dns.name.Name, int] | None = None,
) -> bytes:
    body: dict[str, Any] = {zone.to_text(): dict(vv) for zone, vv in vectors.items()}
    lives = {zone.to_text(): n for zone, n in (incarnations or {}).items() if n}
    if lives:
        body[_INCARNATIONS] = lives
    return json.dumps(body, sort_keys=True).encode()


def _vectors_from(payload: bytes) -> Vectors:
    return _vectors_and_incarnations(payload)[0]


def _vectors_and_incarnations(payload: bytes) -> tuple[Vectors, dict[dns.name.Name, int]]:
    raw = json.loads(payload)
    if not isinstance(raw, dict):
        raise ValueError("vectors: not an object")
    lives = raw.pop(_INCARNATIONS, {})
    if not isinstance(lives, dict) or not all(
        isinstance(n, int) and n >= 0 for n in lives.values()
    ):
        raise ValueError("vectors: bad incarnations")
    incarnations = {dns.name.from_text(zone): int(n) for zone, n in lives.items()}
    out: Vectors = {}
    for zone, vv in raw.items():
        if not isinstance(vv, dict) or not all(
            isinstance(n, str) and isinstance(c, int) and c >= 0 for n, c in vv.items()
        ):
            raise ValueError("vectors: bad version vector")
        out[dns.name.from_text(zone)] = dict(vv)
    return out, incarnations


class PeerSession:
    """One connection's protocol state.  ``keys``: node id -> shared key of each peer allowed
    to talk to us; ``expect``: the peer we dialled (None when it dialled us)."""

    def __init__(
        self,
        node_id: str,
        keys: Mapping[str, bytes],
        expect: str | None = None,
        nonce: Callable[[], bytes] = lambda: os.urandom(16),
    ) -> None:
        self.node_id = node_id
        self._keys = keys
        self._expect = expect
        self._nonce = nonce()
        self._peer_nonce = b""
        self.peer: str | None = None
        self._state = _State.HELLO
        self._buffer = bytearray()

    @property
    def open(self) -> bool:
        return self._state is _State.OPEN

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def hello(self) -> bytes:
        """The first bytes to send, by both sides, as soon as the connection is up."""
        body = struct.pack("!HB", PROTOCOL, len(self.node_id)) + self.node_id.encode()
        return _frame(Frame.HELLO, body + self._nonce)

    # --- outgoing, once open ----------------------------------------------------------

    def vectors(
        self,
        vectors: Mapping[dns.name.Name, Mapping[str, int]],
        incarnations: Mapping[dns.name.Name, int] | None = None,
    ) -> bytes:
        self._require_open()
        return _frame(Frame.VECTORS, _vectors_json(vectors, incarnations))

    def changes(self, changes: Iterable[Changeset | bytes]) -> bytes:
        """One CHANGES frame of changesets (or changesets already encoded, as the store keeps
        them); the caller keeps batches under ``MAX_FRAME``."""
        self._require_open()
        parts = []
        for cs in changes:
            encoded = cs if isinstance(cs, bytes) else encode_changeset(cs)
            parts.append(struct.pack("!I", len(encoded)) + encoded)
        return _frame(Frame.CHANGES, b"".join(parts))

    def ack(
        self,
        vectors: Mapping[dns.name.Name, Mapping[str, int]],
        incarnations: Mapping[dns.name.Name, int] | None = None,
    ) -> bytes:
        self._require_open()
        return _frame(Frame.ACK, _vectors_json(vectors, incarnations))

    def digests(
        self, digests: Mapping[dns.name.Name, tuple[Mapping[str, int], list[int]]]
    ) -> bytes:
        self._require_open()
        body = {
            zone.to_text(): {"vv": dict(vv), "buckets": [f"{b:016x}" for b in buckets]}
            for zone, (vv, buckets) in digests.items()
        }
        return _frame(Frame.DIGEST, json.dumps(body, sort_keys=True).encode())

    def state_request(
        self, zone: dns.name.Name, buckets: frozenset[int] | None, repair: bool
    ) -> bytes:
        self._require_open()
        body = {
            "zone": zone.to_text(),
            "buckets": None if buckets is None else sorted(buckets),
            "repair": repair,
        }
        return _frame(Frame.STATE_REQUEST, json.dumps(body).encode())

    def state(
        self,
        zone: dns.name.Name,
        vv: Mapping[str, int],
        serial_base: int,
        repair: bool,
        buckets: frozenset[int] | None,
        entries: Iterable[tuple[int, bytes, bytes]],
        last: bool,
        incarnation: int = 0,
    ) -> bytes:
        """One part of a zone's state; the caller keeps parts well under ``MAX_FRAME``."""
        self._require_open()
        fields: dict[str, Any] = {
            "zone": zone.to_text(),
            "vv": dict(vv),
            "serial_base": serial_base,
            "repair": repair,
            "buckets": None if buckets is None else sorted(buckets),
            "last": last,
        }
        if incarnation:
            fields["incarnation"] = incarnation
        head = json.dumps(fields).encode()
        parts = [struct.pack("!I", len(head)), head]
        for kind, key, value in entries:
            parts += (_ENTRY.pack(kind, len(key), len(value)), key, value)
        return _frame(Frame.STATE, b"".join(parts))

    def _require_open(self) -> None:
        if self._state is not _State.OPEN:
            raise RuntimeError(f"peer session is not open ({self._state.value})")

    # --- incoming -----------------------------------------------------------------------

    def receive(self, data: bytes) -> tuple[list[Event], bytes]:
        """Take bytes from the connection: the events they complete, and bytes to send back
        (the proof, once the peer's hello is in).  After a ``Failed`` nothing more is read."""
        events: list[Event] = []
        out = b""
        if self._state is _State.CLOSED:
            return events, out
        self._buffer += data
        while len(self._buffer) >= _HEAD.size and not self.closed:
            length, kind = _HEAD.unpack_from(self._buffer)
            if length < 1 or length > MAX_FRAME:
                return self._fail(events, f"frame of {length} bytes"), out
            if len(self._buffer) < 4 + length:
                break
            payload = bytes(self._buffer[_HEAD.size : 4 + length])
            del self._buffer[: 4 + length]
            try:
                out += self._frame_in(kind, payload, events)
            except Exception as exc:  # whatever garbage a peer sends ends only its session
                return self._fail(events, f"malformed frame {kind}: {exc!r}"), out
        return events, out

    def _fail(self, events: list[Event], reason: str) -> list[Event]:
        self._state = _State.CLOSED
        self._buffer.clear()
        events.append(Failed(reason))
        return events

    def _frame_in(self, kind: int, payload: bytes, events: list[Event]) -> bytes:
        if self._state is _State.HELLO:
            if kind != Frame.HELLO:
                self._fail(events, f"frame {kind} before hello")
                return b""
            return self._hello_in(payload, events)
        if self._state is _State.AUTH:
            if kind != Frame.AUTH:
                self._fail(events, f"frame {kind} before the proof")
                return b""
            self._auth_in(payload, events)
            return b""
        if kind == Frame.VECTORS:
            events.append(VectorsReceived(*_vectors_and_incarnations(payload)))
        elif kind == Frame.ACK:
            events.append(AckReceived(*_vectors_and_incarnations(payload)))
        elif kind == Frame.CHANGES:
            events.append(ChangesReceived(tuple(_changes_from(payload))))
        elif kind == Frame.DIGEST:
            events.append(DigestReceived(_digests_from(payload)))
        elif kind == Frame.STATE_REQUEST:
            raw = json.loads(payload)
            buckets = raw["buckets"]
            events.append(
                StateRequested(
                    dns.name.from_text(raw["zone"]),
                    None if buckets is None else frozenset(int(b) for b in buckets),
                    bool(raw["repair"]),
                )
            )
        elif kind == Frame.STATE:
            events.append(_state_from(payload))
        else:
            self._fail(events, f"unexpected frame {kind}")
        return b""

    def _hello_in(self, payload: bytes, events: list[Event]) -> bytes:
        version, id_len = struct.unpack_from("!HB", payload)
        peer = payload[3 : 3 + id_len].decode()
        nonce = payload[3 + id_len :]
        if version != PROTOCOL:
            self._fail(events, f"peer speaks protocol {version}, we speak {PROTOCOL}")
            return b""
        if len(nonce) != 16:
            self._fail(events, "hello without a 16-byte nonce")
            return b""
        if peer not in self._keys or (self._expect is not None and peer != self._expect):
            self._fail(events, f"node {peer!r} is not a configured peer")
            return b""
        if peer == self.node_id:
            self._fail(events, "the peer has our own node id")
            return b""
        self.peer, self._peer_nonce = peer, nonce
        self._state = _State.AUTH
        return _frame(Frame.AUTH, self._proof(self.node_id, peer, self._peer_nonce, self._nonce))

    def _auth_in(self, payload: bytes, events: list[Event]) -> None:
        assert self.peer is not None
        wanted = self._proof(self.peer, self.node_id, self._nonce, self._peer_nonce)
        if not hmac.compare_digest(payload, wanted):
            self._fail(events, f"node {self.peer!r} failed to prove the shared key")
            return
        self._state = _State.OPEN
        events.append(Authenticated(self.peer))

    def _proof(self, prover: str, verifier: str, challenge: bytes, own_nonce: bytes) -> bytes:
        """What ``prover`` sends: the verifier's nonce (the challenge) and its own, both ids."""
        assert self.peer is not None
        message = b"|".join(
            (_PROOF_LABEL, prover.encode(), verifier.encode(), challenge, own_nonce)
        )
        return hmac.new(self._keys[self.peer], message, hashlib.sha256).digest()


def _changes_from(payload: bytes) -> list[Changeset]:
    out = []
    i = 0
    while i < len(payload):
        (size,) = struct.unpack_from("!I", payload, i)
        i += 4
        if i + size > len(payload):
            raise ValueError("changeset runs past the frame")
        cs = decode_changeset(payload[i : i + size])
        if cs.dot is None or cs.hlc is None:
            raise ValueError("a replicated changeset needs its dot and HLC")
        out.append(cs)
        i += size
    return out


def _digests_from(payload: bytes) -> dict[dns.name.Name, tuple[dict[str, int], list[int]]]:
    raw = json.loads(payload)
    out = {}
    for zone, item in raw.items():
        vv = _vectors_from(json.dumps({zone: item["vv"]}).encode())[dns.name.from_text(zone)]
        buckets = [int(b, 16) for b in item["buckets"]]
        out[dns.name.from_text(zone)] = (vv, buckets)
    return out


def _state_from(payload: bytes) -> StateReceived:
    (hlen,) = struct.unpack_from("!I", payload, 0)
    head = json.loads(payload[4 : 4 + hlen])
    zone = dns.name.from_text(head["zone"])
    vv = _vectors_from(json.dumps({head["zone"]: head["vv"]}).encode())[zone]
    buckets = head["buckets"]
    entries = []
    i = 4 + hlen
    while i < len(payload):
        kind, klen, vlen = _ENTRY.unpack_from(payload, i)
        i += _ENTRY.size
        if kind >= len(STATE_KINDS) or i + klen + vlen > len(payload):
            raise ValueError("state entry out of bounds")
        entries.append((kind, payload[i : i + klen], payload[i + klen : i + klen + vlen]))
        i += klen + vlen
    return StateReceived(
        zone,
        vv,
        int(head["serial_base"]),
        bool(head["repair"]),
        None if buckets is None else frozenset(int(b) for b in buckets),
        entries,
        bool(head["last"]),
        int(head.get("incarnation", 0)),
    )
